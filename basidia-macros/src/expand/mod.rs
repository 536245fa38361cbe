//! `#[service]` on an impl block: the block as written (without its entrypoint attributes),
//! then one generated item after another, each from the [`ServiceModel`]:
//! `NamedService`, `Service` ([`service_trait`], with [`describe`]), the compile-time checks
//! of the wire types, and the typed client ([`crate::client`]).

mod describe;
mod service_trait;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{self, Kind, ServiceModel};

/// Expands `#[service(attr)] impl ... { ... }`.
pub fn service_impl(attr: TokenStream, mut imp: syn::ItemImpl) -> TokenStream {
    let m = match model::read(attr, &mut imp) {
        Ok(m) => m,
        Err(e) => {
            let err = e.to_compile_error();
            return quote!(#imp #err);
        }
    };
    let named = named_service(&m);
    let service = service_trait::service_impl(&m);
    let checks = wire_type_checks(&m);
    let client = crate::client::service_client(&m);
    quote! {
        #imp

        #named

        #service

        #checks

        #client
    }
}

/// `impl NamedService for <Type>`: the name, known without an instance.
fn named_service(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let self_ty = &m.self_ty;
    let name = &m.name;
    quote! {
        impl #p::NamedService for #self_ty {
            const NAME: &'static str = #name;
        }
    }
}

/// Assertions that what travels can travel: RPC parameters and event payloads deserialize,
/// RPC replies serialize. Each is spanned at its type, so that a missing derive is reported
/// at the user's type rather than somewhere in the generated dispatch.
fn wire_type_checks(m: &ServiceModel) -> TokenStream {
    let p = m.private();
    let mut checks = Vec::new();
    for e in &m.entrypoints {
        match &e.kind {
            Kind::Rpc(returns) => {
                for prm in &e.params {
                    let t = &prm.ty;
                    checks.push(quote_spanned!(t.span()=> #p::assert_deserialize::<#t>();));
                }
                let ok = &returns.ok;
                checks.push(quote_spanned!(ok.span()=> #p::assert_serialize::<#ok>();));
            }
            Kind::Event(_) => {
                if let Some(prm) = e.params.first() {
                    let t = &prm.ty;
                    checks.push(quote_spanned!(t.span()=> #p::assert_deserialize::<#t>();));
                }
            }
            Kind::Timer(_) | Kind::Http(_) | Kind::OnStart | Kind::OnStop => {}
        }
    }
    quote! {
        const _: () = {
            #[allow(dead_code, clippy::all)]
            fn __basidia_checks() {
                #(#checks)*
            }
        };
    }
}
