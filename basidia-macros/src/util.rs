//! Small helpers shared by every macro: error collection, names, docs and type strings.

use proc_macro2::Span;
use syn::{Attribute, Ident, Lit, Type};

/// Collects several errors into one, so that a macro reports all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error (which may itself hold several).
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// Adds an error at `span`.
    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// Keeps the value of `res`, or records its error.
    pub fn ok<T>(&mut self, res: syn::Result<T>) -> Option<T> {
        res.map_err(|e| self.push(e)).ok()
    }

    /// All errors as one, or `Ok` if there were none.
    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The crate path generated code uses: `::basidia` unless `crate = "..."` says otherwise.
pub fn crate_path(custom: Option<syn::Path>) -> syn::Path {
    custom.unwrap_or_else(|| syn::parse_quote!(::basidia))
}

/// `UserService` -> `user_service`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Whether `name` can be a service or method name on the wire: routing keys join names with
/// `.` and match them with `*` and `#`.
pub fn is_wire_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '*', '#', ' '])
}

/// The name of an identifier without a raw-identifier prefix (`r#type` -> `type`).
pub fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
}

/// The `#[doc]` attributes of an item.
pub fn doc_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect()
}

/// The doc comment of an item, joined.
pub fn doc_of(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A type written as source, for introspection.
pub fn type_string(ty: &Type) -> String {
    let s = quote::quote!(#ty).to_string();
    s.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" :: ", "::")
}
