//! What the macros read from a method's signature: its parameters and whether it returns a
//! `Result`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, ReturnType, Type};

use crate::util::Errors;

/// A parameter after `&self`.
#[derive(Clone)]
pub struct Param {
    /// Its name.
    pub ident: Ident,
    /// Its type.
    pub ty: Type,
}

/// The parameters of a method after `&self`; errors for any other receiver or a pattern that
/// is not a plain name.
pub fn typed_params(sig: &syn::Signature, errors: &mut Errors) -> Vec<Param> {
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
                    out.push(Param {
                        ident: pi.ident.clone(),
                        ty: (*pt.ty).clone(),
                    });
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

/// How an RPC method's return type reaches the caller.
#[derive(Clone)]
pub struct Returns {
    /// What the caller gets on success: `T` of a result, else the whole type (`()` for none).
    pub ok: Type,
    /// The declared type when it is read as a result: `Ok` is the reply, `Err` a remote error.
    pub result: Option<Type>,
}

impl Returns {
    /// Reads `ret` by the rule of [`result_ok_type`]; `not_result` (the span of
    /// `#[rpc(not_result)]`) takes a type named `Result` as a plain value instead, and is an
    /// error on a type the rule does not read as a result.
    pub fn of(ret: &ReturnType, not_result: Option<Span>) -> syn::Result<Self> {
        let declared: Type = match ret {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        let ok = result_ok_type(&declared).cloned();
        match (ok, not_result) {
            (Some(ok), None) => Ok(Returns {
                ok,
                result: Some(declared),
            }),
            (Some(_), Some(_)) | (None, None) => Ok(Returns {
                ok: declared,
                result: None,
            }),
            (None, Some(span)) => Err(syn::Error::new(
                span,
                "`not_result` is for a return type named `Result<..>` that is not a result; this one is not named so, and is sent as a plain value anyway",
            )),
        }
    }
}

/// The `Ok` type of a return type read as a result.
///
/// The rule: a type is a result when it is a path (not `<T as Trait>::Result`) whose last
/// segment is `Result` with one or two generic type arguments; the first is the `Ok` type.
/// So `Result<T, E>`, `std::result::Result<T, E>`, `core::result::Result<T, E>`,
/// `io::Result<T>` and an alias `Result<T>` of one's own are results; a `Result` with no
/// arguments or with three is a plain type. Parentheses and the invisible groups of
/// `macro_rules!` are looked through.
pub fn result_ok_type(ty: &Type) -> Option<&Type> {
    let tp = match ty {
        Type::Path(tp) if tp.qself.is_none() => tp,
        Type::Paren(p) => return result_ok_type(&p.elem),
        Type::Group(g) => return result_ok_type(&g.elem),
        _ => return None,
    };
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let mut types = Vec::new();
    for arg in &ab.args {
        match arg {
            syn::GenericArgument::Type(t) => types.push(t),
            _ => return None,
        }
    }
    match types.as_slice() {
        [ok] | [ok, _] => Some(*ok),
        _ => None,
    }
}

/// The diagnostic shown when a type the rule reads as a result is not `core::result::Result`;
/// `why` says what reading it as a result means where it is used.
fn not_a_result_diagnostic(why: &str) -> TokenStream {
    quote! {
        #[diagnostic::on_unimplemented(
            message = "`{Self}` is named `Result` but is not `core::result::Result`",
            label = "read as a result because its last path segment is `Result`",
            note = #why,
            note = "for a type of your own named `Result`, sent as a plain value, write #[rpc(not_result)] on the method"
        )]
    }
}

/// Items for the body of `handle_rpc`: a trait that only `core::result::Result` implements,
/// and a function through which every result-returning method's value goes, named with the
/// declared type, so that a lookalike type named `Result` is one clear error at that type.
pub fn result_items() -> TokenStream {
    let diagnostic = not_a_result_diagnostic(
        "the service replies with the `Ok` value of a result and turns its `Err` value into a remote error",
    );
    quote! {
        #diagnostic
        trait __BasidiaResult<T, E> {
            fn __into_result(this: Self) -> ::core::result::Result<T, E>;
        }
        impl<T, E> __BasidiaResult<T, E> for ::core::result::Result<T, E> {
            fn __into_result(this: Self) -> ::core::result::Result<T, E> {
                this
            }
        }
        fn __basidia_into_result<R: __BasidiaResult<T, E>, T, E>(
            value: R,
        ) -> ::core::result::Result<T, E> {
            __BasidiaResult::__into_result(value)
        }
    }
}

/// `value` (of the declared type `declared`) as a `core::result::Result`; needs
/// [`result_items`] in scope.
pub fn into_result(value: &TokenStream, declared: &Type) -> TokenStream {
    let func = quote_spanned!(declared.span()=> __basidia_into_result::<#declared, _, _>);
    quote!(#func(#value))
}

/// A statement that fails to compile, at `declared`, unless it is `core::result::Result`: for
/// `#[client]` methods, whose declared result types are only read, never built.
pub fn assert_result(declared: &Type) -> TokenStream {
    let diagnostic = not_a_result_diagnostic(
        "the client method returns the `Ok` type of a declared result; an error reply arrives as an `RpcError`",
    );
    let call = quote_spanned!(declared.span()=> __basidia_is_result::<#declared>(););
    quote! {
        {
            #diagnostic
            trait __BasidiaResult {}
            impl<T, E> __BasidiaResult for ::core::result::Result<T, E> {}
            fn __basidia_is_result<R: __BasidiaResult>() {}
            #call
        }
    }
}
