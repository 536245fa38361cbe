//! The dead letters in `basidia.dead-letters`: declaring their queue, listing and replaying
//! them.
//!
//! Listing takes messages with `basic.get` without acknowledging them and closes the channel,
//! which puts them all back in their places: the queue is read, not consumed. Replaying
//! republishes a dead letter to the queue it came from (through the default exchange, without
//! Basidia's bookkeeping headers, so its delivery count starts again) with a publisher confirm,
//! then acknowledges it; dead letters it leaves alone go back with the channel's close.

use std::time::Duration;

use basidia_core::{BrokerError, Replay, StoredDeadLetter};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};

use crate::channels::open_publish;
use crate::connect::{owned_queue_args, Live};
use crate::options::AmqpOptions;
use crate::wire;
use basidia_core::internal::{backend, backend_msg, lost};

/// The exchange dead letters are published to.
pub const DEAD_LETTER_EXCHANGE: &str = "basidia.dead-letter";
/// The queue that keeps dead letters (bound to [`DEAD_LETTER_EXCHANGE`] with `#`).
pub const DEAD_LETTER_QUEUE: &str = "basidia.dead-letters";

/// What a dead letter is called when it was kept before dead letters had ids.
const NO_ID: &str = "-";

fn stored(delivery: &lapin::message::Delivery) -> StoredDeadLetter {
    let table = delivery.properties.headers().as_ref();
    let text = |key: &str| wire::str_header(table, key).unwrap_or_default();
    let now = basidia_core::context::epoch_ms_after(Duration::ZERO);
    let age = wire::int_header(table, wire::DEAD_LETTERED_AT_HEADER)
        .and_then(|at| u64::try_from(now.saturating_sub(at)).ok())
        .map(Duration::from_millis);
    let count = wire::int_header(table, wire::DELIVERY_COUNT_HEADER)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let mut message = wire::message_of(&delivery.properties, delivery.data.clone(), false, false);
    basidia_core::message::mask_secrets(&mut message.headers);
    let id = wire::str_header(table, wire::DEAD_LETTER_ID_HEADER).unwrap_or_else(|| NO_ID.into());
    StoredDeadLetter::new(
        id,
        text(wire::QUEUE_HEADER),
        text(wire::ROUTING_KEY_HEADER),
        text(wire::REASON_HEADER),
        count,
        age,
        message,
    )
}

/// How many messages the dead-letter queue holds now.
async fn depth(channel: &lapin::Channel) -> Result<u32, BrokerError> {
    let q = channel
        .queue_declare(
            DEAD_LETTER_QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    Ok(q.message_count())
}

pub(crate) async fn list(live: &Live, limit: usize) -> Result<Vec<StoredDeadLetter>, BrokerError> {
    let channel = live.connection.create_channel().await.map_err(lost)?;
    let mut out = Vec::new();
    // Each message is read once, however many arrive meanwhile.
    let mut left = depth(&channel).await?;
    while out.len() < limit && left > 0 {
        left -= 1;
        let got = channel
            .basic_get(DEAD_LETTER_QUEUE.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend)?;
        match got {
            Some(m) => out.push(stored(&m.delivery)),
            None => break,
        }
    }
    // Unacknowledged, everything read goes back where it was.
    let _ = channel.close(200, "listed".into()).await;
    Ok(out)
}

/// The properties of a replayed copy: the original ones without Basidia's bookkeeping.
fn replay_properties(props: &BasicProperties) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(headers) = props.headers() {
        for (k, v) in headers {
            if !k.as_str().starts_with(wire::OWN_HEADER_PREFIX) {
                table.insert(k.clone(), v.clone());
            }
        }
    }
    props.clone().with_headers(table)
}

pub(crate) async fn replay(live: &Live, which: Replay<'_>) -> Result<usize, BrokerError> {
    let channel = open_publish(&live.connection).await?;
    let mut replayed = 0;
    let mut left = depth(&channel).await?;
    while left > 0 {
        left -= 1;
        let Some(got) = channel
            .basic_get(DEAD_LETTER_QUEUE.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(backend)?
        else {
            break;
        };
        let d = got.delivery;
        let table = d.properties.headers().as_ref();
        let id = wire::str_header(table, wire::DEAD_LETTER_ID_HEADER);
        if let Replay::One(wanted) = which {
            if id.as_deref() != Some(wanted) {
                continue;
            }
        }
        let Some(queue) = wire::str_header(table, wire::QUEUE_HEADER) else {
            tracing::warn!(
                ?id,
                "a dead letter without its source queue stays where it is"
            );
            continue;
        };
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &d.data,
                replay_properties(&d.properties),
            )
            .await
            .map_err(lost)?
            .await
            .map_err(lost)?;
        if confirm.is_nack() {
            return Err(backend_msg(format!(
                "the broker refused the replay to {queue:?}"
            )));
        }
        d.ack(BasicAckOptions::default()).await.map_err(lost)?;
        replayed += 1;
        if matches!(which, Replay::One(_)) {
            break;
        }
    }
    let _ = channel.close(200, "replayed".into()).await;
    Ok(replayed)
}

/// Declares the dead-letter queue with its limits (the oldest dead letters go first once one is
/// reached). A queue declared earlier with other limits (or none) cannot take new ones by
/// declaration; it is used as it is, with a warning that an operator policy can set them.
pub(crate) async fn declare_dead_letter_queue(
    connection: &Connection,
    opts: &AmqpOptions,
) -> Result<(), BrokerError> {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(opts.dead_letter_max_count),
    );
    args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(opts.dead_letter_max_bytes),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("drop-head")),
    );
    let args = owned_queue_args(opts, args);
    // On a channel of its own: a refused declaration closes the channel it was made on.
    let channel = connection.create_channel().await.map_err(lost)?;
    let declared = channel
        .queue_declare(
            DEAD_LETTER_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await;
    match declared {
        Ok(_) => {
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                queue = DEAD_LETTER_QUEUE,
                "the dead-letter queue exists with other limits than configured ({e}); keeping it as it is: delete it to have it declared again, or set its limits with a policy"
            );
            let channel = connection.create_channel().await.map_err(lost)?;
            channel
                .queue_declare(
                    DEAD_LETTER_QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(backend)?;
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
    }
}
