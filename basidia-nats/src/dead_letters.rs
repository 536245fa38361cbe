//! Dead letters on NATS: kept in the stream `BASIDIA_DEAD_LETTERS`, listed by reading it, and
//! replayed by publishing them again where they came from.
//!
//! A dead letter carries, beside the message's own headers, why it is there
//! (`Basidia-Dead-Letter-Reason`), the queue or consumer it left (`Basidia-Dead-Letter-Queue`),
//! the subject it was published on (`Basidia-Dead-Letter-Subject`, for JetStream events) and how
//! often it had been delivered (`Basidia-Dead-Letter-Deliveries`). Its id is its sequence in
//! the stream.
//!
//! A JetStream event goes back to its subject, where every handler of the event type would get
//! it again; the copy carries `Basidia-Replay-For` with the consumer it is for, and every other
//! consumer acknowledges it unseen. Core-NATS dead letters (requests, broadcast events) have no
//! stream to go back to and are not replayed.

use std::time::Duration;

use async_nats::HeaderMap;
use basidia_core::{BrokerError, Message, Replay, StoredDeadLetter};

use basidia_core::internal::{backend, backend_msg, lock, lost};

use crate::wire::{message_of, to_nats_headers, DEAD_LETTER_STREAM, REASON_HEADER};
use crate::NatsBroker;

/// The queue or consumer a dead letter left.
pub const QUEUE_HEADER: &str = "Basidia-Dead-Letter-Queue";
/// The subject a dead-lettered JetStream event was published on.
pub const SUBJECT_HEADER: &str = "Basidia-Dead-Letter-Subject";
/// How often a dead letter had been delivered.
pub const DELIVERIES_HEADER: &str = "Basidia-Dead-Letter-Deliveries";
/// On a replayed event: the one consumer it is for.
pub const REPLAY_FOR_HEADER: &str = "Basidia-Replay-For";

/// The headers only the dead-letter store uses, left off a replayed copy.
const STORE_HEADERS: [&str; 4] = [
    REASON_HEADER,
    QUEUE_HEADER,
    SUBJECT_HEADER,
    DELIVERIES_HEADER,
];

/// Where a dead letter came from.
pub(super) struct Origin<'a> {
    pub(super) queue: &'a str,
    pub(super) subject: Option<&'a str>,
}

/// Keeps `message` in the dead-letter stream under `subject`.
pub(super) async fn publish_dead_letter(
    broker: &NatsBroker,
    subject: &str,
    message: Message,
    reason: &str,
    origin: Origin<'_>,
) -> Result<(), BrokerError> {
    tracing::warn!(subject, reason, "message dead-lettered");
    let mut headers = to_nats_headers(&message);
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    headers.insert(REASON_HEADER, one_line(reason).as_str());
    headers.insert(QUEUE_HEADER, one_line(origin.queue).as_str());
    if let Some(from) = origin.subject {
        headers.insert(SUBJECT_HEADER, from);
    }
    headers.insert(
        DELIVERIES_HEADER,
        message.delivery_count.to_string().as_str(),
    );
    broker
        .inner
        .js
        .publish_with_headers(subject.to_string(), headers, message.body)
        .await
        .map_err(lost)?
        .await
        .map_err(lost)?;
    Ok(())
}

/// Whether a delivery is a replayed dead letter meant for a consumer other than `consumer`.
pub(super) fn replayed_for_another(headers: Option<&HeaderMap>, consumer: &str) -> bool {
    headers
        .and_then(|h| h.get(REPLAY_FOR_HEADER))
        .is_some_and(|v| v.as_str() != consumer)
}

fn header<'a>(headers: &'a HeaderMap, key: &str) -> &'a str {
    headers.get(key).map_or("", |v| v.as_str())
}

fn stored(raw: async_nats::jetstream::message::StreamMessage) -> StoredDeadLetter {
    let headers = raw.headers.clone();
    let age = Duration::try_from(time::OffsetDateTime::now_utc() - raw.time).ok();
    let deliveries = header(&headers, DELIVERIES_HEADER).parse().unwrap_or(0);
    let mut core = async_nats::Message {
        subject: raw.subject.clone(),
        reply: None,
        payload: raw.payload,
        headers: Some(raw.headers),
        status: None,
        description: None,
        length: 0,
    };
    let mut message = message_of(&mut core, deliveries);
    basidia_core::message::mask_secrets(&mut message.headers);
    let routing_key = header(&headers, SUBJECT_HEADER)
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_string();
    StoredDeadLetter::new(
        raw.sequence.to_string(),
        header(&headers, QUEUE_HEADER).to_string(),
        routing_key,
        header(&headers, REASON_HEADER).to_string(),
        deliveries,
        age,
        message,
    )
}

/// The sequences the dead-letter stream holds now, oldest first, with the stream.
async fn sequences(
    broker: &NatsBroker,
) -> Result<
    (
        async_nats::jetstream::stream::Stream,
        std::ops::RangeInclusive<u64>,
    ),
    BrokerError,
> {
    let mut stream = broker
        .inner
        .js
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .map_err(backend)?;
    let state = stream.info().await.map_err(backend)?.state.clone();
    Ok((stream, state.first_sequence..=state.last_sequence))
}

pub(super) async fn list(
    broker: &NatsBroker,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, BrokerError> {
    let (stream, range) = sequences(broker).await?;
    let mut out = Vec::new();
    for seq in range {
        if out.len() >= limit || seq == 0 {
            break;
        }
        // A sequence that is gone (deleted, replayed) is simply skipped.
        if let Ok(raw) = stream.get_raw_message(seq).await {
            out.push(stored(raw));
        }
    }
    Ok(out)
}

pub(super) async fn replay(broker: &NatsBroker, which: Replay<'_>) -> Result<usize, BrokerError> {
    let (stream, range) = match which {
        Replay::All => sequences(broker).await?,
        Replay::One(id) => {
            let seq: u64 = id
                .parse()
                .map_err(|_| backend_msg(format!("{id:?} is not a dead letter id here")))?;
            let (stream, _) = sequences(broker).await?;
            (stream, seq..=seq)
        }
    };
    let mut replayed = 0;
    for seq in range {
        if seq == 0 {
            break;
        }
        let Ok(raw) = stream.get_raw_message(seq).await else {
            if matches!(which, Replay::One(_)) {
                return Err(backend_msg(format!("no dead letter {seq}")));
            }
            continue;
        };
        let subject = header(&raw.headers, SUBJECT_HEADER).to_string();
        let consumer = header(&raw.headers, QUEUE_HEADER).to_string();
        if subject.is_empty() {
            tracing::warn!(
                seq,
                queue = consumer,
                "a request or broadcast event has no stream to go back to; it stays"
            );
            continue;
        }
        let mut headers = HeaderMap::new();
        for (k, values) in raw.headers.iter() {
            if STORE_HEADERS.contains(&k.as_ref()) {
                continue;
            }
            for v in values {
                headers.append(k.clone(), v.clone());
            }
        }
        headers.insert(REPLAY_FOR_HEADER, consumer.as_str());
        // The stream of the event's source may be gone with its cached state; publishing finds
        // out, and so does the next `publish_event`.
        let ack = broker
            .inner
            .js
            .publish_with_headers(subject.clone(), headers, raw.payload.clone())
            .await
            .map_err(lost)?;
        if let Err(e) = ack.await {
            lock(&broker.inner.streams).known.clear();
            return Err(lost(e));
        }
        stream.delete_message(seq).await.map_err(backend)?;
        replayed += 1;
    }
    Ok(replayed)
}
