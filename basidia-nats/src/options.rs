//! The options of the NATS backend, and what a URL says: servers, credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::ServerAddr;
use basidia_core::internal::UrlParts;
use basidia_core::{redact_url, BrokerError};

/// Options of the NATS backend.
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsOptions {
    /// `nats://[user:password@|token@]host:4222` or `tls://...`.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed) for decentralised authentication.
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for `tls://`.
    pub tls_ca_file: Option<PathBuf>,
    /// How long the server waits for word from a handler before it redelivers the event; while a
    /// handler runs, Basidia reports progress every third of it.
    pub ack_wait: Duration,
    /// How long event streams keep messages; an event no handler consumed within it is gone.
    pub max_event_age: Duration,
    /// How many messages the client queues for its connection before publishers wait for room
    /// (2,048 by default).
    pub command_queue: usize,
    /// How many bytes of messages one subscription (a service's requests, a broadcast handler's
    /// events) may hold before the service takes them, 1 GiB by default. The client bounds its
    /// buffers by message count, so this is turned into a count of messages of the server's
    /// default `max_payload` (1 MiB); raise it with a larger `max_payload`. Messages beyond it
    /// are dropped by the client and reported as a slow consumer; their callers' deadlines
    /// report them.
    pub subscription_buffer_bytes: usize,
    /// The most dead letters the dead-letter stream keeps; past it the oldest go first.
    pub dead_letter_max_count: i64,
    /// The most bytes the dead-letter stream keeps; past it the oldest go first.
    pub dead_letter_max_bytes: i64,
    /// How long a dead letter is kept.
    pub dead_letter_max_age: Duration,
    /// The longest an event publish waits for JetStream's acknowledgement when the message has
    /// no earlier deadline (10 s by default).
    pub publish_timeout: Duration,
    /// How many servers of a cluster keep a copy of each stream Basidia creates (events, dead
    /// letters). 1 by default; 3 in a three-node cluster, so that a node that goes loses no
    /// acknowledged event.
    pub stream_replicas: usize,
}

/// The `max_payload` the server has by default, which sizes subscription buffers.
pub(crate) const ASSUMED_MAX_PAYLOAD: usize = 1024 * 1024;

impl NatsOptions {
    /// Options for `url` with defaults.
    pub fn new(url: &str) -> Self {
        NatsOptions {
            url: url.to_string(),
            credentials_file: None,
            tls_ca_file: None,
            ack_wait: Duration::from_secs(10),
            max_event_age: Duration::from_secs(7 * 24 * 3600),
            command_queue: 2048,
            subscription_buffer_bytes: 1024 * 1024 * 1024,
            dead_letter_max_count: 100_000,
            dead_letter_max_bytes: 256 * 1024 * 1024,
            dead_letter_max_age: Duration::from_secs(14 * 24 * 3600),
            stream_replicas: 1,
            publish_timeout: Duration::from_secs(10),
        }
    }

    /// Sets [`credentials_file`](Self::credentials_file).
    #[must_use]
    pub fn with_credentials_file(
        mut self,
        credentials_file: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.credentials_file = Some(credentials_file.into());
        self
    }

    /// Sets [`tls_ca_file`](Self::tls_ca_file).
    #[must_use]
    pub fn with_tls_ca_file(mut self, tls_ca_file: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(tls_ca_file.into());
        self
    }

    /// Sets [`ack_wait`](Self::ack_wait).
    #[must_use]
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Sets [`max_event_age`](Self::max_event_age).
    #[must_use]
    pub fn with_max_event_age(mut self, max_event_age: Duration) -> Self {
        self.max_event_age = max_event_age;
        self
    }

    /// Sets [`command_queue`](Self::command_queue).
    #[must_use]
    pub fn with_command_queue(mut self, command_queue: usize) -> Self {
        self.command_queue = command_queue;
        self
    }

    /// Sets [`subscription_buffer_bytes`](Self::subscription_buffer_bytes).
    #[must_use]
    pub fn with_subscription_buffer_bytes(mut self, subscription_buffer_bytes: usize) -> Self {
        self.subscription_buffer_bytes = subscription_buffer_bytes;
        self
    }

    /// Sets [`dead_letter_max_count`](Self::dead_letter_max_count).
    #[must_use]
    pub fn with_dead_letter_max_count(mut self, dead_letter_max_count: i64) -> Self {
        self.dead_letter_max_count = dead_letter_max_count;
        self
    }

    /// Sets [`dead_letter_max_bytes`](Self::dead_letter_max_bytes).
    #[must_use]
    pub fn with_dead_letter_max_bytes(mut self, dead_letter_max_bytes: i64) -> Self {
        self.dead_letter_max_bytes = dead_letter_max_bytes;
        self
    }

    /// Sets [`dead_letter_max_age`](Self::dead_letter_max_age).
    #[must_use]
    pub fn with_dead_letter_max_age(mut self, dead_letter_max_age: Duration) -> Self {
        self.dead_letter_max_age = dead_letter_max_age;
        self
    }

    /// Sets [`publish_timeout`](Self::publish_timeout).
    #[must_use]
    pub fn with_publish_timeout(mut self, publish_timeout: Duration) -> Self {
        self.publish_timeout = publish_timeout;
        self
    }

    /// Sets [`stream_replicas`](Self::stream_replicas).
    #[must_use]
    pub fn with_stream_replicas(mut self, stream_replicas: usize) -> Self {
        self.stream_replicas = stream_replicas;
        self
    }
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &redact_url(&self.url))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

pub(crate) enum UrlAuth {
    None,
    UserPassword(String, String),
    Token(String),
}

/// Splits `scheme://user:password@host` or `scheme://token@host` into the address without
/// credentials and the credentials.
pub(crate) fn split_credentials(url: &str) -> (String, UrlAuth) {
    match basidia_core::internal::url_parts(url) {
        Some(UrlParts {
            scheme,
            user: Some(user),
            password,
            rest,
        }) => {
            let auth = match password {
                Some(password) => UrlAuth::UserPassword(user.to_string(), password.to_string()),
                None => UrlAuth::Token(user.to_string()),
            };
            (format!("{scheme}://{rest}"), auth)
        }
        _ => (url.to_string(), UrlAuth::None),
    }
}

/// The servers of a URL that may name several, `nats://a:4222,nats://b:4222` (a bare
/// `host:port` after the first takes its scheme), and the credentials the first of them that
/// has any carries. The client also learns the other servers a cluster announces.
pub(crate) fn server_list(url: &str) -> Result<(Vec<ServerAddr>, UrlAuth), BrokerError> {
    let scheme = url.split_once("://").map_or("nats", |(s, _)| s);
    let mut servers = Vec::new();
    let mut auth = UrlAuth::None;
    for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let part = if part.contains("://") {
            part.to_string()
        } else {
            format!("{scheme}://{part}")
        };
        let (address, part_auth) = split_credentials(&part);
        if matches!(auth, UrlAuth::None) {
            auth = part_auth;
        }
        let addr: ServerAddr = address
            .parse()
            .map_err(|e| BrokerError::InvalidUrl(format!("{}: {e}", redact_url(&part))))?;
        servers.push(addr);
    }
    if servers.is_empty() {
        return Err(BrokerError::InvalidUrl(format!("{url:?} names no server")));
    }
    Ok((servers, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_url_and_never_show() {
        let (servers, auth) = server_list("nats://app:pw@a:4222, b:4223,nats://c:4224").unwrap();
        assert_eq!(servers.len(), 3);
        assert!(matches!(auth, UrlAuth::UserPassword(ref u, ref p) if u == "app" && p == "pw"));
        assert!(server_list(" , ").is_err());
        let (addr, auth) = split_credentials("nats://app:pw@host:4222");
        assert_eq!(addr, "nats://host:4222");
        assert!(matches!(auth, UrlAuth::UserPassword(u, p) if u == "app" && p == "pw"));
        let (addr, auth) = split_credentials("tls://tok@host");
        assert_eq!(addr, "tls://host");
        assert!(matches!(auth, UrlAuth::Token(t) if t == "tok"));
        assert!(matches!(split_credentials("nats://host").1, UrlAuth::None));
        // A password with an unencoded `/` stays whole (it used to be cut at the `/`).
        let (addr, auth) = split_credentials("nats://app:p/w@host:4222");
        assert_eq!(addr, "nats://host:4222");
        assert!(matches!(auth, UrlAuth::UserPassword(u, p) if u == "app" && p == "p/w"));
        assert_eq!(redact_url("nats://app:pw@host"), "nats://app:***@host");
        assert_eq!(redact_url("nats://tok@host"), "nats://***@host");
        assert!(!format!("{:?}", NatsOptions::new("nats://a:secret@h")).contains("secret"));
    }
}
