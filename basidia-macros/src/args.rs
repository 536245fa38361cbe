//! Parsing of attribute arguments shared by the macros.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, LitStr, Token};

/// One argument: a bare literal, `key = literal`, or a bare flag.
pub enum Arg {
    Lit(LitStr),
    KeyValue(Ident, Lit),
    Flag(Ident),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(Arg::Lit(input.parse()?));
        }
        let key: Ident = if input.peek(Token![crate]) {
            let kw: Token![crate] = input.parse()?;
            Ident::new("crate", kw.span)
        } else {
            input.parse()?
        };
        if input.peek(Token![=]) {
            let _: Token![=] = input.parse()?;
            Ok(Arg::KeyValue(key, input.parse()?))
        } else {
            Ok(Arg::Flag(key))
        }
    }
}

/// Parses a comma-separated argument list.
pub fn parse_args(tokens: proc_macro2::TokenStream) -> syn::Result<Vec<Arg>> {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    Ok(syn::parse::Parser::parse2(parser, tokens)?
        .into_iter()
        .collect())
}

/// The string of a literal, or an error at it.
pub fn lit_str(lit: &Lit) -> syn::Result<LitStr> {
    match lit {
        Lit::Str(s) => Ok(s.clone()),
        other => Err(syn::Error::new_spanned(other, "expected a string literal")),
    }
}

/// Collects several errors into one.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Parses a duration such as `"30s"`, `"500ms"`, `"1m30s"` or `"2"` (seconds) into
/// milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return if secs.is_finite() && secs > 0.0 {
            Ok((secs * 1000.0).round() as u64)
        } else {
            Err(format!("invalid duration {text:?}"))
        };
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} lacks a unit (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match rest[..unit_len].trim() {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            u => {
                return Err(format!(
                    "unknown unit {u:?} in duration {text:?}: use ms, s, m, h or d"
                ))
            }
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if total < 1.0 {
        return Err(format!("duration {text:?} must be at least 1ms"));
    }
    Ok(total.round() as u64)
}

/// The crate path generated code uses: `::basidia` unless `crate = "..."` says otherwise.
pub fn crate_path(custom: Option<LitStr>) -> syn::Result<syn::Path> {
    match custom {
        Some(lit) => lit.parse(),
        None => Ok(syn::parse_quote!(::basidia)),
    }
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

/// The doc comment of an item, joined.
pub fn doc_of(attrs: &[syn::Attribute]) -> String {
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
pub fn type_string(ty: &syn::Type) -> String {
    let s = quote::quote!(#ty).to_string();
    s.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" :: ", "::")
}
