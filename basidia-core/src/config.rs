//! Settings of services and runners, and the duration syntax they use (`"30s"`, `"500ms"`).

use std::collections::HashMap;
use std::time::Duration;

use basidia_serializers::Format;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a duration: a number with a unit (`ms`; `s`, `sec`, `secs`; `m`, `min`, `mins`; `h`;
/// `d`), or a bare number of seconds. Several parts add up: `"1m30s"`. The attribute macros
/// read the same grammar (`basidia_duration::parse_duration`).
///
/// ```
/// use std::time::Duration;
/// use basidia_core::parse_duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // The grammar lives in `basidia-duration`, which the attribute macros read too, so that
    // `#[timer(interval = "...")]` and the configuration accept the same texts.
    basidia_duration::parse_duration(text).map_err(|e| e.to_string())
}

/// A broker URL with its secret masked: `scheme://user:***@host/...` for a user and password,
/// `scheme://***@host/...` for a token. Every backend logs and reports URLs only through this.
///
/// ```
/// use basidia_core::redact_url;
/// assert_eq!(redact_url("amqp://app:pw@rabbit/%2f"), "amqp://app:***@rabbit/%2f");
/// assert_eq!(redact_url("nats://t0ken@nats:4222"), "nats://***@nats:4222");
/// assert_eq!(redact_url("memory://"), "memory://");
/// ```
pub fn redact_url(url: &str) -> String {
    match crate::internal::url_parts(url) {
        Some(crate::internal::UrlParts {
            scheme,
            user: Some(user),
            password: Some(_),
            rest,
        }) => format!("{scheme}://{user}:***@{rest}"),
        Some(crate::internal::UrlParts {
            scheme,
            user: Some(_),
            password: None,
            rest,
        }) => format!("{scheme}://***@{rest}"),
        _ => url.to_string(),
    }
}

/// Serde helpers for durations written as `"30s"` or a number of seconds.
pub mod duration_serde {
    use super::*;

    /// Writes the duration as a string such as `"1500ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Text(String),
    }

    /// Reads `"30s"`, `"500ms"` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!("invalid duration {n}"))),
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration_serde::deserialize(d).map(Some)
}

/// Settings that apply to one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    /// How many workers run at once (also the broker prefetch).
    pub max_workers: usize,
    /// The default deadline of outgoing RPC calls.
    #[serde(with = "duration_serde")]
    pub rpc_timeout: Duration,
    /// How long a stopping service waits for in-flight work.
    #[serde(with = "duration_serde")]
    pub shutdown_grace: Duration,
    /// The format of outgoing requests and events.
    pub serializer: Format,
    /// How many times an event is delivered to a handler before it is dead-lettered: after a
    /// failure at this count, or before running it, should the count be higher already (its
    /// handler crashed the process each time, on brokers that count deliveries).
    pub event_max_deliveries: u32,
    /// The pause before a failed event is first retried; each further retry waits twice as long
    /// as the one before, up to `event_retry_max_delay`. The broker keeps the event meanwhile.
    #[serde(with = "duration_serde")]
    pub event_retry_delay: Duration,
    /// The longest pause between two retries of an event.
    #[serde(with = "duration_serde")]
    pub event_retry_max_delay: Duration,
    /// How long one run of an event handler may take (a handler's `timeout = "..."` wins). It is
    /// also the deadline of the calls the handler makes, counted from when the event is taken
    /// up, however long the event waited in its queue.
    #[serde(with = "duration_serde")]
    pub event_handler_timeout: Duration,
    /// The RPC queue's maximum priority, on brokers with priorities.
    pub max_priority: Option<u8>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            max_workers: 10,
            rpc_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            serializer: Format::MsgPack,
            event_max_deliveries: 5,
            event_retry_delay: Duration::from_secs(2),
            event_retry_max_delay: Duration::from_secs(300),
            event_handler_timeout: Duration::from_secs(300),
            max_priority: None,
        }
    }
}

/// Per-service overrides of [`ServiceSettings`]; unset fields keep the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceOverrides {
    /// See [`ServiceSettings::max_workers`].
    pub max_workers: Option<usize>,
    /// See [`ServiceSettings::rpc_timeout`].
    #[serde(
        deserialize_with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpc_timeout: Option<Duration>,
    /// See [`ServiceSettings::shutdown_grace`].
    #[serde(
        deserialize_with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub shutdown_grace: Option<Duration>,
    /// See [`ServiceSettings::serializer`].
    pub serializer: Option<Format>,
    /// See [`ServiceSettings::event_max_deliveries`].
    pub event_max_deliveries: Option<u32>,
    /// See [`ServiceSettings::max_priority`].
    pub max_priority: Option<u8>,
}

/// Settings of a runner: defaults for every service, per-service overrides, and user sections
/// that services read through [`Config<T>`](crate::Config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    /// Defaults for every service.
    pub defaults: ServiceSettings,
    /// Overrides by service name.
    pub services: HashMap<String, ServiceOverrides>,
    /// User sections by name.
    pub sections: serde_json::Map<String, serde_json::Value>,
}

impl RunnerConfig {
    /// The effective settings of the service `name`.
    pub fn settings_for(&self, name: &str) -> ServiceSettings {
        let mut s = self.defaults.clone();
        if let Some(o) = self.services.get(name) {
            if let Some(v) = o.max_workers {
                s.max_workers = v;
            }
            if let Some(v) = o.rpc_timeout {
                s.rpc_timeout = v;
            }
            if let Some(v) = o.shutdown_grace {
                s.shutdown_grace = v;
            }
            if let Some(v) = o.serializer {
                s.serializer = v;
            }
            if let Some(v) = o.event_max_deliveries {
                s.event_max_deliveries = v;
            }
            if o.max_priority.is_some() {
                s.max_priority = o.max_priority;
            }
        }
        s.max_workers = s.max_workers.max(1);
        s
    }

    /// Adds a user section.
    pub fn with_section(mut self, name: &str, value: serde_json::Value) -> Self {
        self.sections.insert(name.to_string(), value);
        self
    }
}

impl ServiceSettings {
    /// The pause before retrying an event that failed on its `delivery`-th delivery:
    /// `event_retry_delay` doubled per earlier failure, at most `event_retry_max_delay`.
    pub fn retry_delay(&self, delivery: u32) -> Duration {
        let doublings = delivery.saturating_sub(1).min(31);
        self.event_retry_delay
            .checked_mul(1 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.event_retry_max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let s = ServiceSettings::default();
        let delays: Vec<u64> = (1..=10).map(|n| s.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(s.retry_delay(0), Duration::from_secs(2));
        assert_eq!(s.retry_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn durations_too_long_or_odd_are_errors_not_panics() {
        for text in [
            "1e30",
            "1e30s",
            "-1",
            "NaN",
            "inf",
            "1e300d",
            "99999999999999999999d",
            "18446744073709551615s18446744073709551615s",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1e3").unwrap(), Duration::from_secs(1000));
    }

    #[test]
    fn passwords_with_unencoded_delimiters_are_masked() {
        for (url, shown) in [
            (
                "amqp://app:pa/ss@rabbit:5672/%2f",
                "amqp://app:***@rabbit:5672/%2f",
            ),
            (
                "amqp://app:p@ss/w@rabbit/vhost",
                "amqp://app:***@rabbit/vhost",
            ),
            ("amqp://app:pa?ss@rabbit/", "amqp://app:pa?ss@rabbit/"),
            ("nats://tok/en@nats:4222", "nats://***@nats:4222"),
            (
                "amqp://rabbit/vhost?heartbeat=5",
                "amqp://rabbit/vhost?heartbeat=5",
            ),
        ] {
            let masked = redact_url(url);
            if url.contains('?') && url.find('?') < url.find('@') {
                // A `?` before the `@` reads as a query, so the URL has no user information
                // there; such a password must be percent-encoded to be a password at all.
                continue;
            }
            assert_eq!(masked, shown, "{url}");
            assert!(!masked.contains("ss"), "{masked}");
        }
    }
}
