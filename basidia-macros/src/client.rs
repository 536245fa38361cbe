//! The typed client struct, generated for a `#[service]` impl block (`<Type>Client`) and for a
//! `#[client]` trait alike.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, Type};

use crate::model::ServiceModel;
use crate::signature::{assert_result, Param};

/// A client to generate.
pub struct ClientDef {
    /// The path of the `basidia` crate.
    pub krate: syn::Path,
    /// The struct's visibility.
    pub vis: syn::Visibility,
    /// The struct's name.
    pub ident: Ident,
    /// The service it calls.
    pub service: LitStr,
    /// Its call methods.
    pub methods: Vec<ClientMethod>,
}

/// One call method of a client.
pub struct ClientMethod {
    /// The Rust method name.
    pub ident: Ident,
    /// The method name on the wire.
    pub wire: String,
    /// The arguments, sent positionally.
    pub params: Vec<Param>,
    /// The success type the caller gets.
    pub ok: Type,
    /// The doc comment, as attributes; none gives a default one.
    pub docs: Vec<Attribute>,
    /// A declared return type read as a result, to be checked to be one: set for `#[client]`
    /// traits, whose declared types are not otherwise compiled.
    pub declared_result: Option<Type>,
}

/// The client of a `#[service]` impl block: `pub struct <Type>Client`, one method per RPC.
pub fn service_client(m: &ServiceModel) -> TokenStream {
    let methods = m
        .rpcs()
        .map(|(e, returns)| ClientMethod {
            ident: e.ident.clone(),
            wire: e.wire.clone(),
            params: e.params.clone(),
            ok: returns.ok.clone(),
            docs: e.docs.clone(),
            // The service's own dispatch checks its result types.
            declared_result: None,
        })
        .collect();
    generate(&ClientDef {
        krate: m.krate.clone(),
        vis: syn::parse_quote!(pub),
        ident: format_ident!("{}Client", m.type_ident),
        service: LitStr::new(&m.name, Span::call_site()),
        methods,
    })
}

/// The struct, its `Client` impl, and its methods.
pub fn generate(def: &ClientDef) -> TokenStream {
    let krate = &def.krate;
    let p = quote!(#krate::__private);
    let service = &def.service;
    let fns = def
        .methods
        .iter()
        .map(|m| call_method(&p, &service.value(), m));
    let doc = format!("Typed client of the service `{}`.", service.value());
    let vis = &def.vis;
    let client = &def.ident;
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            proxy: #p::ServiceProxy,
        }

        impl #p::Client for #client {
            const SERVICE: &'static str = #service;
            fn from_proxy(proxy: #p::ServiceProxy) -> Self {
                Self { proxy }
            }
            fn proxy(&self) -> &#p::ServiceProxy {
                &self.proxy
            }
        }

        impl #client {
            /// The same client with another deadline per call.
            pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { proxy: self.proxy.with_timeout(timeout) }
            }

            /// The same client sending at a priority (on brokers that support it).
            pub fn with_priority(&self, priority: u8) -> Self {
                Self { proxy: self.proxy.with_priority(priority) }
            }

            #(#fns)*
        }
    }
}

fn call_method(p: &TokenStream, service: &str, m: &ClientMethod) -> TokenStream {
    let name = &m.ident;
    let wire = &m.wire;
    let docs = if m.docs.is_empty() {
        let default_doc = format!("Calls `{service}.{wire}`.");
        quote!(#[doc = #default_doc])
    } else {
        let d = &m.docs;
        quote!(#(#d)*)
    };
    let params = m.params.iter().map(|prm| {
        let (n, t) = (&prm.ident, &prm.ty);
        quote!(#n: #t)
    });
    let args: Vec<_> = m
        .params
        .iter()
        .map(|prm| {
            let n = &prm.ident;
            quote!(&#n)
        })
        .collect();
    let args_expr = if args.is_empty() {
        quote!(&[(); 0])
    } else {
        quote!(&(#(#args,)*))
    };
    let ok = &m.ok;
    let checks = m.params.iter().map(|prm| {
        let t = &prm.ty;
        quote_spanned!(t.span()=> #p::assert_serialize::<#t>();)
    });
    let ok_check = quote_spanned!(ok.span()=> #p::assert_deserialize::<#ok>(););
    let result_check = m.declared_result.as_ref().map(assert_result);
    quote! {
        #docs
        pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ok, #p::RpcError> {
            let _ = || { #(#checks)* #ok_check #result_check };
            self.proxy.call_args(#wire, #args_expr).await
        }
    }
}
