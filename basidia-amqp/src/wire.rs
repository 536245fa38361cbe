//! Mapping between Basidia's [`Message`] and AMQP properties in Nameko's conventions.

use std::borrow::Cow;

use basidia_core::{HeaderValue, Headers, Message};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// Context data travels as headers with this prefix, as Nameko does.
pub const HEADER_PREFIX: &str = "nameko.";
/// How many times the message was delivered before it was republished (retries).
pub const DELIVERY_COUNT_HEADER: &str = "x-basidia-delivery-count";
/// The routing key a republished message originally had.
pub const ROUTING_KEY_HEADER: &str = "x-basidia-routing-key";
/// How often a quorum queue delivered the message before (RabbitMQ sets it on redeliveries).
pub const QUORUM_DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-basidia-reason";
/// The queue a dead-lettered message came from.
pub const QUEUE_HEADER: &str = "x-basidia-queue";
/// A dead letter's id, for replaying it.
pub const DEAD_LETTER_ID_HEADER: &str = "x-basidia-dead-letter-id";
/// When a message was dead-lettered, in milliseconds since the Unix epoch.
pub const DEAD_LETTERED_AT_HEADER: &str = "x-basidia-dead-lettered-at";
/// The prefix of every header Basidia writes for itself.
pub const OWN_HEADER_PREFIX: &str = "x-basidia-";

/// AMQP delivery mode 2: persistent (events, retries, dead letters).
pub const PERSISTENT: u8 = 2;
/// AMQP delivery mode 1: transient (RPC requests and replies: a caller that outlives a broker
/// restart has already failed with `ConnectionLost`, so writing them to disk buys nothing).
pub const TRANSIENT: u8 = 1;

fn header_value(value: &HeaderValue) -> AMQPValue {
    match value {
        HeaderValue::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        HeaderValue::List(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|s| AMQPValue::LongString(LongString::from(s.as_str())))
                .collect::<Vec<_>>(),
        )),
        HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
    }
}

fn text_of(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

fn int_of(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(i) => i64::from(*i),
        AMQPValue::ShortShortUInt(i) => i64::from(*i),
        AMQPValue::ShortInt(i) => i64::from(*i),
        AMQPValue::ShortUInt(i) => i64::from(*i),
        AMQPValue::LongInt(i) => i64::from(*i),
        AMQPValue::LongUInt(i) => i64::from(*i),
        AMQPValue::LongLongInt(i) => *i,
        AMQPValue::Timestamp(t) => i64::try_from(*t).ok()?,
        _ => return None,
    })
}

fn from_amqp(value: &AMQPValue) -> Option<HeaderValue> {
    match value {
        AMQPValue::Boolean(b) => Some(HeaderValue::Bool(*b)),
        AMQPValue::FieldArray(items) => Some(HeaderValue::List(
            items.as_slice().iter().filter_map(text_of).collect(),
        )),
        AMQPValue::Void => None,
        other => int_of(other)
            .map(HeaderValue::Int)
            .or_else(|| text_of(other).map(HeaderValue::Str)),
    }
}

/// Context keys that travel under their own W3C names rather than with the prefix, where
/// OpenTelemetry's pika and aio-pika instrumentations write and read them.
const TRACE_KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// The AMQP headers for context data (prefixed; the trace context under its W3C names) plus
/// Basidia's own bookkeeping headers.
pub fn headers_to_table(headers: &Headers, extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        let key = if TRACE_KEYS.contains(&k.as_str()) {
            ShortString::from(k.as_str())
        } else {
            ShortString::from(format!("{HEADER_PREFIX}{k}"))
        };
        table.insert(key, header_value(v));
    }
    for (k, v) in extra {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

/// Reads the context data (`nameko.`-prefixed headers, and `traceparent` and `tracestate`
/// under their own names, which win over prefixed ones) out of an AMQP header table.
pub fn table_to_headers(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    if let Some(table) = table {
        for (k, v) in table {
            if let Some(key) = k.as_str().strip_prefix(HEADER_PREFIX) {
                if let Some(value) = from_amqp(v) {
                    headers.insert(key.to_string(), value);
                }
            }
        }
        for key in TRACE_KEYS {
            if let Some(value) = table.inner().get(key).and_then(from_amqp) {
                headers.insert(key.to_string(), value);
            }
        }
    }
    headers
}

/// Reads an integer header.
pub fn int_header(table: Option<&FieldTable>, key: &str) -> Option<i64> {
    table
        .and_then(|t| t.inner().get(key))
        .and_then(|v| int_of(v).or_else(|| text_of(v).and_then(|s| s.parse().ok())))
}

/// Reads a string header.
pub fn str_header(table: Option<&FieldTable>, key: &str) -> Option<String> {
    table.and_then(|t| t.inner().get(key)).and_then(text_of)
}

/// The AMQP properties of an outgoing message.
pub fn properties(message: &Message, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = headers_to_table(&message.headers, extra);
    if let Some(at) = message.deadline {
        // The deadline is context data on this wire, as Nameko peers expect.
        table.insert(
            ShortString::from(format!(
                "{HEADER_PREFIX}{}",
                basidia_core::context::DEADLINE
            )),
            AMQPValue::LongLongInt(basidia_core::context::epoch_ms_from_instant(at)),
        );
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table);
    if let Some(ct) = &message.content_type {
        props = props.with_content_type(ShortString::from(ct.as_ref()));
        if let Some(format) = basidia_serializers::Format::from_content_type(ct) {
            props = props.with_content_encoding(ShortString::from(format.content_encoding()));
        }
    }
    if let Some(id) = &message.correlation_id {
        props = props.with_correlation_id(ShortString::from(id.as_str()));
    }
    if let Some(to) = &message.reply_to {
        props = props.with_reply_to(ShortString::from(to.as_str()));
    }
    if let Some(p) = message.priority {
        props = props.with_priority(p);
    }
    props
}

/// A [`Message`] from a delivery's properties and body. `republished` says the message came
/// through the default exchange, the way Basidia republishes a retry straight to its queue:
/// only then is its delivery-count header read, so that a message published to a service's
/// exchange cannot claim deliveries it never had.
pub fn message_of(
    props: &BasicProperties,
    body: Vec<u8>,
    redelivered: bool,
    republished: bool,
) -> Message {
    let table = props.headers().as_ref();
    let earlier = if republished {
        int_header(table, DELIVERY_COUNT_HEADER)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    } else {
        0
    };
    // A quorum queue counts the deliveries of a message itself, crashes of its consumers
    // included; on a classic queue a redelivery is known only by its flag. The header is read
    // only on redeliveries, which the broker marks: a first delivery's header is the
    // publisher's.
    let earlier_here = if redelivered {
        int_header(table, QUORUM_DELIVERY_COUNT_HEADER)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    } else {
        0
    };
    let delivery_count = earlier.saturating_add(earlier_here).saturating_add(1);
    let mut headers = table_to_headers(table);
    let deadline = headers
        .remove(basidia_core::context::DEADLINE)
        .and_then(|v| v.as_i64())
        .map(basidia_core::context::instant_from_epoch_ms);
    Message {
        body: body.into(),
        content_type: props
            .content_type()
            .as_ref()
            .map(|c| Cow::Owned(c.as_str().to_string())),
        headers,
        deadline,
        correlation_id: props
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_string()),
        reply_to: props.reply_to().as_ref().map(|c| c.as_str().to_string()),
        priority: *props.priority(),
        redelivered: redelivered || delivery_count > 1,
        delivery_count,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_headers_round_trip_with_the_nameko_prefix() {
        let mut m = Message::new(b"{}".to_vec(), "application/json");
        m.headers.insert("auth_token".into(), "tok".into());
        m.headers.insert(
            "call_id_stack".into(),
            HeaderValue::List(vec!["a.b.1".into()]),
        );
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        m.headers.insert("traceparent".into(), parent.into());
        let in_a_minute = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        m.deadline = Some(in_a_minute);
        m.correlation_id = Some("c".into());
        m.reply_to = Some("r".into());
        let props = properties(&m, &[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(2))]);
        let table = props.headers().as_ref().unwrap();
        assert!(table.inner().contains_key("nameko.auth_token"));
        // The trace context under the names OpenTelemetry's instrumentations use.
        assert!(table.inner().contains_key("traceparent"));
        assert!(!table.inner().contains_key("nameko.traceparent"));
        assert!(
            matches!(table.inner().get("nameko.deadline"), Some(AMQPValue::LongLongInt(ms)) if *ms > 0),
            "the deadline travels as epoch milliseconds"
        );
        assert_eq!(props.content_encoding().as_ref().unwrap().as_str(), "utf-8");
        let back = message_of(&props, b"{}".to_vec(), false, true);
        assert_eq!(back.headers, m.headers);
        let at = back.deadline.expect("the deadline comes back");
        let off = at.max(in_a_minute) - at.min(in_a_minute);
        assert!(off <= std::time::Duration::from_millis(5), "{off:?}");
        assert_eq!(back.delivery_count, 3);
        assert!(back.redelivered);
        assert_eq!(back.correlation_id.as_deref(), Some("c"));
        assert_eq!(back.content_type.as_deref(), Some("application/json"));
    }
}
