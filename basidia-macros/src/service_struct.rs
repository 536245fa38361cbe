//! `#[service]` on a struct: implements `Inject`, building every field from its dependency.

use proc_macro2::{Ident, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{InjectAttr, ServiceAttr};
use crate::util::{crate_path, unraw, Errors};

/// Expands `#[service(attr)] struct ...`.
pub fn expand(attr: TokenStream, mut st: syn::ItemStruct) -> TokenStream {
    match inject_impl(attr, &mut st) {
        Ok(inject) => quote!(#st #inject),
        // `st` has lost its `#[inject]` attributes, which are not attributes Rust knows.
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#st #err)
        }
    }
}

/// `impl Inject for <Struct>`, removing the `#[inject]` attributes from `st`.
fn inject_impl(attr: TokenStream, st: &mut syn::ItemStruct) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut krate = None;
    if let Some(args) = errors.ok(ServiceAttr::parse(attr)) {
        if let Some((_, span)) = args.name {
            errors.at(
                span,
                "the service name goes on the impl block: #[service(name = \"...\")] impl MyService { ... }",
            );
        }
        krate = args.krate;
    }
    if !st.generics.params.is_empty() {
        errors.at(st.generics.span(), "a service struct cannot be generic");
    }
    let krate = crate_path(krate);
    let p = quote!(#krate::__private);

    let mut inits = Vec::new();
    for (i, field) in st.fields.iter_mut().enumerate() {
        let Some(options) = errors.ok(InjectAttr::take_from(&mut field.attrs)) else {
            continue;
        };
        let value = field_value(&p, i, field, &options);
        inits.push(match &field.ident {
            Some(id) => quote!(#id: #value),
            None => value,
        });
    }
    errors.finish()?;
    let body = match &st.fields {
        syn::Fields::Named(_) => quote!(Self { #(#inits),* }),
        syn::Fields::Unnamed(_) => quote!(Self ( #(#inits),* )),
        syn::Fields::Unit => quote!(Self),
    };
    let ident = &st.ident;
    Ok(quote! {
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

/// The expression that builds field number `index`.
fn field_value(
    p: &TokenStream,
    index: usize,
    field: &syn::Field,
    options: &InjectAttr,
) -> TokenStream {
    let ty = &field.ty;
    if options.default {
        return quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default());
    }
    let name = match &field.ident {
        Some(id) => unraw(id),
        None => index.to_string(),
    };
    let none = quote!(::core::option::Option::None);
    let timeout = match options.timeout {
        Some((ms, span)) => quote_spanned!(span=>
            ::core::option::Option::Some(::core::time::Duration::from_millis(#ms))
        ),
        None => none.clone(),
    };
    let section = match &options.section {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => none.clone(),
    };
    let format = match options.format {
        Some((kind, span)) => {
            let variant = Ident::new(kind.variant(), span);
            quote!(::core::option::Option::Some(#p::Format::#variant))
        }
        None => none,
    };
    quote_spanned!(ty.span()=>
        cx.field::<#ty>(#name, #p::FieldOptions { timeout: #timeout, section: #section, format: #format }).await?
    )
}
