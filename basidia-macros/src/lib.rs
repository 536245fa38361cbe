//! Procedural macros for Basidia. Use them through the `basidia` crate, which re-exports them
//! and provides every path the generated code names (`::basidia::__private::*`).
//!
//! - `#[service]` on a struct builds it from its dependencies; on an `impl` block it implements
//!   the `Service` trait from the `#[rpc]`, `#[event_handler]` and `#[timer]` methods and
//!   generates a typed client, `<Type>Client`.
//! - `#[client(service = "...")]` on a trait declares a typed client for a service defined
//!   elsewhere (another crate, or a Python Nameko service).

mod args;
mod client;
mod service_impl;
mod service_struct;

use proc_macro::TokenStream;

/// Declares a service. See the `basidia` crate's documentation.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr2 = proc_macro2::TokenStream::from(attr);
    let item2 = proc_macro2::TokenStream::from(item);
    let expanded = match syn::parse2::<syn::Item>(item2.clone()) {
        Ok(syn::Item::Impl(imp)) => service_impl::expand(attr2, imp),
        Ok(syn::Item::Struct(st)) => service_struct::expand(attr2, st),
        Ok(other) => Err(syn::Error::new_spanned(
            other,
            "#[service] goes on a struct (to inject its dependencies) or on its impl block (to declare entrypoints)",
        )),
        Err(e) => Err(e),
    };
    match expanded {
        Ok(ts) => ts.into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote::quote!(#item2 #err).into()
        }
    }
}

/// Declares a typed client for a service defined elsewhere.
#[proc_macro_attribute]
pub fn client(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = proc_macro2::TokenStream::from(item);
    match client::expand_trait(attr.into(), item2.clone()) {
        Ok(ts) => ts.into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote::quote!(#item2 #err).into()
        }
    }
}

/// Marks an RPC entrypoint inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn rpc(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("rpc", item)
}

/// Marks an event handler inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn event_handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("event_handler", item)
}

/// Marks a timer inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn timer(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("timer", item)
}

fn outside(name: &str, item: TokenStream) -> TokenStream {
    let item2 = proc_macro2::TokenStream::from(item);
    let msg = format!("#[{name}] only works on a method inside a #[service] impl block");
    let err = syn::Error::new(proc_macro2::Span::call_site(), msg).to_compile_error();
    quote::quote!(#item2 #err).into()
}
