//! `Service::describe`: the `ServiceDescription` a service gives of itself, for
//! `__describe__` and the shell.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned};

use crate::attr::HandlerTypeKind;
use crate::model::ServiceModel;
use crate::util::{doc_of, type_string, unraw};

/// `fn describe(&self) -> ServiceDescription { ... }`.
pub fn describe_fn(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let name = &m.name;
    let rpc = rpc_descriptions(m, &p);
    let events = event_descriptions(m, &p);
    let timers = timer_descriptions(m, &p);
    let http = http_descriptions(m, &p);
    quote! {
        fn describe(&self) -> #p::ServiceDescription {
            #p::ServiceDescription {
                name: #name.into(),
                rpc: ::std::vec![#(#rpc),*],
                events: ::std::vec![#(#events),*],
                timers: ::std::vec![#(#timers),*],
                http: ::std::vec![#(#http),*],
            }
        }
    }
}

fn http_descriptions(m: &ServiceModel, p: &TokenStream) -> Vec<TokenStream> {
    m.http_routes()
        .map(|(e, route)| {
            let wire = &e.wire;
            let methods = route.attr.methods.iter().map(|(m, _)| m);
            let path = route.attr.path.value();
            let params = e.params.iter().zip(&route.sources).map(|(prm, source)| {
                let n = unraw(&prm.ident);
                let t = type_string(&prm.ty);
                let source = Ident::new(source.variant(), Span::call_site());
                quote! {
                    #p::HttpParamDescription {
                        name: #n.into(),
                        ty: #t.into(),
                        source: #p::ParamSource::#source,
                    }
                }
            });
            let returns = type_string(&route.returns.ok);
            let roles = &e.roles;
            let errors = route
                .attr
                .errors
                .iter()
                .map(|(t, c)| quote!((#t.into(), #c)));
            let doc = doc_of(&e.docs);
            quote! {
                #p::HttpRouteDescription {
                    name: #wire.into(),
                    methods: ::std::vec![#(#methods.into()),*],
                    path: #path.into(),
                    params: ::std::vec![#(#params),*],
                    returns: #returns.into(),
                    roles: ::std::vec![#(#roles.into()),*],
                    errors: ::std::vec![#(#errors),*],
                    doc: #doc.into(),
                }
            }
        })
        .collect()
}

fn rpc_descriptions(m: &ServiceModel, p: &TokenStream) -> Vec<TokenStream> {
    m.rpcs()
        .map(|(e, returns)| {
            let wire = &e.wire;
            let params = e.params.iter().map(|prm| {
                let n = unraw(&prm.ident);
                let t = type_string(&prm.ty);
                quote!(#p::ParamDescription { name: #n.into(), ty: #t.into() })
            });
            let returns = type_string(&returns.ok);
            let doc = doc_of(&e.docs);
            let roles = &e.roles;
            quote! {
                #p::MethodDescription {
                    name: #wire.into(),
                    params: ::std::vec![#(#params),*],
                    returns: #returns.into(),
                    doc: #doc.into(),
                    roles: ::std::vec![#(#roles.into()),*],
                }
            }
        })
        .collect()
}

fn event_descriptions(m: &ServiceModel, p: &TokenStream) -> Vec<TokenStream> {
    m.events()
        .map(|(e, attr)| {
            let wire = &e.wire;
            let source = &attr.source;
            let event_type = &attr.event_type;
            let payload = e
                .params
                .first()
                .map_or_else(|| "()".to_string(), |prm| type_string(&prm.ty));
            let (kind, span) = attr
                .handler_type
                .unwrap_or((HandlerTypeKind::ServicePool, Span::call_site()));
            let handler_type = Ident::new(kind.variant(), span);
            let timeout = match attr.timeout {
                Some((ms, span)) => {
                    let ms = millis(ms, span);
                    quote_spanned!(span=> ::core::option::Option::Some(#ms))
                }
                None => quote!(::core::option::Option::None),
            };
            quote! {
                #p::EventHandlerDescription {
                    name: #wire.into(),
                    source: #source.into(),
                    event_type: #event_type.into(),
                    handler_type: #p::HandlerType::#handler_type,
                    payload: #payload.into(),
                    timeout_ms: #timeout,
                }
            }
        })
        .collect()
}

fn timer_descriptions(m: &ServiceModel, p: &TokenStream) -> Vec<TokenStream> {
    m.timers()
        .map(|(e, attr)| {
            let wire = &e.wire;
            let interval = millis(attr.interval.0, attr.interval.1);
            let eager = attr.eager;
            quote! {
                #p::TimerDescription { name: #wire.into(), interval_ms: #interval, eager: #eager }
            }
        })
        .collect()
}

/// A millisecond count carrying the span of the duration it was written as, so that a type
/// error about it points there.
fn millis(ms: u64, span: Span) -> Literal {
    let mut lit = Literal::u64_suffixed(ms);
    lit.set_span(span);
    lit
}
