//! `basidia dead-letters list` and `replay`: what the broker's dead-letter store holds, shown
//! so that an operator can tell what failed and why, and put back once the cause is fixed.

use std::fmt::Write as _;
use std::time::Duration;

use basidia::{Format, Replay, SharedBroker, StoredDeadLetter};

use basidia_shell::printable;

/// How much of a payload a listing shows.
const PREVIEW_CHARS: usize = 160;

/// The dead letters, one block each: id, queue, method or event type, deliveries and age, then
/// the reason and a preview of the payload with secret fields masked.
pub async fn list(broker: &SharedBroker, limit: usize) -> Result<String, basidia::BrokerError> {
    let letters = broker.dead_letters(limit).await?;
    if letters.is_empty() {
        return Ok("no dead letters".into());
    }
    let mut out = String::new();
    for d in &letters {
        let _ = writeln!(
            out,
            "{}  {}  {}  deliveries={}  age={}",
            d.id,
            d.queue,
            d.routing_key,
            d.delivery_count,
            d.age.map_or_else(|| "?".to_string(), human_age)
        );
        let _ = writeln!(out, "  reason:  {}", d.reason);
        let _ = writeln!(out, "  payload: {}", preview(d));
    }
    let _ = write!(out, "{} dead letter(s)", letters.len());
    Ok(printable(&out))
}

/// Replays the dead letter `id`, or all of them; how many went back.
pub async fn replay(
    broker: &SharedBroker,
    id: Option<&str>,
) -> Result<usize, basidia::BrokerError> {
    let which = id.map_or(Replay::All, Replay::One);
    broker.replay_dead_letters(which).await
}

fn human_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The payload as JSON (decoded from its content type), secret fields masked, cut short.
fn preview(d: &StoredDeadLetter) -> String {
    let m = &d.message;
    let decoded = m
        .content_type
        .as_deref()
        .and_then(Format::from_content_type)
        .and_then(|f| f.decode::<basidia::Value>(&m.body).ok())
        .map(|v| basidia_serializers::value_to_json(&v));
    let text = match decoded {
        Some(mut json) => {
            mask_json(&mut json);
            json.to_string()
        }
        None => format!(
            "<{} bytes, {}>",
            m.body.len(),
            m.content_type.as_deref().unwrap_or("no content type")
        ),
    };
    if text.chars().count() > PREVIEW_CHARS {
        let cut: String = text.chars().take(PREVIEW_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Masks the values of fields whose names mark them as secret, at any depth.
fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if basidia_core::message::is_secret_key(k) {
                    *v = serde_json::Value::String(basidia_core::message::MASKED.into());
                } else {
                    mask_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_masked_at_any_depth() {
        let mut v = serde_json::json!({
            "user": {"name": "Ann", "password": "hunter2"},
            "items": [{"api_key": "k1"}],
            "token": "t",
        });
        mask_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("k1"), "{text}");
        assert!(text.contains("Ann"), "{text}");
    }

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(human_age(Duration::from_secs(5)), "5s");
        assert_eq!(human_age(Duration::from_secs(125)), "2m5s");
        assert_eq!(human_age(Duration::from_secs(7260)), "2h1m");
        assert_eq!(human_age(Duration::from_secs(90_000)), "1d1h");
    }
}
