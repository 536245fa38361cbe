//! The broker-neutral message envelope: body, content type, context headers and routing
//! properties, as every backend carries them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;

/// A header value: what context data may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// A string (auth tokens, user ids, languages, call ids).
    Str(String),
    /// A list of strings (the call id stack).
    List(Vec<String>),
    /// An integer (deadlines in epoch milliseconds, counters).
    Int(i64),
    /// A flag.
    Bool(bool),
}

impl HeaderValue {
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (or a string holding one).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(i) => Some(*i),
            HeaderValue::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::Str(s.to_string())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::Str(s)
    }
}

impl From<i64> for HeaderValue {
    fn from(i: i64) -> Self {
        HeaderValue::Int(i)
    }
}

impl From<bool> for HeaderValue {
    fn from(b: bool) -> Self {
        HeaderValue::Bool(b)
    }
}

impl From<Vec<String>> for HeaderValue {
    fn from(v: Vec<String>) -> Self {
        HeaderValue::List(v)
    }
}

/// Written as the plain value: a string, an array of strings, an integer or a boolean (so that
/// [`Headers`] serialize as one object of them).
impl serde::Serialize for HeaderValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HeaderValue::Str(x) => s.serialize_str(x),
            HeaderValue::List(x) => serde::Serialize::serialize(x, s),
            HeaderValue::Int(x) => s.serialize_i64(*x),
            HeaderValue::Bool(x) => s.serialize_bool(*x),
        }
    }
}

/// Context headers, keyed without any transport prefix (the AMQP transport adds `nameko.`).
pub type Headers = BTreeMap<String, HeaderValue>;

/// What a masked secret reads as.
pub const MASKED: &str = "***";

/// Words that mark a context key as secret (`auth_token`, `api_key`, `password`, ...).
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "credential",
    "key",
    "auth",
];

/// Whether the context key `key` holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// Replaces the values of secret context keys (see [`is_secret_key`]) with [`MASKED`], for
/// what is kept or shown: dead letters, listings.
pub fn mask_secrets(headers: &mut Headers) {
    for (k, v) in headers.iter_mut() {
        if is_secret_key(k) {
            *v = HeaderValue::Str(MASKED.to_string());
        }
    }
}

/// Context data read from a self-describing map (a JSON object, a msgpack map), as peers in any
/// language write it: strings, booleans and lists keep their kind, integers that fit an `i64`
/// become integers and other numbers their text, list items other than strings their JSON
/// text; nulls and nested maps are left out. (Writing needs no wrapper: [`Headers`] serialize
/// as such a map.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextData(pub Headers);

impl<'de> serde::Deserialize<'de> for ContextData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of context data")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Headers, A::Error> {
                let mut out = Headers::new();
                while let Some(key) = map.next_key::<String>()? {
                    if let Some(value) = map.next_value::<ContextValue>()?.0 {
                        out.insert(key, value);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Object).map(ContextData)
    }
}

/// One value of context data; `None` for what context headers cannot hold.
struct ContextValue(Option<HeaderValue>);

impl<'de> serde::Deserialize<'de> for ContextValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = Option<HeaderValue>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a context value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(HeaderValue::Str(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(HeaderValue::Str(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(HeaderValue::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(HeaderValue::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(match i64::try_from(v) {
                    Ok(i) => HeaderValue::Int(i),
                    Err(_) => HeaderValue::Str(v.to_string()),
                }))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(serde_json::Number::from_f64(v).map(|n| HeaderValue::Str(n.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<serde_json::Value>()? {
                    items.push(match item {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    });
                }
                Ok(Some(HeaderValue::List(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(None)
            }
        }
        d.deserialize_any(Any).map(ContextValue)
    }
}

/// One message as a broker carries it.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// The encoded payload.
    pub body: Bytes,
    /// The payload's content type; a message without one cannot be decoded.
    pub content_type: Option<Cow<'static, str>>,
    /// Context data (the deadline apart: see `deadline`).
    pub headers: Headers,
    /// The caller's deadline: past it, nobody waits for the work this message asks for. Brokers
    /// carry it as milliseconds since the Unix epoch (see the protocol documents).
    pub deadline: Option<tokio::time::Instant>,
    /// Correlates a reply with its request.
    pub correlation_id: Option<String>,
    /// Where a reply goes (broker-specific address).
    pub reply_to: Option<String>,
    /// Priority (0-255) on brokers that support it.
    pub priority: Option<u8>,
    /// Set by the broker: this message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// Set by the broker: how many times this message has been delivered, counting this one.
    pub delivery_count: u32,
    /// On a reply that carries an error: `exc_type: message`. Backends may surface it (NATS
    /// sets the services-API error headers and counts it in `$SRV.STATS`).
    pub error: Option<String>,
}

impl Message {
    /// A message with a body and content type.
    pub fn new(body: impl Into<Bytes>, content_type: &'static str) -> Self {
        Message {
            body: body.into(),
            content_type: Some(Cow::Borrowed(content_type)),
            ..Message::default()
        }
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secret_keys_are_masked_and_others_kept() {
        let mut h = Headers::new();
        h.insert("auth_token".into(), "eyJhbGciOi".into());
        h.insert("X-Api-Key".into(), "k".into());
        h.insert("user_id".into(), "42".into());
        h.insert(
            "call_id_stack".into(),
            HeaderValue::List(vec!["a.b.1".into()]),
        );
        mask_secrets(&mut h);
        assert_eq!(h["auth_token"], HeaderValue::Str(MASKED.into()));
        assert_eq!(h["X-Api-Key"], HeaderValue::Str(MASKED.into()));
        assert_eq!(h["user_id"], HeaderValue::Str("42".into()));
        assert_eq!(h["call_id_stack"], HeaderValue::List(vec!["a.b.1".into()]));
    }
}
