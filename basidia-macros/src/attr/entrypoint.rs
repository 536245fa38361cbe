//! The attributes of entrypoint methods: `#[rpc]`, `#[event_handler]`, `#[timer]`, `#[http]`,
//! `#[on_start]` and `#[on_stop]`.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, LitStr};

use super::http::{HttpAttr, HTTP};
use super::{attr_tokens, duration_ms, parse_list, positional_str, Arg, Keys, Spec};
use crate::util::{is_wire_name, Errors};

const RPC: Spec = Spec {
    name: "rpc",
    keys: &["name", "not_result", "roles"],
};
const EVENT_HANDLER: Spec = Spec {
    name: "event_handler",
    keys: &["source", "event_type", "handler_type", "timeout"],
};
const TIMER: Spec = Spec {
    name: "timer",
    keys: &["interval", "eager"],
};
const ON_START: Spec = Spec {
    name: "on_start",
    keys: &[],
};
const ON_STOP: Spec = Spec {
    name: "on_stop",
    keys: &[],
};

/// An entrypoint attribute of a method, read.
pub enum EntrypointAttr {
    /// `#[rpc(...)]`.
    Rpc(RpcAttr),
    /// `#[event_handler(...)]`.
    EventHandler(EventHandlerAttr),
    /// `#[timer(...)]`.
    Timer(TimerAttr),
    /// `#[http(...)]`.
    Http(HttpAttr),
    /// `#[on_start]`.
    OnStart,
    /// `#[on_stop]`.
    OnStop,
}

impl EntrypointAttr {
    /// The name of the entrypoint attribute `attr` is, if it is one.
    pub fn name_of(attr: &Attribute) -> Option<&'static str> {
        [&RPC, &EVENT_HANDLER, &TIMER, &HTTP, &ON_START, &ON_STOP]
            .into_iter()
            .find(|spec| spec.is(attr))
            .map(|spec| spec.name)
    }

    /// Reads `attr`; `None` if it is not an entrypoint attribute.
    pub fn parse(attr: &Attribute) -> Option<syn::Result<Self>> {
        let read = if RPC.is(attr) {
            RpcAttr::parse(attr).map(Self::Rpc)
        } else if EVENT_HANDLER.is(attr) {
            EventHandlerAttr::parse(attr).map(Self::EventHandler)
        } else if TIMER.is(attr) {
            TimerAttr::parse(attr).map(Self::Timer)
        } else if HTTP.is(attr) {
            HttpAttr::parse(attr).map(Self::Http)
        } else if ON_START.is(attr) {
            no_arguments(attr, &ON_START).map(|()| Self::OnStart)
        } else if ON_STOP.is(attr) {
            no_arguments(attr, &ON_STOP).map(|()| Self::OnStop)
        } else {
            return None;
        };
        Some(read)
    }
}

fn no_arguments(attr: &Attribute, spec: &Spec) -> syn::Result<()> {
    match attr_tokens(attr, spec)?.into_iter().next() {
        Some(first) => Err(syn::Error::new(
            first.span(),
            format!("{} takes no arguments", spec.attr()),
        )),
        None => Ok(()),
    }
}

/// `#[rpc]`, `#[rpc(name = "wire_name")]`, `#[rpc(not_result)]`, on a service method or on a
/// `#[client]` trait method.
pub struct RpcAttr {
    /// `name = "..."`: the method's name on the wire, when it is not the Rust name.
    pub name: Option<LitStr>,
    /// `not_result`: the return type is a plain value even though its name is `Result`; the
    /// span of the flag.
    pub not_result: Option<Span>,
    /// `roles = [...]`: the roles a caller needs (one of them); on service methods only.
    pub roles: Option<(Vec<LitStr>, Span)>,
}

impl RpcAttr {
    /// Whether `attr` is `#[rpc]`.
    pub fn is(attr: &Attribute) -> bool {
        RPC.is(attr)
    }

    /// Reads `#[rpc(...)]`.
    pub fn parse(attr: &Attribute) -> syn::Result<Self> {
        let tokens = attr_tokens(attr, &RPC)?;
        let mut out = RpcAttr {
            name: None,
            not_result: None,
            roles: None,
        };
        parse_list(tokens, &RPC, &mut Keys::default(), |arg, _| match arg {
            Arg::Key(k) => match k.name().as_str() {
                "name" => {
                    let s = k.string("\"wire_name\"")?;
                    if !is_wire_name(&s.value()) {
                        return Err(syn::Error::new(
                            s.span(),
                            "a method name must be non-empty and contain no '.', '*', '#' or spaces",
                        ));
                    }
                    out.name = Some(s);
                    Ok(())
                }
                "not_result" => {
                    k.flag()?;
                    out.not_result = Some(k.key.span());
                    Ok(())
                }
                "roles" => {
                    out.roles = Some((k.strings("[\"admin\"]")?, k.key.span()));
                    Ok(())
                }
                _ => Err(k.unknown(&RPC)),
            },
            Arg::Positional(lit) => Err(syn::Error::new_spanned(
                lit,
                "use #[rpc(name = \"...\")] to rename the method on the wire",
            )),
        })?;
        Ok(out)
    }
}

/// How the instances of a service share the events of a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerTypeKind {
    /// `"service_pool"`, the default: one instance of the service gets each event.
    ServicePool,
    /// `"singleton"`: one handler in the whole cluster gets each event.
    Singleton,
    /// `"broadcast"`: every instance gets each event.
    Broadcast,
}

impl HandlerTypeKind {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "service_pool" => Some(Self::ServicePool),
            "singleton" => Some(Self::Singleton),
            "broadcast" => Some(Self::Broadcast),
            _ => None,
        }
    }

    /// The variant of `HandlerType` that generated code names.
    pub fn variant(self) -> &'static str {
        match self {
            Self::ServicePool => "ServicePool",
            Self::Singleton => "Singleton",
            Self::Broadcast => "Broadcast",
        }
    }
}

/// `#[event_handler("source", "event_type", handler_type = "...", timeout = "...")]`. The
/// source and the event type may also be given as `source = "..."` and `event_type = "..."`;
/// bare strings fill whichever of the two are not given by key, in that order.
pub struct EventHandlerAttr {
    /// The service whose events this handler receives.
    pub source: LitStr,
    /// The event type.
    pub event_type: LitStr,
    /// `handler_type = "..."`, with the span of its value.
    pub handler_type: Option<(HandlerTypeKind, Span)>,
    /// `timeout = "..."` in milliseconds, with the span of its value.
    pub timeout: Option<(u64, Span)>,
}

impl EventHandlerAttr {
    /// Reads `#[event_handler(...)]`.
    pub fn parse(attr: &Attribute) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let tokens = attr_tokens(attr, &EVENT_HANDLER)?;
        // Each slot: its value if valid, and whether it was given at all (a value given but
        // invalid has its own error, and is not also "missing").
        let mut source: (Option<LitStr>, bool) = (None, false);
        let mut event_type: (Option<LitStr>, bool) = (None, false);
        let mut positional: Vec<(Span, Option<LitStr>)> = Vec::new();
        let mut handler_type = None;
        let mut timeout = None;
        let parsed = parse_list(tokens, &EVENT_HANDLER, &mut Keys::default(), |arg, _| {
            let k = match arg {
                Arg::Positional(lit) => {
                    let span = lit.span();
                    let s = positional_str(lit, "the source service or the event type");
                    let ok = s.as_ref().ok().cloned();
                    positional.push((span, ok));
                    return s.map(drop);
                }
                Arg::Key(k) => k,
            };
            match k.name().as_str() {
                "source" => {
                    source.1 = true;
                    source.0 = Some(k.string("\"user_service\"")?);
                }
                "event_type" => {
                    event_type.1 = true;
                    event_type.0 = Some(k.string("\"user.created\"")?);
                }
                "handler_type" => {
                    let s = k.string("\"broadcast\"")?;
                    let kind = HandlerTypeKind::from_name(&s.value()).ok_or_else(|| {
                        syn::Error::new(
                            s.span(),
                            format!(
                                "unknown handler_type {:?}: expected \"service_pool\", \"singleton\" or \"broadcast\"",
                                s.value()
                            ),
                        )
                    })?;
                    handler_type = Some((kind, s.span()));
                }
                "timeout" => {
                    let s = k.string("\"30s\"")?;
                    timeout = Some((duration_ms(&s)?, s.span()));
                }
                _ => return Err(k.unknown(&EVENT_HANDLER)),
            }
            Ok(())
        });
        errors.ok(parsed);

        let mut positional = positional.into_iter();
        for slot in [&mut source, &mut event_type] {
            if !slot.1 {
                if let Some((_, value)) = positional.next() {
                    *slot = (value, true);
                }
            }
        }
        if let Some((span, _)) = positional.next() {
            errors.at(span, "too many arguments");
        }
        if !source.1 || !event_type.1 {
            errors.at(
                attr.path().span(),
                "#[event_handler] needs the source service and the event type: #[event_handler(\"user_service\", \"user.created\")]",
            );
        }
        errors.finish()?;
        match (source.0, event_type.0) {
            (Some(source), Some(event_type)) => Ok(EventHandlerAttr {
                source,
                event_type,
                handler_type,
                timeout,
            }),
            // Given but invalid: reported above, so `errors` was not empty.
            _ => Err(syn::Error::new(
                attr.path().span(),
                "invalid #[event_handler]",
            )),
        }
    }
}

/// `#[timer(interval = "30s")]` or `#[timer("30s")]`, with the flag `eager` to fire once at
/// start.
pub struct TimerAttr {
    /// The interval in milliseconds, with the span of its value.
    pub interval: (u64, Span),
    /// `eager`: the timer fires when the service starts, then every interval.
    pub eager: bool,
}

impl TimerAttr {
    /// Reads `#[timer(...)]`.
    pub fn parse(attr: &Attribute) -> syn::Result<Self> {
        let tokens = attr_tokens(attr, &TIMER)?;
        let mut interval = None;
        // Whether an interval was given at all, valid or not.
        let mut given = false;
        let mut eager = false;
        let parsed = parse_list(tokens, &TIMER, &mut Keys::default(), |arg, keys| {
            let s = match arg {
                Arg::Positional(lit) => {
                    keys.claim("interval", lit.span())?;
                    given = true;
                    positional_str(lit, "the interval, such as \"30s\"")?
                }
                Arg::Key(k) => match k.name().as_str() {
                    "interval" => {
                        given = true;
                        k.string("\"30s\"")?
                    }
                    "eager" => return k.flag().map(|()| eager = true),
                    _ => return Err(k.unknown(&TIMER)),
                },
            };
            interval = Some((duration_ms(&s)?, s.span()));
            Ok(())
        });
        let mut errors = Errors::default();
        errors.ok(parsed);
        if !given {
            errors.at(
                attr.path().span(),
                "#[timer] needs an interval: #[timer(interval = \"30s\")]",
            );
        }
        errors.finish()?;
        match interval {
            Some(interval) => Ok(TimerAttr { interval, eager }),
            // Given but invalid: reported above, so `errors` was not empty.
            None => Err(syn::Error::new(attr.path().span(), "invalid #[timer]")),
        }
    }
}
