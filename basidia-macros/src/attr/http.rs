//! `#[http(GET, "/users/{user_id}", roles = ["admin"], errors(UserNotFound = 404))]`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt, LitStr, Token};

use super::{attr_tokens, Spec};
use crate::util::Errors;

pub(super) const HTTP: Spec = Spec {
    name: "http",
    keys: &["roles", "errors"],
};

/// The methods an `#[http]` entrypoint may answer.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// One segment of a route's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// `{name}`: one segment, bound to the parameter `name`.
    Param(String),
    /// `{*name}`: the rest of the path.
    Rest(String),
}

/// `#[http(...)]`, read.
pub struct HttpAttr {
    /// The methods, upper case, with the span of each.
    pub methods: Vec<(String, Span)>,
    /// The path as written.
    pub path: LitStr,
    /// The path's segments.
    pub segments: Vec<Segment>,
    /// `roles = [...]`: the caller needs one of them.
    pub roles: Vec<LitStr>,
    /// `errors(Type = status, ...)`: statuses for user errors by type name.
    pub errors: Vec<(String, u16)>,
}

impl HttpAttr {
    /// The names of the path's parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Rest(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether one of the methods is `GET` or `HEAD`, which carry no body.
    pub fn bodiless(&self) -> Option<&(String, Span)> {
        self.methods.iter().find(|(m, _)| m == "GET" || m == "HEAD")
    }

    /// Reads `#[http(...)]`.
    pub fn parse(attr: &Attribute) -> syn::Result<Self> {
        let tokens = attr_tokens(attr, &HTTP)?;
        let mut errors = Errors::default();
        let mut methods: Vec<(String, Span)> = Vec::new();
        let mut path: Option<LitStr> = None;
        let mut roles: Option<Vec<LitStr>> = None;
        let mut mapped: Option<Vec<(String, u16)>> = None;
        // A method written wrong has an error of its own, and is not also "missing".
        let mut miswritten = false;
        let parser = |input: ParseStream<'_>| -> syn::Result<()> {
            while !input.is_empty() {
                if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    if path.is_some() {
                        errors.at(lit.span(), "the path is given twice");
                    } else {
                        path = Some(lit);
                    }
                } else if input.peek(Ident::peek_any) {
                    let ident = Ident::parse_any(input)?;
                    let name = ident.unraw().to_string();
                    match name.as_str() {
                        "roles" => {
                            input.parse::<Token![=]>()?;
                            let list;
                            syn::bracketed!(list in input);
                            let items = list.parse_terminated(|i| i.parse::<LitStr>(), Token![,])?;
                            if roles.is_some() {
                                errors.at(ident.span(), "`roles` is given twice");
                            }
                            let items: Vec<LitStr> = items.into_iter().collect();
                            for r in &items {
                                if r.value().trim().is_empty() {
                                    errors.at(r.span(), "a role cannot be empty");
                                }
                            }
                            roles = Some(items);
                        }
                        "errors" => {
                            let list;
                            syn::parenthesized!(list in input);
                            let items = list.parse_terminated(parse_mapping, Token![,])?;
                            if mapped.is_some() {
                                errors.at(ident.span(), "`errors` is given twice");
                            }
                            let mut out = Vec::new();
                            for (ty, code, span) in items {
                                if out.iter().any(|(t, _): &(String, u16)| *t == ty) {
                                    errors.at(span, format!("`{ty}` is mapped twice"));
                                } else if !(400..=599).contains(&code) {
                                    errors.at(span, "an error maps to a status from 400 to 599");
                                } else {
                                    out.push((ty, code));
                                }
                            }
                            mapped = Some(out);
                        }
                        m if METHODS.contains(&m) => {
                            if path.is_some() {
                                errors.at(ident.span(), "the methods come before the path");
                            } else if methods.iter().any(|(x, _)| x == m) {
                                errors.at(ident.span(), format!("`{m}` is given twice"));
                            } else {
                                methods.push((m.to_string(), ident.span()));
                            }
                        }
                        m if METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
                            miswritten = true;
                            errors.at(
                                ident.span(),
                                format!("HTTP methods are upper case: `{}`", m.to_ascii_uppercase()),
                            );
                        }
                        _ => errors.at(
                            ident.span(),
                            format!(
                                "unknown argument `{name}` in #[http]: expected a method ({}), the path, `roles = [...]` or `errors(Type = status)`",
                                METHODS.join(", ")
                            ),
                        ),
                    }
                } else {
                    return Err(input.error(
                        "expected a method such as GET, the path as a string, `roles = [...]` or `errors(...)`",
                    ));
                }
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(())
        };
        if let Err(e) = parser.parse2(tokens) {
            errors.push(e);
        }
        if methods.is_empty() && !miswritten {
            errors.at(
                attr.path().span(),
                "#[http] needs a method and a path: #[http(GET, \"/users/{user_id}\")]",
            );
        }
        let segments = match &path {
            Some(p) => errors.ok(parse_path(p)).unwrap_or_default(),
            None => {
                errors.at(
                    attr.path().span(),
                    "#[http] needs a path: #[http(GET, \"/users/{user_id}\")]",
                );
                Vec::new()
            }
        };
        errors.finish()?;
        match path {
            Some(path) => Ok(HttpAttr {
                methods,
                path,
                segments,
                roles: roles.unwrap_or_default(),
                errors: mapped.unwrap_or_default(),
            }),
            None => Err(syn::Error::new(attr.path().span(), "#[http] needs a path")),
        }
    }
}

/// `UserNotFound = 404` or `"UserNotFound" = 404`.
fn parse_mapping(input: ParseStream<'_>) -> syn::Result<(String, u16, Span)> {
    let (name, span) = if input.peek(LitStr) {
        let s: LitStr = input.parse()?;
        (s.value(), s.span())
    } else {
        let i = Ident::parse_any(input)?;
        (i.unraw().to_string(), i.span())
    };
    input.parse::<Token![=]>()?;
    let code: LitInt = input.parse()?;
    let value = code
        .base10_parse::<u16>()
        .map_err(|_| syn::Error::new(code.span(), "a status is a number from 400 to 599"))?;
    Ok((name, value, span))
}

/// Splits a route's path into segments, refusing what the router would not take.
fn parse_path(lit: &LitStr) -> syn::Result<Vec<Segment>> {
    let path = lit.value();
    let err = |m: String| syn::Error::new(lit.span(), m);
    if !path.starts_with('/') {
        return Err(err(format!("a path starts with `/`: \"/{path}\"")));
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix(':') {
            return Err(err(format!(
                "path parameters are written `{{{name}}}`, not `:{name}`"
            )));
        }
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (rest, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                let is_ident = name
                    .chars()
                    .next()
                    .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                    && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
                if !is_ident {
                    return Err(err(format!(
                        "`{{{inner}}}`: a path parameter is named like a Rust parameter"
                    )));
                }
                if names.iter().any(|n| n == name) {
                    return Err(err(format!("the path has `{{{name}}}` twice")));
                }
                names.push(name.to_string());
                if rest {
                    if i + 1 != parts.len() {
                        return Err(err(format!(
                            "`{{*{name}}}` takes the rest of the path, so it comes last"
                        )));
                    }
                    Segment::Rest(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                }
            }
            None if part.contains('{') || part.contains('}') => {
                return Err(err(format!(
                    "`{part}`: a path parameter takes a whole segment, as `/{{name}}`"
                )))
            }
            None if part.is_empty() && i + 1 != parts.len() => {
                return Err(err("a path has no empty segments (`//`)".to_string()))
            }
            None => Segment::Literal(part.to_string()),
        };
        out.push(segment);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tokens: proc_macro2::TokenStream) -> syn::Result<HttpAttr> {
        let attr: Attribute = syn::parse_quote!(#[http(#tokens)]);
        HttpAttr::parse(&attr)
    }

    #[test]
    fn methods_path_roles_and_errors() {
        let a = read(quote::quote!(
            GET,
            HEAD,
            "/users/{user_id}/files/{*rest}",
            roles = ["admin", "ops"],
            errors(UserNotFound = 404, "Gone" = 410)
        ))
        .unwrap();
        let methods: Vec<&str> = a.methods.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(methods, ["GET", "HEAD"]);
        assert_eq!(a.path_params().collect::<Vec<_>>(), ["user_id", "rest"]);
        assert_eq!(a.roles.len(), 2);
        assert_eq!(
            a.errors,
            [("UserNotFound".to_string(), 404), ("Gone".to_string(), 410)]
        );
        assert!(a.bodiless().is_some());
        assert!(read(quote::quote!(POST, "/")).unwrap().bodiless().is_none());
    }

    #[test]
    fn mistakes() {
        let msg = |t| read(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(quote::quote!("/x")).contains("needs a method"));
        assert!(msg(quote::quote!(GET)).contains("needs a path"));
        assert!(msg(quote::quote!(get, "/x")).contains("upper case"));
        assert!(msg(quote::quote!(GET, GET, "/x")).contains("twice"));
        assert!(msg(quote::quote!(GET, "x")).contains("starts with `/`"));
        assert!(msg(quote::quote!(GET, "/users/:id")).contains("not `:id`"));
        assert!(msg(quote::quote!(GET, "/a/{b}/{b}")).contains("twice"));
        assert!(msg(quote::quote!(GET, "/a/{*b}/c")).contains("comes last"));
        assert!(msg(quote::quote!(GET, "/a/x{b}")).contains("whole segment"));
        assert!(msg(quote::quote!(GET, "/a//b")).contains("empty segments"));
        assert!(msg(quote::quote!(GET, "/a", errors(X = 200))).contains("400 to 599"));
        assert!(msg(quote::quote!(GET, "/a", colour = 1)).contains("unknown argument"));
    }
}
