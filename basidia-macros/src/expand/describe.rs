//! `Service::describe`: the `ServiceDescription` a service gives of itself, for
//! `__describe__` and the shell.

use proc_macro2::{Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use crate::attr::HandlerTypeKind;
use crate::model::{ServiceModel, Source};
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
                let schema = match source {
                    Source::Path => schema_probe(p, &prm.ty),
                    Source::Query | Source::Body => schema_probe(p, unwrap_extractor(&prm.ty)),
                    Source::Head => quote!(::core::option::Option::None),
                };
                let source = Ident::new(source.variant(), Span::call_site());
                quote! {
                    #p::HttpParamDescription {
                        name: #n.into(),
                        ty: #t.into(),
                        source: #p::ParamSource::#source,
                        schema: #schema,
                    }
                }
            });
            let returns = type_string(&route.returns.ok);
            let returns_schema = schema_probe(p, answered_json(&route.returns.ok));
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
                    returns_schema: #returns_schema,
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
                let schema = schema_probe(p, &prm.ty);
                quote!(#p::ParamDescription { name: #n.into(), ty: #t.into(), schema: #schema })
            });
            let returns_schema = schema_probe(p, &returns.ok);
            let returns = type_string(&returns.ok);
            let doc = doc_of(&e.docs);
            let roles = &e.roles;
            quote! {
                #p::MethodDescription {
                    name: #wire.into(),
                    params: ::std::vec![#(#params),*],
                    returns: #returns.into(),
                    returns_schema: #returns_schema,
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

/// The JSON Schema of `ty` where it has one, found at compile time (see `SchemaProbe`). A type
/// that cannot be named inside `describe` (an `impl Trait`, or one with a lifetime of the
/// method's) has none.
fn schema_probe(p: &TokenStream, ty: &syn::Type) -> TokenStream {
    let unnameable = quote!(#ty).into_iter().any(|t| unnameable_token(&t));
    if unnameable {
        return quote!(::core::option::Option::None);
    }
    quote! {
        {
            #[allow(unused_imports)]
            use #p::{ViaJsonSchema as _, WithoutSchema as _};
            (&#p::SchemaProbe::<#ty>::new()).json_schema()
        }
    }
}

fn unnameable_token(t: &TokenTree) -> bool {
    match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Punct(p) => p.as_char() == '\'',
        TokenTree::Group(g) => g.stream().into_iter().any(|t| unnameable_token(&t)),
        TokenTree::Literal(_) => false,
    }
}

/// `T` of an extractor `Json<T>`, `Query<T>` or `Form<T>`; any other type as it is.
fn unwrap_extractor(ty: &syn::Type) -> &syn::Type {
    if let syn::Type::Path(path) = ty {
        if let Some(last) = path.path.segments.last() {
            if matches!(last.ident.to_string().as_str(), "Json" | "Query" | "Form") {
                if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                    if let Some(syn::GenericArgument::Type(inner)) = args.args.first() {
                        return inner;
                    }
                }
            }
        }
    }
    ty
}

/// The type whose JSON an HTTP method answers on success: the last part of a tuple (a status
/// or headers first), unwrapped from `Json<T>`.
fn answered_json(ty: &syn::Type) -> &syn::Type {
    let ty = match ty {
        syn::Type::Tuple(t) => t.elems.last().unwrap_or(ty),
        _ => ty,
    };
    unwrap_extractor(ty)
}
