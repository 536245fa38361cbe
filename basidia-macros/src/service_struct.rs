//! `#[service]` on a struct: implements `Inject`, building every field from its dependency.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::args::{crate_path, lit_str, parse_args, parse_duration_ms, Arg, Errors};

pub fn expand(attr: TokenStream, mut st: syn::ItemStruct) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut custom_crate = None;
    for arg in parse_args(attr)? {
        match arg {
            Arg::KeyValue(k, v) if k == "crate" => custom_crate = Some(lit_str(&v)?),
            Arg::KeyValue(k, _) if k == "name" => errors.at(
                k.span(),
                "the service name goes on the impl block: #[service(name = \"...\")] impl MyService { ... }",
            ),
            Arg::KeyValue(k, _) | Arg::Flag(k) => {
                errors.at(k.span(), format!("unknown argument `{k}`: a struct takes only `crate`"));
            }
            Arg::Lit(l) => errors.at(l.span(), "unexpected literal"),
        }
    }
    if !st.generics.params.is_empty() {
        errors.at(st.generics.span(), "a service struct cannot be generic");
    }
    let krate = crate_path(custom_crate)?;
    let p = quote!(#krate::__private);
    let ident = st.ident.clone();

    let mut inits = Vec::new();
    for (i, field) in st.fields.iter_mut().enumerate() {
        let mut default = false;
        let mut timeout = quote!(::core::option::Option::None);
        let mut section = quote!(::core::option::Option::None);
        let mut format = quote!(::core::option::Option::None);
        let mut keep = Vec::new();
        for a in field.attrs.drain(..) {
            if !a.path().is_ident("inject") {
                keep.push(a);
                continue;
            }
            let res = a.parse_nested_meta(|meta| {
                if meta.path.is_ident("default") {
                    default = true;
                } else if meta.path.is_ident("timeout") {
                    let s: syn::LitStr = meta.value()?.parse()?;
                    let ms = parse_duration_ms(&s.value()).map_err(|e| syn::Error::new(s.span(), e))?;
                    timeout = quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms)));
                } else if meta.path.is_ident("format") {
                    let s: syn::LitStr = meta.value()?.parse()?;
                    let variant = match s.value().as_str() {
                        "json" => quote!(Json),
                        "msgpack" => quote!(MsgPack),
                        _ => return Err(syn::Error::new(s.span(), "format must be \"json\" or \"msgpack\"")),
                    };
                    format = quote!(::core::option::Option::Some(#p::Format::#variant));
                } else if meta.path.is_ident("section") {
                    let s: syn::LitStr = meta.value()?.parse()?;
                    section = quote!(::core::option::Option::Some(#s));
                } else {
                    return Err(meta.error("unknown #[inject] option: expected default, timeout = \"..\", format = \"..\" or section = \"..\""));
                }
                Ok(())
            });
            if let Err(e) = res {
                errors.push(e);
            }
        }
        field.attrs = keep;
        let ty = &field.ty;
        let name = match &field.ident {
            Some(id) => {
                let s = id.to_string();
                s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
            }
            None => i.to_string(),
        };
        let value = if default {
            quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default())
        } else {
            quote_spanned!(ty.span()=>
                cx.field::<#ty>(#name, #p::FieldOptions { timeout: #timeout, section: #section, format: #format }).await?
            )
        };
        inits.push(match &field.ident {
            Some(id) => quote!(#id: #value),
            None => value,
        });
    }
    let body = match &st.fields {
        syn::Fields::Named(_) => quote!(Self { #(#inits),* }),
        syn::Fields::Unnamed(_) => quote!(Self ( #(#inits),* )),
        syn::Fields::Unit => quote!(Self),
    };
    if let Err(e) = errors.finish() {
        let err = e.to_compile_error();
        return Ok(quote!(#st #err));
    }
    Ok(quote! {
        #st

        #[#p::async_trait]
        impl #p::Inject for #ident {
            async fn inject(
                cx: &mut #p::InjectContext,
            ) -> ::core::result::Result<Self, #p::Error> {
                let _ = &cx;
                ::core::result::Result::Ok(#body)
            }
        }
    })
}
