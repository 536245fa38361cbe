//! `#[service]` on an impl block: implements `Service` and `NamedService` from the entrypoint
//! methods and generates the typed client.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ImplItem, ImplItemFn, LitStr, Type};

use crate::args::{
    crate_path, doc_of, lit_str, parse_args, parse_duration_ms, snake_case, type_string, Arg,
    Errors,
};
use crate::client::{generate, ok_type, param_name, result_types, typed_params, ClientMethod};

const HANDLER_TYPES: [&str; 3] = ["service_pool", "singleton", "broadcast"];

enum Kind {
    Rpc {
        name: Option<LitStr>,
    },
    Event {
        source: LitStr,
        event_type: LitStr,
        handler_type: String,
        timeout_ms: Option<u64>,
    },
    Timer {
        interval_ms: u64,
        eager: bool,
    },
    OnStart,
    OnStop,
}

struct Entry {
    kind: Kind,
    method: ImplItemFn,
}

fn entrypoint_attr(attr: &syn::Attribute) -> Option<&'static str> {
    let path = attr.path();
    let last = path.segments.last()?.ident.to_string();
    // Accept `#[rpc]` and `#[basidia::rpc]` alike.
    ["rpc", "event_handler", "timer", "on_start", "on_stop"]
        .into_iter()
        .find(|n| *n == last)
}

fn parse_kind(name: &str, attr: &syn::Attribute, errors: &mut Errors) -> Option<Kind> {
    let args = match &attr.meta {
        syn::Meta::Path(_) => Vec::new(),
        syn::Meta::List(list) => match parse_args(list.tokens.clone()) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                return None;
            }
        },
        syn::Meta::NameValue(nv) => {
            errors.at(nv.span(), format!("use #[{name}(...)]"));
            return None;
        }
    };
    match name {
        "rpc" => {
            let mut rename = None;
            for a in args {
                match a {
                    Arg::KeyValue(k, v) if k == "name" => match lit_str(&v) {
                        Ok(s) if !s.value().is_empty() && !s.value().contains(['.', '*', '#', ' ']) => {
                            rename = Some(s);
                        }
                        Ok(s) => errors.at(s.span(), "a method name must be non-empty and contain no '.', '*', '#' or spaces"),
                        Err(e) => errors.push(e),
                    },
                    Arg::Lit(l) => errors.at(l.span(), "use #[rpc(name = \"...\")] to rename the method on the wire"),
                    Arg::KeyValue(k, _) | Arg::Flag(k) => {
                        errors.at(k.span(), format!("unknown argument `{k}`: #[rpc] takes only `name`"));
                    }
                }
            }
            Some(Kind::Rpc { name: rename })
        }
        "on_start" | "on_stop" => {
            if let Some(a) = args.first() {
                let span = match a {
                    Arg::Lit(l) => l.span(),
                    Arg::KeyValue(k, _) | Arg::Flag(k) => k.span(),
                };
                errors.at(span, format!("#[{name}] takes no arguments"));
            }
            Some(if name == "on_start" {
                Kind::OnStart
            } else {
                Kind::OnStop
            })
        }
        "event_handler" => {
            let mut lits = Vec::new();
            let mut source = None;
            let mut event_type = None;
            let mut handler_type = "service_pool".to_string();
            let mut timeout_ms = None;
            for a in args {
                match a {
                    Arg::Lit(l) => lits.push(l),
                    Arg::KeyValue(k, v) if k == "timeout" => match lit_str(&v) {
                        Ok(s) => match parse_duration_ms(&s.value()) {
                            Ok(0) => errors.at(s.span(), "a handler timeout must be longer than zero"),
                            Ok(ms) => timeout_ms = Some(ms),
                            Err(e) => errors.at(s.span(), e),
                        },
                        Err(e) => errors.push(e),
                    },
                    Arg::KeyValue(k, v) if k == "source" => source = lit_str(&v).map_err(|e| errors.push(e)).ok(),
                    Arg::KeyValue(k, v) if k == "event_type" => {
                        event_type = lit_str(&v).map_err(|e| errors.push(e)).ok();
                    }
                    Arg::KeyValue(k, v) if k == "handler_type" => match lit_str(&v) {
                        Ok(s) if HANDLER_TYPES.contains(&s.value().as_str()) => handler_type = s.value(),
                        Ok(s) => errors.at(
                            s.span(),
                            format!(
                                "unknown handler_type {:?}: expected \"service_pool\", \"singleton\" or \"broadcast\"",
                                s.value()
                            ),
                        ),
                        Err(e) => errors.push(e),
                    },
                    Arg::KeyValue(k, _) | Arg::Flag(k) => errors.at(
                        k.span(),
                        format!("unknown argument `{k}`: expected source, event_type, handler_type and timeout"),
                    ),
                }
            }
            let mut lits = lits.into_iter();
            let source = source.or_else(|| lits.next());
            let event_type = event_type.or_else(|| lits.next());
            if let Some(extra) = lits.next() {
                errors.at(extra.span(), "too many arguments");
            }
            match (source, event_type) {
                (Some(source), Some(event_type)) => Some(Kind::Event {
                    source,
                    event_type,
                    handler_type,
                    timeout_ms,
                }),
                _ => {
                    errors.at(
                        attr.path().span(),
                        "#[event_handler] needs the source service and the event type: #[event_handler(\"user_service\", \"user.created\")]",
                    );
                    None
                }
            }
        }
        "timer" => {
            let mut interval = None;
            let mut invalid = false;
            let mut eager = false;
            for a in args {
                match a {
                    Arg::KeyValue(k, v) if k == "interval" => match lit_str(&v) {
                        Ok(s) => match parse_duration_ms(&s.value()) {
                            Ok(ms) => interval = Some(ms),
                            Err(e) => {
                                invalid = true;
                                errors.at(s.span(), e);
                            }
                        },
                        Err(e) => {
                            invalid = true;
                            errors.push(e);
                        }
                    },
                    Arg::Lit(s) => match parse_duration_ms(&s.value()) {
                        Ok(ms) => interval = Some(ms),
                        Err(e) => {
                            invalid = true;
                            errors.at(s.span(), e);
                        }
                    },
                    Arg::Flag(k) if k == "eager" => eager = true,
                    Arg::KeyValue(k, _) | Arg::Flag(k) => errors.at(
                        k.span(),
                        format!("unknown argument `{k}`: expected interval = \"...\" and eager"),
                    ),
                }
            }
            match interval {
                Some(interval_ms) => Some(Kind::Timer { interval_ms, eager }),
                None => {
                    if !invalid {
                        errors.at(
                            attr.path().span(),
                            "#[timer] needs an interval: #[timer(interval = \"30s\")]",
                        );
                    }
                    None
                }
            }
        }
        _ => None,
    }
}

pub fn expand(attr: TokenStream, mut imp: syn::ItemImpl) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut name = None;
    let mut custom_crate = None;
    for arg in parse_args(attr)? {
        match arg {
            Arg::KeyValue(k, v) if k == "name" => name = Some(lit_str(&v)?),
            Arg::KeyValue(k, v) if k == "crate" => custom_crate = Some(lit_str(&v)?),
            Arg::Lit(l) => name = Some(l),
            Arg::KeyValue(k, _) | Arg::Flag(k) => {
                errors.at(
                    k.span(),
                    format!("unknown argument `{k}`: expected name or crate"),
                );
            }
        }
    }
    let krate = crate_path(custom_crate)?;
    let p = quote!(#krate::__private);
    if let Some(t) = &imp.trait_ {
        errors.at(
            t.1.span(),
            "#[service] goes on an inherent impl block, not a trait impl",
        );
    }
    if !imp.generics.params.is_empty() {
        errors.at(
            imp.generics.span(),
            "a service impl block cannot be generic",
        );
    }
    let self_ty = (*imp.self_ty).clone();
    let type_ident = match &self_ty {
        Type::Path(tp) => tp.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(type_ident) = type_ident else {
        return Err(syn::Error::new(
            self_ty.span(),
            "#[service] needs a named type",
        ));
    };
    let service_name = name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| snake_case(&type_ident.to_string()));
    if service_name.is_empty() || service_name.contains(['.', '*', '#', ' ']) {
        let span = name.as_ref().map_or(type_ident.span(), LitStr::span);
        errors.at(
            span,
            "a service name must be non-empty and contain no '.', '*', '#' or spaces",
        );
    }

    // Collect entrypoints, stripping their attributes from the emitted impl.
    let mut entries = Vec::new();
    for item in &mut imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let mut kinds = Vec::new();
        let mut keep = Vec::new();
        for a in f.attrs.drain(..) {
            match entrypoint_attr(&a) {
                Some(n) => {
                    if let Some(k) = parse_kind(n, &a, &mut errors) {
                        kinds.push((k, a.span()));
                    }
                }
                None => keep.push(a),
            }
        }
        f.attrs = keep;
        if kinds.len() > 1 {
            errors.at(kinds[1].1, "a method can be only one kind of entrypoint");
        }
        if let Some((kind, _)) = kinds.into_iter().next() {
            if f.sig.asyncness.is_none() {
                errors.at(f.sig.fn_token.span, "entrypoints must be `async fn`");
            }
            if !f.sig.generics.params.is_empty() {
                errors.at(f.sig.generics.span(), "entrypoints cannot be generic");
            }
            entries.push(Entry {
                kind,
                method: f.clone(),
            });
        }
    }

    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut rpc_arms = Vec::new();
    let mut rpc_descs = Vec::new();
    let mut event_arms = Vec::new();
    let mut event_descs = Vec::new();
    let mut timer_arms = Vec::new();
    let mut timer_descs = Vec::new();
    let mut checks = Vec::new();
    let mut client_methods = Vec::new();
    let mut on_start = None;
    let mut on_stop = None;

    for Entry { kind, method } in &entries {
        let ident = &method.sig.ident;
        let wire = match kind {
            Kind::Rpc { name: Some(n) } => n.value(),
            _ => param_name(ident),
        };
        if !matches!(kind, Kind::OnStart | Kind::OnStop) {
            if seen.insert(wire.clone(), ident.span()).is_some() {
                errors.at(ident.span(), format!("two entrypoints are named `{wire}`"));
            }
            if wire == "__describe__" {
                errors.at(
                    ident.span(),
                    "`__describe__` is the built-in introspection method",
                );
            }
        }
        let params = typed_params(&method.sig, &mut errors);
        let doc = doc_of(&method.attrs);
        match kind {
            Kind::Rpc { .. } => {
                let names: Vec<String> = params.iter().map(|(n, _)| param_name(n)).collect();
                let takes = params.iter().enumerate().map(|(i, (n, t))| {
                    let key = param_name(n);
                    quote_spanned!(t.span()=> let #n: #t = args.take(#i, #key)?;)
                });
                let call_args = params.iter().map(|(n, _)| n);
                let out = &method.sig.output;
                let reply = if result_types(out).is_some() {
                    quote_spanned! {out.span()=>
                        match __out {
                            ::core::result::Result::Ok(v) => #p::reply_ok(__format, &v),
                            ::core::result::Result::Err(e) => {
                                #[allow(unused_imports)]
                                use #p::{ViaBuiltin as _, ViaUser as _};
                                ::core::result::Result::Err((&#p::ErrWrap(&e)).to_remote_error())
                            }
                        }
                    }
                } else {
                    quote!(#p::reply_ok(__format, &__out))
                };
                rpc_arms.push(quote! {
                    #wire => {
                        args.check(&[#(#names),*])?;
                        #(#takes)*
                        let __out = self.#ident(#(#call_args),*).await;
                        #reply
                    }
                });
                for (_, t) in &params {
                    checks.push(quote_spanned!(t.span()=> #p::assert_deserialize::<#t>();));
                }
                let ok = ok_type(out);
                checks.push(quote_spanned!(ok.span()=> #p::assert_serialize::<#ok>();));
                let pdesc = params.iter().map(|(n, t)| {
                    let n = param_name(n);
                    let t = type_string(t);
                    quote!(#p::ParamDescription { name: #n.into(), ty: #t.into() })
                });
                let returns = type_string(&ok);
                rpc_descs.push(quote! {
                    #p::MethodDescription {
                        name: #wire.into(),
                        params: ::std::vec![#(#pdesc),*],
                        returns: #returns.into(),
                        doc: #doc.into(),
                    }
                });
                client_methods.push(ClientMethod {
                    name: ident.clone(),
                    wire: wire.clone(),
                    params: params.clone(),
                    ok,
                    doc: method
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("doc"))
                        .cloned()
                        .collect(),
                });
            }
            Kind::Event {
                source,
                event_type,
                handler_type,
                timeout_ms,
            } => {
                if params.len() > 1 {
                    errors.at(
                        params[1].0.span(),
                        "an event handler takes one parameter: the event payload",
                    );
                }
                let (decode, call, payload_ty) = match params.first() {
                    Some((n, t)) => (
                        quote_spanned!(t.span()=> let #n: #t = event.decode()?;),
                        quote!(self.#ident(#n).await),
                        type_string(t),
                    ),
                    None => (
                        quote!(let _ = event;),
                        quote!(self.#ident().await),
                        "()".to_string(),
                    ),
                };
                if let Some((_, t)) = params.first() {
                    checks.push(quote_spanned!(t.span()=> #p::assert_deserialize::<#t>();));
                }
                let out = &method.sig.output;
                event_arms.push(quote_spanned! {out.span()=>
                    #wire => {
                        #decode
                        #p::IntoHandlerResult::into_handler_result(#call)
                    }
                });
                let ht = format_ident!(
                    "{}",
                    match handler_type.as_str() {
                        "singleton" => "Singleton",
                        "broadcast" => "Broadcast",
                        _ => "ServicePool",
                    }
                );
                let timeout = match timeout_ms {
                    Some(ms) => quote!(::core::option::Option::Some(#ms)),
                    None => quote!(::core::option::Option::None),
                };
                event_descs.push(quote! {
                    #p::EventHandlerDescription {
                        name: #wire.into(),
                        source: #source.into(),
                        event_type: #event_type.into(),
                        handler_type: #p::HandlerType::#ht,
                        payload: #payload_ty.into(),
                        timeout_ms: #timeout,
                    }
                });
            }
            Kind::Timer { interval_ms, eager } => {
                if let Some((n, _)) = params.first() {
                    errors.at(n.span(), "a timer takes no parameters");
                }
                let out = &method.sig.output;
                timer_arms.push(quote_spanned! {out.span()=>
                    #wire => #p::IntoHandlerResult::into_handler_result(self.#ident().await),
                });
                timer_descs.push(quote! {
                    #p::TimerDescription { name: #wire.into(), interval_ms: #interval_ms, eager: #eager }
                });
            }
            Kind::OnStart | Kind::OnStop => {
                if let Some((n, _)) = params.first() {
                    errors.at(n.span(), "lifecycle hooks take no parameters");
                }
                let is_start = matches!(kind, Kind::OnStart);
                let slot = if is_start {
                    &mut on_start
                } else {
                    &mut on_stop
                };
                if slot.is_some() {
                    errors.at(ident.span(), "only one such hook per service");
                }
                let out = &method.sig.output;
                *slot = Some(if is_start {
                    quote_spanned! {out.span()=>
                        async fn on_start(&self) -> ::core::result::Result<(), #p::BoxError> {
                            #p::IntoHandlerResult::into_handler_result(self.#ident().await)
                                .map_err(|e| ::std::boxed::Box::new(e) as #p::BoxError)
                        }
                    }
                } else {
                    quote! {
                        async fn on_stop(&self) {
                            let _ = self.#ident().await;
                        }
                    }
                });
            }
        }
    }

    if let Err(e) = errors.finish() {
        let err = e.to_compile_error();
        return Ok(quote!(#imp #err));
    }

    let client_ident = format_ident!("{}Client", type_ident);
    let name_lit = quote!(#service_name);
    let client = generate(
        &krate,
        &syn::parse_quote!(pub),
        &client_ident,
        &name_lit,
        &client_methods,
    );

    Ok(quote! {
        #imp

        impl #p::NamedService for #self_ty {
            const NAME: &'static str = #service_name;
        }

        #[#p::async_trait]
        impl #p::Service for #self_ty {
            fn name(&self) -> &str {
                #service_name
            }

            fn describe(&self) -> #p::ServiceDescription {
                #p::ServiceDescription {
                    name: #service_name.into(),
                    rpc: ::std::vec![#(#rpc_descs),*],
                    events: ::std::vec![#(#event_descs),*],
                    timers: ::std::vec![#(#timer_descs),*],
                }
            }

            #[allow(unused_mut, unused_variables)]
            async fn handle_rpc(
                &self,
                method: &str,
                mut args: #p::Arguments,
            ) -> ::core::result::Result<#p::EncodedReply, #p::RemoteError> {
                let __format = args.format();
                match method {
                    #(#rpc_arms)*
                    _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#service_name, method)),
                }
            }

            #[allow(unused_variables)]
            async fn handle_event(
                &self,
                handler: &str,
                event: #p::EventPayload,
            ) -> ::core::result::Result<(), #p::RemoteError> {
                match handler {
                    #(#event_arms)*
                    _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#service_name, handler)),
                }
            }

            async fn handle_timer(&self, timer: &str) -> ::core::result::Result<(), #p::RemoteError> {
                match timer {
                    #(#timer_arms)*
                    _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#service_name, timer)),
                }
            }

            #on_start
            #on_stop
        }

        const _: () = {
            #[allow(dead_code, clippy::all)]
            fn __basidia_checks() {
                #(#checks)*
            }
        };

        #client
    })
}
