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

/// Context headers, keyed without any transport prefix (the AMQP transport adds `nameko.`).
pub type Headers = BTreeMap<String, HeaderValue>;

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
