//! How Basidia's messages look on NATS: the headers that carry metadata, the subjects and
//! JetStream names, and reading a message back.

use async_nats::HeaderMap;
use basidia_core::{ContextData, Headers, Message};

use crate::calls;

/// The header carrying the context data, as a JSON object.
pub const CONTEXT_HEADER: &str = "Basidia-Context";
/// The header carrying the deadline alone (milliseconds since the Unix epoch), in place of
/// [`CONTEXT_HEADER`] when the deadline is all the context there is.
pub const DEADLINE_HEADER: &str = "Basidia-Deadline";
/// The content-type header.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
/// The services-API error header on error replies.
pub const ERROR_HEADER: &str = "Nats-Service-Error";
/// The services-API error code header on error replies.
pub const ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";
/// The reason header on dead letters.
pub const REASON_HEADER: &str = "Basidia-Dead-Letter-Reason";
/// The stream that keeps dead letters.
pub const DEAD_LETTER_STREAM: &str = "BASIDIA_DEAD_LETTERS";

// The same names as header keys the client needs no allocation or validation for.
pub(crate) const CONTEXT_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(CONTEXT_HEADER);
pub(crate) const DEADLINE_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(DEADLINE_HEADER);
pub(crate) const CONTENT_TYPE_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(CONTENT_TYPE_HEADER);
pub(crate) const ERROR_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(ERROR_HEADER);
pub(crate) const ERROR_CODE_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(ERROR_CODE_HEADER);

/// The subject of an RPC method.
pub fn rpc_subject(service: &str, method: &str) -> String {
    const PREFIX: &str = "basidia.rpc.";
    let mut subject = String::with_capacity(PREFIX.len() + service.len() + 1 + method.len());
    subject.push_str(PREFIX);
    subject.push_str(service);
    subject.push('.');
    subject.push_str(method);
    subject
}

/// Whether `name` can be a part of a subject one publishes to: not empty, no whitespace (which
/// would break the protocol's framing), no wildcard.
pub(crate) fn fits_subject(name: &str) -> bool {
    !name.is_empty()
        && !name
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'*' | b'>'))
}

/// The subject of an event.
pub fn event_subject(source: &str, event_type: &str) -> String {
    format!("basidia.events.{source}.{event_type}")
}

/// A JetStream name from arbitrary text: characters other than letters, digits, `-` and `_`
/// become `_`.
pub fn js_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The stream holding the events of `source`.
pub fn event_stream(source: &str) -> String {
    format!("BASIDIA_EVENTS_{}", js_name(source))
}

/// The headers that carry a message's metadata. msgpack, the default, needs no `Content-Type`
/// header, and a message without metadata gets none at all (a plain `PUB` on the wire).
pub(crate) fn to_nats_headers(message: &Message) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(ct) = &message.content_type {
        if ct != DEFAULT_CONTENT_TYPE {
            headers.insert(CONTENT_TYPE_NAME, ct.as_ref());
        }
    }
    if let Some(at) = message.deadline {
        let ms = basidia_core::context::epoch_ms_from_instant(at);
        let mut value = String::with_capacity(20);
        calls::push_decimal(&mut value, u64::try_from(ms).unwrap_or(0));
        headers.insert(DEADLINE_NAME, value);
    }
    if !message.headers.is_empty() {
        if let Ok(json) = serde_json::to_string(&message.headers) {
            headers.insert(CONTEXT_NAME, json);
        }
    }
    if let Some(err) = &message.error {
        headers.insert(ERROR_NAME, err.replace(['\r', '\n'], " "));
        headers.insert(ERROR_CODE_NAME, "500");
    }
    headers
}

/// The content type of a message without a `Content-Type` header.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "application/x-msgpack";

/// The headers Basidia reads, found in one pass over the map (rather than a hashed lookup for
/// each, most of which find nothing).
#[derive(Default)]
pub(crate) struct Meta<'a> {
    context: Option<&'a str>,
    deadline: Option<&'a str>,
    content_type: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> Meta<'a> {
    pub(crate) fn read(headers: Option<&'a HeaderMap>) -> Self {
        let mut meta = Meta::default();
        for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
            let Some(value) = values.first().map(|v| v.as_str()) else {
                continue;
            };
            if *name == CONTEXT_NAME {
                meta.context = Some(value);
            } else if *name == DEADLINE_NAME {
                meta.deadline = Some(value);
            } else if *name == CONTENT_TYPE_NAME {
                meta.content_type = Some(value);
            } else if *name == ERROR_NAME {
                meta.error = Some(value);
            }
        }
        meta
    }

    /// The context data of the `Basidia-Context` header, and the deadline (milliseconds since
    /// the Unix epoch) of the `Basidia-Deadline` header or, where the context has one (as
    /// other implementations may send it), of the context.
    pub(crate) fn context(&self) -> (Headers, Option<i64>) {
        let mut context = match self.context {
            None => Headers::new(),
            Some(raw) => match serde_json::from_str::<ContextData>(raw) {
                Ok(ContextData(context)) => context,
                Err(_) => {
                    tracing::warn!("ignoring an undecodable {CONTEXT_HEADER} header");
                    Headers::new()
                }
            },
        };
        let in_context = context
            .remove(basidia_core::context::DEADLINE)
            .and_then(|v| v.as_i64());
        let deadline = in_context.or_else(|| {
            let raw = self.deadline?;
            let ms = raw.parse::<i64>().ok();
            if ms.is_none() {
                tracing::warn!("ignoring an undecodable {DEADLINE_HEADER} header");
            }
            ms
        });
        (context, deadline)
    }
}

#[cfg(test)]
pub(crate) fn context_of(headers: Option<&HeaderMap>) -> (Headers, Option<i64>) {
    Meta::read(headers).context()
}

/// The message Basidia reads from `m`, whose payload it takes (a clone would cost the buffer's
/// reference count a round trip).
pub(crate) fn message_of(m: &mut async_nats::Message, delivered: u32) -> Message {
    let body = std::mem::take(&mut m.payload);
    let meta = Meta::read(m.headers.as_ref());
    let (headers, deadline) = meta.context();
    Message {
        body,
        content_type: Some(match meta.content_type {
            Some(v) => std::borrow::Cow::Owned(v.to_string()),
            None => std::borrow::Cow::Borrowed(DEFAULT_CONTENT_TYPE),
        }),
        headers,
        deadline: deadline.map(basidia_core::context::instant_from_epoch_ms),
        correlation_id: m.reply.as_ref().map(|r| r.as_str().to_owned()),
        reply_to: m.reply.as_ref().map(|r| r.as_str().to_owned()),
        priority: None,
        redelivered: delivered > 1,
        delivery_count: delivered,
        error: meta.error.map(str::to_string),
    }
}

/// Whether `subject` belongs to the server's own APIs (`$JS.`, `$SYS.`, `$KV.`, `$SRV.`,
/// `$O.` and whatever else the server reserves with a leading `$`).
pub(crate) fn is_server_api(subject: &str) -> bool {
    subject.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;
    use basidia_core::HeaderValue;
    use std::time::Duration;

    #[test]
    pub(crate) fn context_header_reads_every_kind() {
        let mut map = HeaderMap::new();
        map.insert(
            CONTEXT_NAME,
            r#"{"deadline":1795000000000,"user_id":"7","call_id_stack":["a.b.1",2],"debug":true,"big":18446744073709551615,"ratio":1.5,"gone":null,"nested":{"x":[1]}}"#,
        );
        let (h, deadline) = context_of(Some(&map));
        assert_eq!(deadline, Some(1_795_000_000_000));
        assert!(
            !h.contains_key("deadline"),
            "the deadline is no context data"
        );
        assert_eq!(h.get("user_id"), Some(&HeaderValue::from("7")));
        assert_eq!(
            h.get("call_id_stack"),
            Some(&HeaderValue::List(vec!["a.b.1".into(), "2".into()]))
        );
        assert_eq!(h.get("debug"), Some(&HeaderValue::Bool(true)));
        assert_eq!(
            h.get("big"),
            Some(&HeaderValue::from("18446744073709551615"))
        );
        assert_eq!(h.get("ratio"), Some(&HeaderValue::from("1.5")));
        assert_eq!(h.len(), 5);
        // The same headers written and read again.
        let message = Message {
            headers: h.clone(),
            ..Message::default()
        };
        assert_eq!(context_of(Some(&to_nats_headers(&message))), (h, None));
        for bad in ["[1]", "{\"a\":", "not json", "\"s\""] {
            let mut map = HeaderMap::new();
            map.insert(CONTEXT_NAME, bad);
            assert_eq!(context_of(Some(&map)), (Headers::new(), None), "{bad}");
        }
    }

    #[test]
    pub(crate) fn the_deadline_travels_in_its_own_header() {
        let in_a_minute = tokio::time::Instant::now() + Duration::from_secs(60);
        let ms = basidia_core::context::epoch_ms_from_instant(in_a_minute);
        let mut message = Message::new(bytes::Bytes::new(), DEFAULT_CONTENT_TYPE);
        message.deadline = Some(in_a_minute);
        let headers = to_nats_headers(&message);
        let sent: i64 = headers
            .get(DEADLINE_NAME)
            .expect("a deadline header")
            .as_str()
            .parse()
            .expect("milliseconds");
        assert!((sent - ms).abs() <= 5, "{sent} against {ms}");
        assert!(
            headers.get(CONTEXT_NAME).is_none(),
            "no context data, no JSON"
        );
        assert_eq!(context_of(Some(&headers)), (Headers::new(), Some(sent)));

        // Context data goes in the JSON header; the deadline stays in its own.
        message
            .headers
            .insert("user_id".into(), HeaderValue::Str("7".into()));
        let headers = to_nats_headers(&message);
        assert!(headers.get(DEADLINE_NAME).is_some());
        let (context, deadline) = context_of(Some(&headers));
        assert_eq!(context, message.headers);
        assert!(deadline.is_some_and(|d| (d - ms).abs() <= 5));

        // A deadline in the JSON context (from another implementation) stands over the header;
        // a bad deadline header is ignored.
        let mut both = HeaderMap::new();
        both.insert(CONTEXT_NAME, r#"{"deadline":5}"#);
        both.insert(DEADLINE_NAME, "9");
        assert_eq!(context_of(Some(&both)), (Headers::new(), Some(5)));
        let mut bad = HeaderMap::new();
        bad.insert(DEADLINE_NAME, "soon");
        assert_eq!(context_of(Some(&bad)), (Headers::new(), None));
        // The deadline reaches the message as an instant.
        let received = message_of(
            &mut async_nats::Message {
                subject: "s".into(),
                reply: None,
                payload: bytes::Bytes::new(),
                headers: Some(to_nats_headers(&message)),
                status: None,
                description: None,
                length: 0,
            },
            1,
        );
        let at = received.deadline.expect("a deadline");
        let off = at.max(in_a_minute) - at.min(in_a_minute);
        assert!(off <= Duration::from_millis(5), "{off:?}");
    }

    #[test]
    pub(crate) fn names_that_cannot_be_published_to_are_refused() {
        assert!(fits_subject("greeting_service") && fits_subject("say-hello"));
        for bad in ["", "a b", "a\tb", "a\r\nPUB x 1", "*", "a>"] {
            assert!(!fits_subject(bad), "{bad:?}");
        }
    }

    #[test]
    pub(crate) fn names_and_subjects() {
        assert_eq!(js_name("evt-a-b.c--svc.m"), "evt-a-b_c--svc_m");
        assert_eq!(event_stream("user_service"), "BASIDIA_EVENTS_user_service");
        assert_eq!(rpc_subject("s", "m"), "basidia.rpc.s.m");
        assert_eq!(
            event_subject("s", "user.created"),
            "basidia.events.s.user.created"
        );
    }
}
