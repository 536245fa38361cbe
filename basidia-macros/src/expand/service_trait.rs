//! The `Service` impl of a `#[service]` impl block: dispatch of calls, events and timer ticks
//! to the methods, and the lifecycle hooks.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::describe::describe_fn;
use crate::model::{Entrypoint, HttpRoute, ServiceModel, Source};
use crate::signature::{into_result, result_items, Returns};
use crate::util::unraw;

/// `impl Service for <Type> { ... }`.
pub fn service_impl(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let self_ty = &m.self_ty;
    let name = &m.name;
    let describe = describe_fn(m);
    let handle_rpc = handle_rpc(m);
    let handle_event = handle_event(m);
    let handle_timer = handle_timer(m);
    let handle_http = handle_http(m);
    let on_start = on_start(m);
    let on_stop = on_stop(m);
    quote! {
        #[#p::async_trait]
        impl #p::Service for #self_ty {
            fn name(&self) -> &str {
                #name
            }

            #describe

            #handle_rpc

            #handle_event

            #handle_timer

            #handle_http

            #on_start
            #on_stop
        }
    }
}

fn handle_rpc(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let name = &m.name;
    let arms = m.rpcs().map(|(e, returns)| rpc_arm(&p, e, returns));
    // Only blocks with a result-returning method need the helper trait.
    let result_items = m.rpcs().any(|(_, r)| r.result.is_some()).then(result_items);
    quote! {
        #[allow(unused_mut, unused_variables)]
        async fn handle_rpc(
            &self,
            method: &str,
            mut args: #p::Arguments,
        ) -> ::core::result::Result<#p::EncodedReply, #p::RemoteError> {
            #result_items
            let __format = args.format();
            match method {
                #(#arms)*
                _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#name, method)),
            }
        }
    }
}

/// `"wire" => { decode the arguments, call, encode the reply }`.
fn rpc_arm(p: &TokenStream, e: &Entrypoint, returns: &Returns) -> TokenStream {
    let ident = &e.ident;
    let wire = &e.wire;
    let names: Vec<String> = e.params.iter().map(|prm| unraw(&prm.ident)).collect();
    let takes = e.params.iter().enumerate().map(|(i, prm)| {
        let (n, t) = (&prm.ident, &prm.ty);
        let key = unraw(n);
        quote_spanned!(t.span()=> let #n: #t = args.take(#i, #key)?;)
    });
    let call_args = e.params.iter().map(|prm| &prm.ident);
    let out = &e.output;
    let reply = match &returns.result {
        Some(declared) => {
            let value = into_result(&quote!(__out), declared);
            quote_spanned! {out.span()=>
                match #value {
                    ::core::result::Result::Ok(v) => #p::reply_ok(__format, &v),
                    ::core::result::Result::Err(e) => {
                        #[allow(unused_imports)]
                        use #p::{ViaBuiltin as _, ViaUser as _};
                        ::core::result::Result::Err((&#p::ErrWrap(&e)).to_remote_error())
                    }
                }
            }
        }
        None => quote!(#p::reply_ok(__format, &__out)),
    };
    quote! {
        #wire => {
            args.check(&[#(#names),*])?;
            #(#takes)*
            let __out = self.#ident(#(#call_args),*).await;
            #reply
        }
    }
}

fn handle_http(m: &ServiceModel) -> Option<TokenStream> {
    m.http_routes().next()?;
    let p = m.private();
    let name = &m.name;
    let arms = m.http_routes().map(|(e, route)| http_arm(&p, e, route));
    let result_items = m
        .http_routes()
        .any(|(_, r)| r.returns.result.is_some())
        .then(result_items);
    Some(quote! {
        #[allow(unused_mut, unused_variables)]
        async fn handle_http(
            &self,
            route: &str,
            request: #p::HttpRequest,
        ) -> ::core::result::Result<#p::HttpResponse, #p::RemoteError> {
            #result_items
            let #p::HttpRequest { parts: mut __parts, body: __body } = request;
            match route {
                #(#arms)*
                _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#name, route)),
            }
        }
    })
}

/// `"route" => { read each parameter from the request, call, answer }`.
fn http_arm(p: &TokenStream, e: &Entrypoint, route: &HttpRoute) -> TokenStream {
    let ident = &e.ident;
    let wire = &e.wire;
    let reads = e.params.iter().zip(&route.sources).map(|(prm, source)| {
        let (n, t) = (&prm.ident, &prm.ty);
        let key = unraw(n);
        match source {
            Source::Path => {
                quote_spanned!(t.span()=> let #n: #t = #p::http::path_param(&mut __parts, #key).await?;)
            }
            Source::Query | Source::Head => {
                quote_spanned!(t.span()=> let #n: #t = #p::http::from_head(&mut __parts, #key).await?;)
            }
            Source::Body => {
                quote_spanned!(t.span()=> let #n: #t = #p::http::from_body(__parts, __body, #key).await?;)
            }
        }
    });
    let call_args = e.params.iter().map(|prm| &prm.ident);
    let out = &e.output;
    let respond = |v: TokenStream| {
        quote_spanned! {out.span()=>
            {
                #[allow(unused_imports)]
                use #p::http::{ViaIntoResponse as _, ViaSerialize as _};
                // Bound first: the wrapper is not `Sync`, and must not live across the await.
                let __response = (&&#p::http::Respond::new(#v)).into_http_response();
                #p::http::collect(__response).await
            }
        }
    };
    let reply = match &route.returns.result {
        Some(declared) => {
            let value = into_result(&quote!(__out), declared);
            let ok = respond(quote!(v));
            quote_spanned! {out.span()=>
                match #value {
                    ::core::result::Result::Ok(v) => #ok,
                    ::core::result::Result::Err(e) => {
                        #[allow(unused_imports)]
                        use #p::{ViaBuiltin as _, ViaUser as _};
                        ::core::result::Result::Err((&#p::ErrWrap(&e)).to_remote_error())
                    }
                }
            }
        }
        None => respond(quote!(__out)),
    };
    quote! {
        #wire => {
            #(#reads)*
            let __out = self.#ident(#(#call_args),*).await;
            #reply
        }
    }
}

fn handle_event(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let name = &m.name;
    let arms = m.events().map(|(e, _)| {
        let ident = &e.ident;
        let wire = &e.wire;
        let (decode, call) = match e.params.first() {
            Some(prm) => {
                let (n, t) = (&prm.ident, &prm.ty);
                (
                    quote_spanned!(t.span()=> let #n: #t = event.decode()?;),
                    quote!(self.#ident(#n).await),
                )
            }
            None => (quote!(let _ = event;), quote!(self.#ident().await)),
        };
        let out = &e.output;
        quote_spanned! {out.span()=>
            #wire => {
                #decode
                #p::IntoHandlerResult::into_handler_result(#call)
            }
        }
    });
    quote! {
        #[allow(unused_variables)]
        async fn handle_event(
            &self,
            handler: &str,
            event: #p::EventPayload,
        ) -> ::core::result::Result<(), #p::RemoteError> {
            match handler {
                #(#arms)*
                _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#name, handler)),
            }
        }
    }
}

fn handle_timer(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let name = &m.name;
    let arms = m.timers().map(|(e, _)| {
        let ident = &e.ident;
        let wire = &e.wire;
        let out = &e.output;
        quote_spanned! {out.span()=>
            #wire => #p::IntoHandlerResult::into_handler_result(self.#ident().await),
        }
    });
    quote! {
        async fn handle_timer(&self, timer: &str) -> ::core::result::Result<(), #p::RemoteError> {
            match timer {
                #(#arms)*
                _ => ::core::result::Result::Err(#p::RemoteError::method_not_found(#name, timer)),
            }
        }
    }
}

fn on_start(m: &ServiceModel) -> Option<TokenStream> {
    let p = m.private();
    let e = m.on_start()?;
    let ident = &e.ident;
    let out = &e.output;
    Some(quote_spanned! {out.span()=>
        async fn on_start(&self) -> ::core::result::Result<(), #p::BoxError> {
            #p::IntoHandlerResult::into_handler_result(self.#ident().await)
                .map_err(|e| ::std::boxed::Box::new(e) as #p::BoxError)
        }
    })
}

fn on_stop(m: &ServiceModel) -> Option<TokenStream> {
    let ident = &m.on_stop()?.ident;
    Some(quote! {
        async fn on_stop(&self) {
            let _ = self.#ident().await;
        }
    })
}
