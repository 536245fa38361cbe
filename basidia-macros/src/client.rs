//! Typed client generation, for `#[service]` impl blocks and `#[client]` traits.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, ReturnType, Type};

use crate::args::{crate_path, lit_str, parse_args, Arg, Errors};

/// One method of a client.
pub struct ClientMethod {
    pub name: Ident,
    /// The method name on the wire.
    pub wire: String,
    pub params: Vec<(Ident, Type)>,
    /// The success type the caller gets.
    pub ok: Type,
    pub doc: Vec<syn::Attribute>,
}

/// `Result<T, E>` -> `Some(T, E)`.
pub fn result_types(ret: &ReturnType) -> Option<(Type, Type)> {
    let ReturnType::Type(_, ty) = ret else {
        return None;
    };
    let Type::Path(tp) = &**ty else {
        return None;
    };
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let mut tys = ab.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let ok = tys.next()?;
    let err = tys.next()?;
    Some((ok, err))
}

/// The type a caller gets for a method returning `ret`.
pub fn ok_type(ret: &ReturnType) -> Type {
    if let Some((ok, _)) = result_types(ret) {
        return ok;
    }
    match ret {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    }
}

/// Parameters of a method as `(name, type)`, after `&self`.
pub fn typed_params(sig: &syn::Signature, errors: &mut Errors) -> Vec<(Ident, Type)> {
    let mut out = Vec::new();
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) => errors.at(r.span(), "entrypoints take `&self`"),
        _ => errors.at(sig.span(), "entrypoints are methods taking `&self` first"),
    }
    for input in inputs {
        match input {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    out.push((pi.ident.clone(), (*pt.ty).clone()));
                }
                other => errors.at(
                    other.span(),
                    "entrypoint parameters must be plain names, such as `user_id: i64`",
                ),
            },
            FnArg::Receiver(r) => errors.at(r.span(), "unexpected receiver"),
        }
    }
    out
}

/// The keyword name of a parameter (without a raw-identifier prefix).
pub fn param_name(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
}

/// Generates `pub struct <name>` with one async method per RPC method.
pub fn generate(
    krate: &syn::Path,
    vis: &syn::Visibility,
    client: &Ident,
    service_name: &TokenStream,
    methods: &[ClientMethod],
) -> TokenStream {
    let p = quote!(#krate::__private);
    let fns = methods.iter().map(|m| {
        let name = &m.name;
        let wire = &m.wire;
        let default_doc = format!(
            "Calls `{}.{}`.",
            service_name.to_string().trim_matches('"'),
            wire
        );
        let docs = if m.doc.is_empty() {
            quote!(#[doc = #default_doc])
        } else {
            let d = &m.doc;
            quote!(#(#d)*)
        };
        let params = m.params.iter().map(|(n, t)| quote!(#n: #t));
        let args: Vec<_> = m.params.iter().map(|(n, _)| quote!(&#n)).collect();
        let args_expr = if args.is_empty() {
            quote!(&[(); 0])
        } else {
            quote!(&(#(#args,)*))
        };
        let ok = &m.ok;
        let checks = m
            .params
            .iter()
            .map(|(_, t)| quote_spanned!(t.span()=> #p::assert_serialize::<#t>();));
        let ok_check = quote_spanned!(ok.span()=> #p::assert_deserialize::<#ok>(););
        quote! {
            #docs
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ok, #p::RpcError> {
                let _ = || { #(#checks)* #ok_check };
                self.proxy.call_args(#wire, #args_expr).await
            }
        }
    });
    let doc = format!(
        "Typed client of the service `{}`.",
        service_name.to_string().trim_matches('"')
    );
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            proxy: #p::ServiceProxy,
        }

        impl #p::Client for #client {
            const SERVICE: &'static str = #service_name;
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

/// `#[client(service = "name")] trait Name { async fn m(&self, a: T) -> R; }`.
pub fn expand_trait(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let tr: syn::ItemTrait = syn::parse2(item)?;
    let mut errors = Errors::default();
    let mut service = None;
    let mut custom_crate = None;
    let mut client_name = None;
    for arg in parse_args(attr)? {
        match arg {
            Arg::KeyValue(k, v) if k == "service" => service = Some(lit_str(&v)?),
            Arg::KeyValue(k, v) if k == "crate" => custom_crate = Some(lit_str(&v)?),
            Arg::KeyValue(k, v) if k == "name" => client_name = Some(lit_str(&v)?),
            Arg::Lit(l) => service = Some(l),
            Arg::KeyValue(k, _) | Arg::Flag(k) => {
                errors.at(
                    k.span(),
                    format!("unknown argument `{k}`: expected service, name or crate"),
                );
            }
        }
    }
    let Some(service) = service else {
        return Err(syn::Error::new_spanned(
            &tr.ident,
            "#[client] needs the service name: #[client(service = \"database_service\")]",
        ));
    };
    let krate = crate_path(custom_crate)?;
    let mut methods = Vec::new();
    for item in &tr.items {
        match item {
            syn::TraitItem::Fn(f) => {
                if f.sig.asyncness.is_none() {
                    errors.at(f.sig.fn_token.span, "client methods are `async fn`");
                }
                let params = typed_params(&f.sig, &mut errors);
                methods.push(ClientMethod {
                    name: f.sig.ident.clone(),
                    wire: param_name(&f.sig.ident),
                    params,
                    ok: ok_type(&f.sig.output),
                    doc: f
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("doc"))
                        .cloned()
                        .collect(),
                });
            }
            other => errors.at(
                other.span(),
                "a #[client] trait holds only `async fn` declarations",
            ),
        }
    }
    errors.finish()?;
    let client = match client_name {
        Some(n) => n.parse::<Ident>()?,
        None => format_ident!("{}Client", tr.ident),
    };
    let name = quote!(#service);
    Ok(generate(&krate, &tr.vis, &client, &name, &methods))
}
