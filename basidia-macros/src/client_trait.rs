//! `#[client(service = "...")]` on a trait: a typed client for a service defined elsewhere.
//! The trait itself is not emitted; it only declares the client's methods.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{ItemTrait, TraitItem, TraitItemFn};

use crate::attr::{ClientAttr, EntrypointAttr, RpcAttr};
use crate::client::{generate, ClientDef, ClientMethod};
use crate::signature::{typed_params, Returns};
use crate::util::{crate_path, doc_attrs, unraw, Errors};

/// Expands `#[client(attr)] trait ... { ... }`.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut tr: ItemTrait = match syn::parse2(item.clone()) {
        Ok(tr) => tr,
        Err(e) => {
            let err = e.to_compile_error();
            return quote!(#item #err);
        }
    };
    match read(attr, &mut tr) {
        Ok(def) => generate(&def),
        // The trait goes out without its `#[rpc]` attributes, so that only the errors above
        // are reported, not also misplaced attributes.
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#tr #err)
        }
    }
}

fn read(attr: TokenStream, tr: &mut ItemTrait) -> syn::Result<ClientDef> {
    let mut errors = Errors::default();
    let args = errors.ok(ClientAttr::parse(attr));
    if let Some(ClientAttr { service: None, .. }) = &args {
        errors.at(
            tr.ident.span(),
            "#[client] needs the service name: #[client(service = \"database_service\")]",
        );
    }
    let mut methods = Vec::new();
    for item in &mut tr.items {
        match item {
            TraitItem::Fn(f) => {
                if let Some(m) = read_method(f, &mut errors) {
                    methods.push(m);
                }
            }
            other => errors.at(
                other.span(),
                "a #[client] trait holds only `async fn` declarations",
            ),
        }
    }
    errors.finish()?;
    match args {
        Some(ClientAttr {
            service: Some(service),
            name,
            krate,
        }) => Ok(ClientDef {
            krate: crate_path(krate),
            vis: tr.vis.clone(),
            ident: name.unwrap_or_else(|| format_ident!("{}Client", tr.ident)),
            service,
            methods,
        }),
        // Unreadable arguments or no service: reported above.
        _ => Err(syn::Error::new(tr.ident.span(), "invalid #[client]")),
    }
}

/// Reads one declared method and removes its `#[rpc]` attribute.
fn read_method(f: &mut TraitItemFn, errors: &mut Errors) -> Option<ClientMethod> {
    let mut rpc = None;
    let mut rpc_ok = true;
    let mut keep = Vec::new();
    for a in f.attrs.drain(..) {
        if RpcAttr::is(&a) {
            if rpc.is_some() || !rpc_ok {
                errors.push(syn::Error::new_spanned(&a.meta, "`#[rpc]` is given twice"));
                continue;
            }
            match RpcAttr::parse(&a) {
                Ok(r) => rpc = Some(r),
                Err(e) => {
                    rpc_ok = false;
                    errors.push(e);
                }
            }
        } else if let Some(name) = EntrypointAttr::name_of(&a) {
            errors.push(syn::Error::new_spanned(
                &a.meta,
                format!("#[{name}] has no meaning on a #[client] method: only #[rpc(name = \"...\")] and #[rpc(not_result)] do"),
            ));
        } else {
            keep.push(a);
        }
    }
    f.attrs = keep;
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.at(sig.fn_token.span, "client methods are `async fn`");
    }
    if !sig.generics.params.is_empty() {
        errors.at(sig.generics.span(), "client methods cannot be generic");
    }
    let params = typed_params(sig, errors);
    if !rpc_ok {
        return None;
    }
    let (wire, not_result) = match rpc {
        Some(RpcAttr {
            name,
            not_result,
            roles,
        }) => {
            if let Some((_, span)) = roles {
                errors.at(
                    span,
                    "roles are checked where the method runs: put them on the service's #[rpc]",
                );
            }
            (name.map(|n| n.value()), not_result)
        }
        None => (None, None),
    };
    let returns = errors.ok(Returns::of(&sig.output, not_result))?;
    Some(ClientMethod {
        ident: sig.ident.clone(),
        wire: wire.unwrap_or_else(|| unraw(&sig.ident)),
        params,
        ok: returns.ok,
        docs: doc_attrs(&f.attrs),
        declared_result: returns.result,
    })
}
