//! Typed attribute arguments: one struct per attribute, read with syn so that every error
//! points at the token at fault.
//!
//! Every attribute takes a comma-separated list whose items are a bare string literal
//! (positional, where the attribute allows one), a flag (`eager`) or `key = value`. This module
//! reads that list and checks what all attributes share: a key is known, is given once, and
//! has a value of the right kind. The submodules turn the items into typed structs.

mod entrypoint;
mod http;
mod options;

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Expr, Ident, Lit, LitStr, Token};

pub use entrypoint::{EntrypointAttr, EventHandlerAttr, HandlerTypeKind, RpcAttr, TimerAttr};
pub use http::{HttpAttr, Segment};
pub use options::{ClientAttr, InjectAttr, ServiceAttr};

use crate::util::Errors;

/// What an attribute accepts, for its error messages.
pub struct Spec {
    /// The attribute's name, such as `timer`.
    pub name: &'static str,
    /// Its keys, in the order messages list them.
    pub keys: &'static [&'static str],
}

impl Spec {
    /// The attribute as messages show it: `#[timer]`.
    pub fn attr(&self) -> String {
        format!("#[{}]", self.name)
    }

    /// Whether `attr` is this attribute, by its last path segment: `#[rpc]` and
    /// `#[basidia::rpc]` alike.
    pub fn is(&self, attr: &Attribute) -> bool {
        attr.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == self.name)
    }

    /// The keys as prose: "`a`, `b` or `c`".
    fn expected(&self) -> String {
        let quoted: Vec<String> = self.keys.iter().map(|k| format!("`{k}`")).collect();
        match quoted.split_last() {
            None => "no arguments".to_string(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

/// One item of an argument list.
pub enum Arg {
    /// A bare literal, such as `"user_service"` in `#[event_handler("user_service", ...)]`.
    Positional(Lit),
    /// `key` or `key = value`.
    Key(KeyArg),
}

/// `key` or `key = value`, the value not yet interpreted.
pub struct KeyArg {
    /// The key; keywords such as `crate` are read as identifiers.
    pub key: Ident,
    /// The expression after `=`, if any.
    pub value: Option<Expr>,
}

impl KeyArg {
    /// The key as text.
    pub fn name(&self) -> String {
        self.key.unraw().to_string()
    }

    /// The value of `key = "..."`; `example` is a valid value, shown in the error.
    pub fn string(&self, example: &str) -> syn::Result<LitStr> {
        let key = self.name();
        match &self.value {
            Some(Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s),
                attrs,
            })) if attrs.is_empty() => Ok(s.clone()),
            Some(other) => Err(syn::Error::new_spanned(
                other,
                format!("expected a string literal: `{key} = {example}`"),
            )),
            None => Err(syn::Error::new(
                self.key.span(),
                format!("`{key}` needs a value: `{key} = {example}`"),
            )),
        }
    }

    /// The value of `key = ["...", ...]`: a list of string literals, none empty.
    pub fn strings(&self, example: &str) -> syn::Result<Vec<LitStr>> {
        let key = self.name();
        let wrong = |span: &dyn quote::ToTokens| {
            syn::Error::new_spanned(
                span,
                format!("expected a list of strings: `{key} = {example}`"),
            )
        };
        match &self.value {
            Some(Expr::Array(array)) => array
                .elems
                .iter()
                .map(|e| match e {
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(s), ..
                    }) if !s.value().trim().is_empty() => Ok(s.clone()),
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(s), ..
                    }) => Err(syn::Error::new(s.span(), "a role cannot be empty")),
                    other => Err(wrong(other)),
                })
                .collect(),
            Some(other) => Err(wrong(other)),
            None => Err(syn::Error::new(
                self.key.span(),
                format!("`{key}` needs a value: `{key} = {example}`"),
            )),
        }
    }

    /// Checks that a flag such as `eager` has no value.
    pub fn flag(&self) -> syn::Result<()> {
        match &self.value {
            None => Ok(()),
            Some(value) => {
                let key = self.name();
                Err(syn::Error::new_spanned(
                    value,
                    format!("`{key}` is a flag and takes no value: write `{key}` alone"),
                ))
            }
        }
    }

    /// The error for a key `spec` does not know.
    pub fn unknown(&self, spec: &Spec) -> syn::Error {
        syn::Error::new(
            self.key.span(),
            format!(
                "unknown argument `{}` in {}: expected {}",
                self.name(),
                spec.attr(),
                spec.expected()
            ),
        )
    }
}

/// The keys an attribute has seen, to refuse one given twice.
#[derive(Default)]
pub struct Keys(Vec<String>);

impl Keys {
    /// Records `name`, given at `span`; an error there if it was given before.
    pub fn claim(&mut self, name: &str, span: Span) -> syn::Result<()> {
        if self.0.iter().any(|k| k == name) {
            return Err(syn::Error::new(span, format!("`{name}` is given twice")));
        }
        self.0.push(name.to_string());
        Ok(())
    }
}

fn parse_arg(input: ParseStream<'_>) -> syn::Result<Arg> {
    if input.peek(Lit) {
        return Ok(Arg::Positional(input.parse()?));
    }
    if !input.peek(Ident::peek_any) {
        return Err(input.error("expected an argument: `key = \"value\"`, a flag, or a string"));
    }
    let key = Ident::parse_any(input)?;
    let value = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Some(input.parse::<Expr>()?)
    } else {
        None
    };
    Ok(Arg::Key(KeyArg { key, value }))
}

/// Reads `tokens` as an argument list and hands each item to `each`.
///
/// A known key given a second time is an error at that second key, and `each` does not see
/// it; unknown keys go to `each`, which reports them with [`KeyArg::unknown`]. Errors from
/// `each` are collected and the list goes on, so that one attribute reports all its mistakes;
/// a list that does not parse as arguments at all stops where it stops parsing.
pub fn parse_list(
    tokens: TokenStream,
    spec: &Spec,
    keys: &mut Keys,
    mut each: impl FnMut(Arg, &mut Keys) -> syn::Result<()>,
) -> syn::Result<()> {
    let mut errors = Errors::default();
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        while !input.is_empty() {
            let arg = parse_arg(input)?;
            let claimed = match &arg {
                Arg::Key(k) if spec.keys.contains(&k.name().as_str()) => {
                    keys.claim(&k.name(), k.key.span())
                }
                _ => Ok(()),
            };
            match claimed {
                Ok(()) => {
                    if let Err(e) = each(arg, keys) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    let parsed = parser.parse2(tokens);
    if let Err(e) = parsed {
        errors.push(e);
    }
    errors.finish()
}

/// The argument tokens of an attribute: empty for `#[rpc]`, the list for `#[rpc(...)]`.
pub fn attr_tokens(attr: &Attribute, spec: &Spec) -> syn::Result<TokenStream> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(TokenStream::new()),
        syn::Meta::List(list) => Ok(list.tokens.clone()),
        syn::Meta::NameValue(nv) => Err(syn::Error::new_spanned(
            nv,
            format!("use #[{}(...)]", spec.name),
        )),
    }
}

/// The string of a positional literal; `what` says what it stands for, in the error.
pub fn positional_str(lit: Lit, what: &str) -> syn::Result<LitStr> {
    match lit {
        Lit::Str(s) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string literal: {what}"),
        )),
    }
}

/// A duration written in an attribute, in whole milliseconds.
///
/// The text follows the configuration's grammar ([`basidia_duration::parse_duration`]), so an
/// attribute accepts exactly the texts a configuration file does; on top of it, an attribute
/// duration is at least 1ms (a zero interval or deadline means nothing) and counts its
/// milliseconds in a `u64`, which the service descriptions use.
pub fn duration_ms(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let duration =
        basidia_duration::parse_duration(&text).map_err(|e| syn::Error::new(lit.span(), e))?;
    if duration < Duration::from_millis(1) {
        return Err(syn::Error::new(
            lit.span(),
            format!("duration {text:?} must be at least 1ms"),
        ));
    }
    // To the nearest millisecond, so that "1.5ms" is 2ms rather than 1ms.
    let ms = (duration.as_nanos() + 500_000) / 1_000_000;
    u64::try_from(ms).map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("duration {text:?} is too long: at most {}ms", u64::MAX),
        )
    })
}
