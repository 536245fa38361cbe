//! The attributes of items and fields: `#[service(...)]`, `#[client(...)]` and
//! `#[inject(...)]`.

use proc_macro2::{Span, TokenStream};
use syn::{Attribute, Ident, LitStr};

use super::{attr_tokens, duration_ms, parse_list, positional_str, Arg, KeyArg, Keys, Spec};
use crate::util::Errors;

const SERVICE: Spec = Spec {
    name: "service",
    keys: &["name", "crate"],
};
const CLIENT: Spec = Spec {
    name: "client",
    keys: &["service", "name", "crate"],
};
const INJECT: Spec = Spec {
    name: "inject",
    keys: &["default", "timeout", "format", "section"],
};

/// `crate = "..."`: the path of the `basidia` crate when `Cargo.toml` renames it.
fn crate_value(k: &KeyArg) -> syn::Result<syn::Path> {
    let s = k.string("\"basidia\"")?;
    s.parse().map_err(|_| {
        syn::Error::new(
            s.span(),
            "`crate` takes the path of the basidia crate, such as `crate = \"bas\"`",
        )
    })
}

/// `#[service(name = "...", crate = "...")]`; the name may also be a bare string.
pub struct ServiceAttr {
    /// The service name, with the span of where it was given: the key, or the bare string.
    pub name: Option<(LitStr, Span)>,
    /// `crate = "..."`.
    pub krate: Option<syn::Path>,
}

impl ServiceAttr {
    /// Reads the arguments of `#[service(...)]`.
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut name = None;
        let mut krate = None;
        parse_list(tokens, &SERVICE, &mut Keys::default(), |arg, keys| {
            match arg {
                Arg::Positional(lit) => {
                    keys.claim("name", lit.span())?;
                    let s = positional_str(lit, "the service name")?;
                    let span = s.span();
                    name = Some((s, span));
                }
                Arg::Key(k) => match k.name().as_str() {
                    "name" => name = Some((k.string("\"user_service\"")?, k.key.span())),
                    "crate" => krate = Some(crate_value(&k)?),
                    _ => return Err(k.unknown(&SERVICE)),
                },
            }
            Ok(())
        })?;
        Ok(ServiceAttr { name, krate })
    }
}

/// `#[client(service = "...", name = "...", crate = "...")]`; the service may also be a bare
/// string.
pub struct ClientAttr {
    /// The service the client calls.
    pub service: Option<LitStr>,
    /// `name = "..."`: the client type's name, instead of `<Trait>Client`.
    pub name: Option<Ident>,
    /// `crate = "..."`.
    pub krate: Option<syn::Path>,
}

impl ClientAttr {
    /// Reads the arguments of `#[client(...)]`.
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut out = ClientAttr {
            service: None,
            name: None,
            krate: None,
        };
        parse_list(tokens, &CLIENT, &mut Keys::default(), |arg, keys| {
            match arg {
                Arg::Positional(lit) => {
                    keys.claim("service", lit.span())?;
                    out.service = Some(positional_str(lit, "the service name")?);
                }
                Arg::Key(k) => match k.name().as_str() {
                    "service" => out.service = Some(k.string("\"user_service\"")?),
                    "name" => {
                        let s = k.string("\"UsersClient\"")?;
                        out.name = Some(s.parse().map_err(|_| {
                            syn::Error::new(s.span(), "the client's name must be an identifier")
                        })?);
                    }
                    "crate" => out.krate = Some(crate_value(&k)?),
                    _ => return Err(k.unknown(&CLIENT)),
                },
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The request format `#[inject(format = "...")]` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    /// `"json"`.
    Json,
    /// `"msgpack"`.
    MsgPack,
}

impl FormatKind {
    /// The variant of `Format` that generated code names.
    pub fn variant(self) -> &'static str {
        match self {
            Self::Json => "Json",
            Self::MsgPack => "MsgPack",
        }
    }
}

/// The `#[inject(...)]` options of a field: `default`, `timeout = "..."`, `format = "..."`,
/// `section = "..."`. A field may spread them over several `#[inject]` attributes; each option
/// is still given once.
#[derive(Default)]
pub struct InjectAttr {
    /// `default`: the field is `Default::default()` rather than injected.
    pub default: bool,
    /// `timeout = "..."` in milliseconds, with the span of its value.
    pub timeout: Option<(u64, Span)>,
    /// `format = "..."`, with the span of its value.
    pub format: Option<(FormatKind, Span)>,
    /// `section = "..."`: the configuration section, instead of the field's name.
    pub section: Option<LitStr>,
}

impl InjectAttr {
    /// Reads every `#[inject(...)]` of a field, and removes them from `attrs`.
    pub fn take_from(attrs: &mut Vec<Attribute>) -> syn::Result<Self> {
        let mut out = InjectAttr::default();
        let mut errors = Errors::default();
        let mut keys = Keys::default();
        let mut keep = Vec::new();
        for attr in attrs.drain(..) {
            if !attr.path().is_ident("inject") {
                keep.push(attr);
                continue;
            }
            if let syn::Meta::Path(path) = &attr.meta {
                errors.push(syn::Error::new_spanned(
                    path,
                    "#[inject] needs options: #[inject(default)], #[inject(timeout = \"2s\")], #[inject(format = \"json\")] or #[inject(section = \"smtp\")]",
                ));
                continue;
            }
            let Some(tokens) = errors.ok(attr_tokens(&attr, &INJECT)) else {
                continue;
            };
            let parsed = parse_list(tokens, &INJECT, &mut keys, |arg, _| out.read(arg));
            errors.ok(parsed);
        }
        *attrs = keep;
        errors.finish()?;
        Ok(out)
    }

    fn read(&mut self, arg: Arg) -> syn::Result<()> {
        let k = match arg {
            Arg::Key(k) => k,
            Arg::Positional(lit) => {
                return Err(syn::Error::new_spanned(
                    lit,
                    format!("unexpected literal: #[inject] takes {}", INJECT.expected()),
                ))
            }
        };
        match k.name().as_str() {
            "default" => {
                k.flag()?;
                self.default = true;
            }
            "timeout" => {
                let s = k.string("\"2s\"")?;
                self.timeout = Some((duration_ms(&s)?, s.span()));
            }
            "format" => {
                let s = k.string("\"json\"")?;
                let kind = match s.value().as_str() {
                    "json" => FormatKind::Json,
                    "msgpack" => FormatKind::MsgPack,
                    _ => {
                        return Err(syn::Error::new(
                            s.span(),
                            "format must be \"json\" or \"msgpack\"",
                        ))
                    }
                };
                self.format = Some((kind, s.span()));
            }
            "section" => self.section = Some(k.string("\"smtp\"")?),
            _ => return Err(k.unknown(&INJECT)),
        }
        Ok(())
    }
}
