//! The NATS backend (async-nats), Basidia's own mapping onto NATS, written down in
//! `docs/protocol-nats.md`:
//! - RPC: request/reply on `basidia.rpc.<service>.<method>`, instances of a service share a queue
//!   group `basidia.rpc.<service>`; no running instance means the server's no-responders status,
//!   which fails the call at once with `UnknownService`.
//! - Events: JetStream. One stream per source service, `BASIDIA_EVENTS_<source>` over
//!   `basidia.events.<source>.>` (limits retention: messages are kept up to `max_event_age`);
//!   service-pool and singleton handlers are durable pull consumers that start at their creation
//!   and are acked after the handler; broadcast handlers are plain subscriptions (at-most-once).
//! - Dead letters: the stream `BASIDIA_DEAD_LETTERS` over `basidia.deadletter.>`.
//! - The NATS services API (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) for every served service.

mod calls;
mod dead_letters;
mod outbox;
mod srv;

use dead_letters::{publish_dead_letter, Origin};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, AckKind};
use async_nats::{HeaderMap, ServerAddr};
use async_trait::async_trait;
use basidia_core::{
    redact_url, Broker, BrokerError, ConsumeOptions, ContextData, Delivery, EventBinding,
    HandlerType, Headers, Message, Settle, Subscription,
};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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
const CONTEXT_NAME: async_nats::HeaderName = async_nats::HeaderName::from_static(CONTEXT_HEADER);
const DEADLINE_NAME: async_nats::HeaderName = async_nats::HeaderName::from_static(DEADLINE_HEADER);
const CONTENT_TYPE_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(CONTENT_TYPE_HEADER);
const ERROR_NAME: async_nats::HeaderName = async_nats::HeaderName::from_static(ERROR_HEADER);
const ERROR_CODE_NAME: async_nats::HeaderName =
    async_nats::HeaderName::from_static(ERROR_CODE_HEADER);

/// A value alone on its cache lines (two, which processors fetch in pairs), so that one core
/// writing it does not take its neighbours away from the other core. For the counters and locks
/// every call and request writes.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

use basidia_core::internal::lock;

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
fn fits_subject(name: &str) -> bool {
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

/// Options of the NATS backend.
#[derive(Clone)]
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
const ASSUMED_MAX_PAYLOAD: usize = 1024 * 1024;

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

enum UrlAuth {
    None,
    UserPassword(String, String),
    Token(String),
}

/// Splits `scheme://user:password@host` or `scheme://token@host` into the address without
/// credentials and the credentials.
fn split_credentials(url: &str) -> (String, UrlAuth) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), UrlAuth::None);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        None => (url.to_string(), UrlAuth::None),
        Some((userinfo, host)) => {
            let auth = match userinfo.split_once(':') {
                Some((user, password)) => {
                    UrlAuth::UserPassword(user.to_string(), password.to_string())
                }
                None => UrlAuth::Token(userinfo.to_string()),
            };
            (format!("{scheme}://{host}{path}"), auth)
        }
    }
}

/// The servers of a URL that may name several, `nats://a:4222,nats://b:4222` (a bare
/// `host:port` after the first takes its scheme), and the credentials the first of them that
/// has any carries. The client also learns the other servers a cluster announces.
fn server_list(url: &str) -> Result<(Vec<ServerAddr>, UrlAuth), BrokerError> {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkState {
    connected: bool,
    generation: u64,
}

impl LinkState {
    /// The state in one word (`generation << 1 | connected`), so that calls can read it with a
    /// plain load rather than through the watch channel's lock.
    fn packed(self) -> u64 {
        (self.generation << 1) | u64::from(self.connected)
    }

    fn unpacked(word: u64) -> Self {
        LinkState {
            connected: word & 1 == 1,
            generation: word >> 1,
        }
    }
}

struct Inner {
    options: NatsOptions,
    client: async_nats::Client,
    /// The server's `max_payload`, read at connect (reading it clones the whole server info).
    max_payload: std::sync::atomic::AtomicUsize,
    js: jetstream::Context,
    link: watch::Sender<LinkState>,
    /// The current link state, packed: what every call and reply checks.
    link_now: Arc<AtomicU64>,
    streams: Mutex<Streams>,
    /// Where RPC requests and replies queue to be published in batches.
    outbox: outbox::Outbox,
    /// The calls made on this connection that wait for replies.
    calls: calls::Calls,
    closed: AtomicBool,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stops the tasks that serve this connection (the reply dispatcher among them).
        self.shutdown.cancel();
    }
}

/// A connection to NATS. Cloning shares it.
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

use basidia_core::internal::{backend, lost};

/// The headers that carry a message's metadata. msgpack, the default, needs no `Content-Type`
/// header, and a message without metadata gets none at all (a plain `PUB` on the wire).
fn to_nats_headers(message: &Message) -> HeaderMap {
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
const DEFAULT_CONTENT_TYPE: &str = "application/x-msgpack";

/// The headers Basidia reads, found in one pass over the map (rather than a hashed lookup for
/// each, most of which find nothing).
#[derive(Default)]
struct Meta<'a> {
    context: Option<&'a str>,
    deadline: Option<&'a str>,
    content_type: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> Meta<'a> {
    fn read(headers: Option<&'a HeaderMap>) -> Self {
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
    fn context(&self) -> (Headers, Option<i64>) {
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
fn context_of(headers: Option<&HeaderMap>) -> (Headers, Option<i64>) {
    Meta::read(headers).context()
}

/// The message Basidia reads from `m`, whose payload it takes (a clone would cost the buffer's
/// reference count a round trip).
fn message_of(m: &mut async_nats::Message, delivered: u32) -> Message {
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

impl NatsBroker {
    /// Connects to `url` with default options.
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        Self::connect_with(NatsOptions::new(url)).await
    }

    /// Connects with options. Fails if the first connection cannot be made; later drops are
    /// repaired by the client, which resubscribes; JetStream consumers resume.
    pub async fn connect_with(options: NatsOptions) -> Result<Self, BrokerError> {
        let (addr, auth) = server_list(&options.url)?;
        let (link, _) = watch::channel(LinkState {
            connected: true,
            generation: 0,
        });
        let link_cb = link.clone();
        let link_now = Arc::new(AtomicU64::new(link.borrow().packed()));
        let link_now_cb = Arc::clone(&link_now);
        let pending = Arc::new(calls::Pending::default());
        let pending_cb = Arc::clone(&pending);
        let mut connect = async_nats::ConnectOptions::new()
            .name("basidia")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(None)
            .client_capacity(options.command_queue.max(1))
            .subscription_capacity(
                (options.subscription_buffer_bytes / ASSUMED_MAX_PAYLOAD).max(64),
            )
            .max_reconnects(None::<usize>)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
            })
            .event_callback(move |event| {
                let link = link_cb.clone();
                let link_now = Arc::clone(&link_now_cb);
                let pending = Arc::clone(&pending_cb);
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            link.send_modify(|s| {
                                s.connected = false;
                                s.generation += 1;
                                link_now.store(s.packed(), Ordering::SeqCst);
                            });
                            // Replies to requests sent before the drop will not come; a call
                            // registered after this sees the new generation and fails itself.
                            pending.fail_all(|| {
                                lost("the connection dropped while the request was in flight")
                            });
                        }
                        async_nats::Event::Connected => link.send_modify(|s| {
                            s.connected = true;
                            link_now.store(s.packed(), Ordering::SeqCst);
                        }),
                        async_nats::Event::SlowConsumer(sid) => tracing::warn!(
                            "NATS subscription {sid} fell behind; the client dropped messages"
                        ),
                        other => tracing::debug!("NATS event: {other}"),
                    }
                }
            });
        match auth {
            UrlAuth::None => {}
            UrlAuth::UserPassword(user, password) => {
                connect = connect.user_and_password(user, password)
            }
            UrlAuth::Token(token) => connect = connect.token(token),
        }
        if let Some(creds) = &options.credentials_file {
            connect = connect.credentials_file(creds).await.map_err(|e| {
                BrokerError::InvalidUrl(format!("cannot read credentials {}: {e}", creds.display()))
            })?;
        }
        if let Some(ca) = &options.tls_ca_file {
            if !ca.exists() {
                return Err(BrokerError::InvalidUrl(format!(
                    "CA file {} not found",
                    ca.display()
                )));
            }
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        if options.url.starts_with("tls://") {
            connect = connect.require_tls(true);
        }
        let client = connect.connect(addr).await.map_err(|e| {
            lost(format!(
                "cannot connect to {}: {e}",
                redact_url(&options.url)
            ))
        })?;
        let js = jetstream::new(client.clone());
        let max_payload = std::sync::atomic::AtomicUsize::new(client.server_info().max_payload);
        let shutdown = CancellationToken::new();
        let calls = calls::Calls::start(&client, pending, shutdown.clone()).await?;
        let inner = Arc::new(Inner {
            options,
            max_payload,
            outbox: outbox::Outbox::new(&client),
            calls,
            client,
            js,
            link,
            link_now,
            streams: Mutex::new(Streams::default()),
            closed: AtomicBool::new(false),
            shutdown,
        });
        let broker = NatsBroker { inner };
        // RPC needs no JetStream; events and dead letters do, and fail clearly without it.
        if let Err(e) = broker.ensure_dead_letter_stream().await {
            tracing::warn!("{e}: events and dead letters need JetStream (nats-server -js)");
        }
        Ok(broker)
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.link_state().connected
    }

    /// Waits until the client is connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.link.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.connected))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The underlying client (for tests and tooling).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    fn link_state(&self) -> LinkState {
        LinkState::unpacked(self.inner.link_now.load(Ordering::SeqCst))
    }

    fn check(&self) -> Result<LinkState, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        let state = self.link_state();
        if !state.connected {
            return Err(lost("not connected to NATS; reconnecting"));
        }
        Ok(state)
    }

    /// Runs `work`, but fails it with [`BrokerError::ConnectionLost`] as soon as the connection
    /// seen as `state` drops (or the handle closes) instead of waiting for an answer that the
    /// server will never send.
    async fn unless_dropped<T>(
        &self,
        state: LinkState,
        work: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let mut link = self.inner.link.subscribe();
        let dropped = async move {
            let _ = link
                .wait_for(|s| s.generation != state.generation || !s.connected)
                .await;
        };
        tokio::select! {
            r = work => r,
            () = dropped => Err(lost("the connection dropped while the request was in flight")),
            () = self.inner.shutdown.cancelled() => Err(lost("the broker handle was closed")),
        }
    }

    async fn ensure_stream(
        &self,
        name: &str,
        subjects: &str,
        retention: jetstream::stream::RetentionPolicy,
    ) -> Result<(), BrokerError> {
        let settle = {
            let streams = lock(&self.inner.streams);
            if streams.known.contains(name) {
                return Ok(());
            }
            streams
                .lost
                .get(name)
                .map(|at| STREAM_SETTLE.saturating_sub(at.elapsed()))
        };
        if let Some(wait) = settle.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        self.inner
            .js
            .get_or_create_stream(jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![subjects.to_string()],
                retention,
                storage: jetstream::stream::StorageType::File,
                max_age: self.inner.options.max_event_age,
                num_replicas: self.inner.options.stream_replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format!("cannot create stream {name}: {e}")))?;
        let mut streams = lock(&self.inner.streams);
        streams.lost.remove(name);
        streams.known.insert(name.to_string());
        Ok(())
    }

    /// Forgets that the stream `name` exists, so the next use looks for it (and creates it),
    /// though not at once: see [`STREAM_SETTLE`].
    fn stream_lost(&self, name: &str) {
        let mut streams = lock(&self.inner.streams);
        streams.known.remove(name);
        streams.lost.insert(name.to_string(), Instant::now());
    }

    /// The dead-letter stream, with its limits: created, or brought to the configured limits if
    /// it exists (the oldest dead letters are discarded first once a limit is reached).
    async fn ensure_dead_letter_stream(&self) -> Result<(), BrokerError> {
        let o = &self.inner.options;
        self.inner
            .js
            .create_or_update_stream(jetstream::stream::Config {
                name: DEAD_LETTER_STREAM.to_string(),
                subjects: vec!["basidia.deadletter.>".to_string()],
                retention: jetstream::stream::RetentionPolicy::Limits,
                storage: jetstream::stream::StorageType::File,
                discard: jetstream::stream::DiscardPolicy::Old,
                max_messages: o.dead_letter_max_count,
                max_bytes: o.dead_letter_max_bytes,
                max_age: o.dead_letter_max_age,
                num_replicas: o.stream_replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format!("cannot create stream {DEAD_LETTER_STREAM}: {e}")))?;
        lock(&self.inner.streams)
            .known
            .insert(DEAD_LETTER_STREAM.to_string());
        Ok(())
    }

    async fn ensure_event_stream(&self, source: &str) -> Result<(), BrokerError> {
        self.ensure_stream(
            &event_stream(source),
            &format!("basidia.events.{source}.>"),
            jetstream::stream::RetentionPolicy::Limits,
        )
        .await
    }

    /// The durable pull consumer `name` of the events on `subject`, created (with the source's
    /// stream, if that is missing) or found. `resume` says where a consumer created here starts,
    /// and learns which stream it was created on.
    async fn event_consumer(
        &self,
        source: &str,
        name: &str,
        subject: &str,
        prefetch: u16,
        resume: &mut Resume,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, BrokerError> {
        // A JetStream API request sent while the client switches servers can go unanswered for
        // good; the caller tries again.
        tokio::time::timeout(
            JS_API_LIMIT,
            self.event_consumer_unbounded(source, name, subject, prefetch, resume),
        )
        .await
        .map_err(|_| BrokerError::Timeout(JS_API_LIMIT))?
    }

    async fn event_consumer_unbounded(
        &self,
        source: &str,
        name: &str,
        subject: &str,
        prefetch: u16,
        resume: &mut Resume,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, BrokerError> {
        self.ensure_event_stream(source).await?;
        let stream = self
            .inner
            .js
            .get_stream(event_stream(source))
            .await
            .map_err(backend)?;
        let info = stream.cached_info();
        let deliver_policy = resume.policy(info.created);
        let consumer = stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.to_string()),
                    filter_subject: subject.to_string(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.inner.options.ack_wait,
                    max_ack_pending: i64::from(prefetch),
                    max_deliver: -1,
                    deliver_policy,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| backend(format!("cannot create consumer {name}: {e}")))?;
        let found = consumer.cached_info();
        // A durable found with a backlog resumes above what it has had acknowledged; one created
        // just now starts after the stream's last event.
        let start = if found.delivered.stream_sequence > 0 {
            found.ack_floor.stream_sequence
        } else {
            info.state.last_sequence
        };
        tracing::debug!(
            consumer = name,
            ?deliver_policy,
            start,
            "event consumer ready"
        );
        resume.created_on(info.created, start);
        Ok(consumer)
    }

    /// Publishes an event and waits for JetStream's acknowledgement, with no time bound of its own.
    async fn publish_event_unbounded(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        let state = self.check()?;
        self.ensure_event_stream(source).await?;
        // An acknowledgement lost with the connection would otherwise be waited for until the
        // JetStream timeout: fail at once, the publisher may retry (delivery is at least once).
        let published = self
            .unless_dropped(state, async {
                let ack = self
                    .inner
                    .js
                    .publish_with_headers(
                        event_subject(source, event_type),
                        to_nats_headers(&message),
                        message.body,
                    )
                    .await
                    .map_err(lost)?;
                ack.await.map_err(lost)?;
                Ok(())
            })
            .await;
        if published.is_err() {
            // Perhaps an operator deleted the stream: look for it (and create it) next time.
            self.stream_lost(&event_stream(source));
        }
        published
    }

    fn guard(&self, cancel: CancellationToken) -> Box<dyn Send + Sync> {
        Box::new(CancelOnDrop(cancel))
    }

    async fn serve_srv_api(
        &self,
        instance: Arc<srv::SrvInstance>,
        cancel: CancellationToken,
    ) -> Result<(), BrokerError> {
        let mut subs = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{}", instance.name),
                format!("$SRV.{verb}.{}.{}", instance.name, instance.id),
            ] {
                let sub = self
                    .inner
                    .client
                    .subscribe(subject)
                    .await
                    .map_err(backend)?;
                subs.push((verb, sub));
            }
        }
        for (verb, mut sub) in subs {
            let client = self.inner.client.clone();
            let instance = Arc::clone(&instance);
            let cancel = cancel.clone();
            tokio::spawn(async move {
                loop {
                    let msg = tokio::select! {
                        () = cancel.cancelled() => break,
                        m = sub.next() => match m { Some(m) => m, None => break },
                    };
                    if let Some(reply) = msg.reply {
                        let _ = client.publish(reply, instance.answer(verb).into()).await;
                    }
                }
                let _ = sub.unsubscribe().await;
            });
        }
        Ok(())
    }
}

/// Whether `subject` belongs to the server's own APIs (`$JS.`, `$SYS.`, `$KV.`, `$SRV.`,
/// `$O.` and whatever else the server reserves with a leading `$`).
fn is_server_api(subject: &str) -> bool {
    subject.starts_with('$')
}

/// Whether a pull error means the consumer (or its stream) no longer exists.
fn consumer_gone(e: &jetstream::consumer::pull::MessagesError) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind as K;
    matches!(
        e.kind(),
        K::ConsumerDeleted | K::MissingHeartbeat | K::NoResponders
    )
}

/// How long creating or finding a stream and a consumer may take before it is tried again.
const JS_API_LIMIT: Duration = Duration::from_secs(10);

/// The event streams a broker handle knows exist, and those it saw go missing.
#[derive(Default)]
struct Streams {
    known: HashSet<String>,
    lost: HashMap<String, Instant>,
}

/// How long after a stream was seen missing it may be created again. A consumer hears that its
/// stream was deleted while the server is still removing the stream's files; a stream created
/// under the same name in that moment loses its files to the removal (seen on nats-server 2.9:
/// every later store and read fails with "no such file or directory").
const STREAM_SETTLE: Duration = Duration::from_secs(1);

/// Where a durable event consumer picks up when it has to be created again (an operator deleted
/// it, or its whole stream). The first creation takes events from then on, as a queue bound now
/// would. A consumer lost from a stream that is still there resumes after the last event it was
/// given, so that nothing published meanwhile is missed and nothing handled runs again. A stream
/// that was deleted and created again (by a publisher, or by this loop) holds only events
/// published since, so a consumer on it starts from its beginning.
#[derive(Debug, Default)]
struct Resume {
    /// When the stream the consumer was last created on was created.
    stream_created: Option<time::OffsetDateTime>,
    /// The stream sequence of the first event not yet given to the handler.
    next: u64,
}

impl Resume {
    fn policy(&self, stream_created: time::OffsetDateTime) -> jetstream::consumer::DeliverPolicy {
        use jetstream::consumer::DeliverPolicy;
        match self.stream_created {
            None => DeliverPolicy::New,
            Some(created) if created == stream_created => DeliverPolicy::ByStartSequence {
                start_sequence: self.next.max(1),
            },
            Some(_) => DeliverPolicy::All,
        }
    }

    fn created_on(&mut self, stream_created: time::OffsetDateTime, done_up_to: u64) {
        match self.stream_created {
            Some(created) if created == stream_created => {}
            Some(_) => {
                self.stream_created = Some(stream_created);
                self.next = 1;
            }
            None => {
                self.stream_created = Some(stream_created);
                self.next = done_up_to.saturating_add(1);
            }
        }
    }

    fn given(&mut self, stream_sequence: u64) {
        self.next = self.next.max(stream_sequence.saturating_add(1));
    }
}

/// How long closing waits for queued messages to be written.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(5);

struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `stream` until `stop` is cancelled. Unlike `take_until`, which polls the cancellation before
/// every item, this polls it while the stream has nothing ready and before every 32nd item:
/// polling a token takes its lock (twice), which for every message cost more than the rest of
/// the hand-over.
pub(crate) fn until_cancelled<S>(
    mut stream: S,
    stop: CancellationToken,
) -> impl futures_util::Stream<Item = S::Item> + Send
where
    S: futures_util::Stream + Unpin + Send,
{
    const CHECK_EVERY: u32 = 32;
    let mut stopped = Box::pin(stop.cancelled_owned());
    let mut done = false;
    let mut since_check = 0u32;
    futures_util::stream::poll_fn(move |cx| {
        use std::future::Future;
        use std::task::Poll;
        if done {
            return Poll::Ready(None);
        }
        since_check += 1;
        if since_check >= CHECK_EVERY {
            since_check = 0;
            if stopped.as_mut().poll(cx).is_ready() {
                done = true;
                return Poll::Ready(None);
            }
        }
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) => {
                done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if stopped.as_mut().poll(cx).is_ready() {
                    done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    })
}

/// How a call was answered.
enum Answer {
    Reply(async_nats::Message),
    /// The server's no-responders status: no instance of the service listens.
    NoResponders,
}

const NO_RESPONDERS: async_nats::StatusCode = async_nats::StatusCode::NO_RESPONDERS;

/// Counts a call out of the outbox's in-flight figure when it ends, however it ends.
struct FinishOnDrop<'a>(&'a outbox::Outbox);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// What the deliveries of one core-NATS subscription share: one reference per delivery rather
/// than one for each part (each a count both cores write to).
struct CoreEndpoint {
    broker: NatsBroker,
    dead_letter_subject: String,
    /// The queue group (RPC) or handler queue (broadcast) it stands for, named in dead letters.
    queue: String,
    /// The service's figures for the services API; set for RPC requests, which the outbox also
    /// counts in flight until their settle is dropped.
    srv: Option<Arc<srv::SrvInstance>>,
}

/// Settles a core-NATS delivery (RPC requests, broadcast events): there is nothing to ack;
/// replies go to the request's inbox; dead letters go to the dead-letter stream.
struct CoreSettle {
    endpoint: Arc<CoreEndpoint>,
    started: Instant,
    /// Where this request counts in the services-API figures (RPC requests).
    slot: Option<srv::Slot>,
    /// The request's reply subject, kept as the client read it (no copy to publish to).
    /// Taken by the reply (a request has one answer): a clone would cost the subject's buffer a
    /// shared header of its own.
    reply_to: Mutex<Option<async_nats::Subject>>,
}

impl Drop for CoreSettle {
    fn drop(&mut self) {
        if self.endpoint.srv.is_some() {
            self.endpoint.broker.inner.outbox.finished();
        }
    }
}

#[async_trait]
impl Settle for CoreSettle {
    async fn reply(&self, _request: &Message, reply: Message) -> Result<(), BrokerError> {
        let Some(to) = lock(&self.reply_to).take() else {
            return Err(BrokerError::NoReplyTo);
        };
        if is_server_api(&to) {
            // A reply there would be a request to the server itself: `$JS.API.STREAM.PURGE.<s>`
            // purges a stream, `$JS.API.STREAM.DELETE.<s>` deletes one, in the name of this
            // service's credentials. Callers' inboxes never start with `$`.
            tracing::warn!(subject = %to, "refusing to reply to a server API subject");
            return Err(BrokerError::NoReplyTo);
        }
        let endpoint = &*self.endpoint;
        if let (Some(srv), Some(slot)) = (&endpoint.srv, &self.slot) {
            srv.record(slot, self.started.elapsed(), reply.error.as_deref());
        }
        endpoint.broker.check()?;
        let inner = &endpoint.broker.inner;
        let reply = outbox::Outgoing {
            subject: to,
            call: None,
            headers: to_nats_headers(&reply),
            body: reply.body,
        };
        outbox::send(inner, reply).await;
        Ok(())
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        Ok(())
    }

    fn acks(&self) -> bool {
        false
    }

    async fn requeue(
        self: Box<Self>,
        _message: Message,
        _delay: Duration,
    ) -> Result<(), BrokerError> {
        // Core NATS keeps no copy to redeliver; the caller's deadline covers a lost request.
        Ok(())
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let endpoint = &*self.endpoint;
        let origin = Origin {
            queue: &endpoint.queue,
            subject: None,
        };
        publish_dead_letter(
            &endpoint.broker,
            &endpoint.dead_letter_subject,
            message,
            reason,
            origin,
        )
        .await
    }

    fn abandon(self: Box<Self>, _message: Message) {}
}

/// Settles a JetStream delivery. While it is unsettled, a keep-alive tells the server the work
/// is in progress, so `ack_wait` can stay short (a delivery lost with a dead connection comes back
/// quickly) without redelivering events whose handlers simply take long.
struct JsSettle {
    broker: NatsBroker,
    acker: jetstream::message::Acker,
    dead_letter_subject: String,
    keepalive: CancellationToken,
    /// The consumer it came from, and the subject it was published on: where a replay of its
    /// dead letter goes.
    consumer: Arc<str>,
    subject: async_nats::Subject,
}

impl Drop for JsSettle {
    fn drop(&mut self) {
        self.keepalive.cancel();
    }
}

fn keep_alive(
    client: async_nats::Client,
    ack_subject: async_nats::Subject,
    ack_wait: Duration,
    stop: CancellationToken,
) {
    let period = (ack_wait / 3).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(period) => {
                    if client.publish(ack_subject.clone(), "+WPI".into()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
}

#[async_trait]
impl Settle for JsSettle {
    async fn reply(&self, _request: &Message, _reply: Message) -> Result<(), BrokerError> {
        Err(BrokerError::NoReplyTo)
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.acker.ack().await.map_err(lost)
    }

    async fn requeue(
        self: Box<Self>,
        _message: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        // The server holds a NAK'd message for its delay before redelivering it.
        let delay = (!delay.is_zero()).then_some(delay);
        self.acker.ack_with(AckKind::Nak(delay)).await.map_err(lost)
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let origin = Origin {
            queue: &self.consumer,
            subject: Some(self.subject.as_str()),
        };
        publish_dead_letter(
            &self.broker,
            &self.dead_letter_subject,
            message,
            reason,
            origin,
        )
        .await?;
        self.acker.ack_with(AckKind::Term).await.map_err(lost)
    }

    fn abandon(self: Box<Self>, _message: Message) {
        self.keepalive.cancel();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = self.acker.ack_with(AckKind::Nak(None)).await;
            });
        }
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    /// A header block costs the server and both clients a parse into a map per message, more
    /// than the rest of a small request: the deadline and context go in the envelope.
    fn metadata_in_envelope(&self) -> bool {
        true
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        let state = self.check()?;
        if !fits_subject(service) || !fits_subject(method) {
            return Err(backend(format!(
                "cannot call {service:?}.{method:?} over NATS: service and method names must be \
                 non-empty, without whitespace, `*` or `>`"
            )));
        }
        let size = request.body.len();
        let max = self.inner.max_payload.load(Ordering::Relaxed);
        if max > 0 && size > max {
            return Err(BrokerError::PayloadTooLarge { size, max });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let inner = &self.inner;
        // A responder that subscribed a moment ago may not be visible to this connection's first
        // request yet (the server answers "no responders"): ask once more after a short pause
        // before declaring the service unknown.
        let mut retried = false;
        loop {
            let mut call = inner.calls.register(deadline);
            let alone = inner.outbox.started() == 0;
            let _counted = FinishOnDrop(&inner.outbox);
            // A drop noticed between `check` and the registration failed nothing of this call.
            if self.link_state().generation != state.generation {
                return Err(lost("the connection dropped; reconnecting"));
            }
            let headers = to_nats_headers(&request);
            // No timer of the call's own: the registration fails the call when its deadline
            // passes (see `calls`), as it does when the connection drops.
            let answered = if alone {
                // Nothing to gather with: the client's own request helper answers this call
                // without a hop through the dispatcher.
                let mut req = async_nats::Request::new()
                    .payload(request.body.clone())
                    .timeout(None);
                if !headers.is_empty() {
                    req = req.headers(headers);
                }
                // Boxed: the helper's future is large, and would otherwise make every call's
                // future (moved and boxed whole) larger by as much.
                let subject = async_nats::Subject::from(rpc_subject(service, method));
                let sent = Box::pin(inner.client.send_request(subject, req));
                tokio::select! {
                    r = sent => match r {
                        Ok(reply) => Ok(Answer::Reply(reply)),
                        Err(e) => match e.kind() {
                            async_nats::client::RequestErrorKind::NoResponders => {
                                Ok(Answer::NoResponders)
                            }
                            async_nats::client::RequestErrorKind::MaxPayloadExceeded => {
                                Err(BrokerError::PayloadTooLarge { size, max })
                            }
                            _ => Err(lost(e)),
                        },
                    },
                    failed = &mut call.answer => Err(match failed {
                        Ok(Err(e)) => e,
                        _ => BrokerError::Closed,
                    }),
                }
            } else {
                let out = outbox::Outgoing {
                    // Built for each attempt (there is seldom a second): a clone would cost the
                    // subject's buffer a shared header of its own.
                    subject: async_nats::Subject::from(rpc_subject(service, method)),
                    call: Some((inner.calls.reply_subject(call.id), call.id)),
                    headers,
                    body: request.body.clone(),
                };
                outbox::send(inner, out).await;
                match (&mut call.answer).await {
                    Ok(Ok(reply)) if reply.status == Some(NO_RESPONDERS) => {
                        Ok(Answer::NoResponders)
                    }
                    Ok(Ok(reply)) => Ok(Answer::Reply(reply)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(BrokerError::Closed),
                }
            };
            match answered {
                // The registration's deadline passed.
                Err(BrokerError::Timeout(_)) => return Err(BrokerError::Timeout(timeout)),
                Err(e) => return Err(e),
                Ok(Answer::Reply(mut reply)) => return Ok(message_of(&mut reply, 1)),
                Ok(Answer::NoResponders) if retried => {
                    return Err(BrokerError::UnknownService(service.to_string()))
                }
                Ok(Answer::NoResponders) => {
                    retried = true;
                    drop(call);
                    let pause = tokio::time::Instant::now() + Duration::from_millis(25);
                    tokio::time::sleep_until(pause.min(deadline)).await;
                    if pause >= deadline {
                        return Err(BrokerError::Timeout(timeout));
                    }
                }
            }
        }
    }

    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.check()?;
        let group = format!("basidia.rpc.{service}");
        let sub = self
            .inner
            .client
            .queue_subscribe(format!("basidia.rpc.{service}.*"), group.clone())
            .await
            .map_err(backend)?;
        let cancel = self.inner.shutdown.child_token();
        let instance = Arc::new(srv::SrvInstance::new(service, &options.endpoints, group));
        self.serve_srv_api(Arc::clone(&instance), cancel.clone())
            .await?;
        // Requests go from the client's subscription buffer straight to the consume loop, with no
        // task between. The buffer is bounded (`subscription_buffer_bytes`); should a service fall
        // that far behind, the client drops the excess, the broker logs it as a slow consumer,
        // and the callers' deadlines report it, as with any request core NATS could not deliver.
        let broker = self.clone();
        let prefix = format!("basidia.rpc.{service}.");
        let endpoint = Arc::new(CoreEndpoint {
            broker: self.clone(),
            dead_letter_subject: format!("basidia.deadletter.rpc.{service}"),
            queue: basidia_core::rpc_queue_name(service),
            srv: Some(Arc::clone(&instance)),
        });
        let deliveries = until_cancelled(sub, cancel.clone()).map(move |mut msg| {
            let method = msg
                .subject
                .as_str()
                .strip_prefix(prefix.as_str())
                .unwrap_or(msg.subject.as_str())
                .to_string();
            broker.inner.outbox.started();
            let mut message = message_of(&mut msg, 1);
            // A "reply subject" of the server's own API is no caller's inbox: such a request has
            // nowhere to be answered.
            let reply_to = msg.reply.take().filter(|r| !is_server_api(r));
            if reply_to.is_none() {
                message.reply_to = None;
            }
            let settle = CoreSettle {
                endpoint: Arc::clone(&endpoint),
                started: Instant::now(),
                slot: Some(instance.slot(&method)),
                reply_to: Mutex::new(reply_to),
            };
            Delivery::new(message, method, Box::new(settle))
        });
        Ok(Subscription::from_stream(deliveries, self.guard(cancel)))
    }

    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        // However the cluster or the connection fares meanwhile (a node gone, a stream leader
        // being elected), a publish ends by the message's deadline or the publish timeout.
        let limit = message
            .deadline
            .map_or(self.inner.options.publish_timeout, |at| {
                at.saturating_duration_since(tokio::time::Instant::now())
                    .min(self.inner.options.publish_timeout)
            });
        match tokio::time::timeout(
            limit,
            self.publish_event_unbounded(source, event_type, message),
        )
        .await
        {
            Ok(published) => published,
            Err(_) => {
                self.stream_lost(&event_stream(source));
                Err(BrokerError::Timeout(limit))
            }
        }
    }

    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.check()?;
        let subject = event_subject(&binding.source, &binding.event_type);
        let dead_letter_subject = format!(
            "basidia.deadletter.events.{}",
            js_name(&binding.queue_name())
        );
        let cancel = self.inner.shutdown.child_token();
        let (tx, rx) = mpsc::unbounded_channel();
        if binding.handler_type == HandlerType::Broadcast {
            let sub = self
                .inner
                .client
                .subscribe(subject)
                .await
                .map_err(backend)?;
            let endpoint = Arc::new(CoreEndpoint {
                broker: self.clone(),
                dead_letter_subject,
                queue: binding.queue_name(),
                srv: None,
            });
            let event_type = binding.event_type.clone();
            // Straight from the client's subscription, whose buffer is bounded, with no queue of
            // our own between (dropping the subscriber unsubscribes).
            let deliveries = until_cancelled(sub, cancel.clone()).map(move |mut msg| {
                let settle = CoreSettle {
                    endpoint: Arc::clone(&endpoint),
                    started: Instant::now(),
                    slot: None,
                    reply_to: Mutex::new(None),
                };
                let mut message = message_of(&mut msg, 1);
                message.reply_to = None;
                message.correlation_id = None;
                Delivery::new(message, event_type.clone(), Box::new(settle))
            });
            return Ok(Subscription::from_stream(deliveries, self.guard(cancel)));
        }
        let name = js_name(&binding.queue_name());
        let consumer_name: Arc<str> = Arc::from(name.as_str());
        let prefetch = options.prefetch.max(1);
        let mut resume = Resume::default();
        let mut consumer = self
            .event_consumer(&binding.source, &name, &subject, prefetch, &mut resume)
            .await?;
        let source = binding.source.clone();
        let broker = self.clone();
        let event_type = binding.event_type.clone();
        let task_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            'outer: loop {
                let mut messages = match consumer.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(consumer = %name, "cannot pull ({e}); retrying");
                        tokio::select! {
                            () = task_cancel.cancelled() => break 'outer,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        if let Ok(again) = broker
                            .event_consumer(&source, &name, &subject, prefetch, &mut resume)
                            .await
                        {
                            consumer = again;
                        }
                        continue;
                    }
                };
                // A pull request sent to a server that then went away is not always sent again
                // after the client reconnects elsewhere; the pull would then wait for a missed
                // heartbeat (half a minute) before anything arrives. Pull afresh instead.
                let mut link = broker.inner.link.subscribe();
                let pulled_on = link.borrow_and_update().generation;
                let reconnected = async move {
                    let _ = link
                        .wait_for(|s| s.connected && s.generation != pulled_on)
                        .await;
                };
                tokio::pin!(reconnected);
                loop {
                    let item = tokio::select! {
                        () = task_cancel.cancelled() => break 'outer,
                        () = &mut reconnected => {
                            tracing::debug!(consumer = %name, "reconnected; pulling afresh");
                            continue 'outer;
                        }
                        m = messages.next() => m,
                    };
                    let msg = match item {
                        Some(Ok(m)) => m,
                        Some(Err(e)) if consumer_gone(&e) => {
                            // An operator deleted the consumer or its stream: without this the
                            // handler would hear nothing more, ever.
                            tracing::warn!(consumer = %name, "the consumer is gone ({e}); creating it again");
                            broker.stream_lost(&event_stream(&source));
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(consumer = %name, "pull error: {e}");
                            continue;
                        }
                        None => break,
                    };
                    backoff = Duration::from_millis(100);
                    let (delivered, sequence) = msg
                        .info()
                        .map(|i| {
                            (
                                u32::try_from(i.delivered).unwrap_or(u32::MAX),
                                i.stream_sequence,
                            )
                        })
                        .unwrap_or((1, 0));
                    resume.given(sequence);
                    let ack_subject = msg.reply.clone();
                    let (mut core, acker) = msg.split();
                    if dead_letters::replayed_for_another(core.headers.as_ref(), &name) {
                        // A dead letter of another handler of this event, put back for that one.
                        let _ = acker.ack().await;
                        continue;
                    }
                    let subject = core.subject.clone();
                    let message = message_of(&mut core, delivered);
                    let keepalive = CancellationToken::new();
                    if let Some(subject) = ack_subject {
                        keep_alive(
                            broker.inner.client.clone(),
                            subject,
                            broker.inner.options.ack_wait,
                            keepalive.clone(),
                        );
                    }
                    let settle = JsSettle {
                        broker: broker.clone(),
                        acker,
                        dead_letter_subject: dead_letter_subject.clone(),
                        keepalive,
                        consumer: Arc::clone(&consumer_name),
                        subject,
                    };
                    let mut message = message;
                    message.reply_to = None;
                    message.correlation_id = None;
                    if tx
                        .send(Delivery::new(message, event_type.clone(), Box::new(settle)))
                        .is_err()
                    {
                        break 'outer;
                    }
                }
                // The pull ended or its consumer is gone: make sure both the stream and the
                // durable consumer exist before pulling again.
                let mut backoff = Duration::from_millis(100);
                loop {
                    match broker
                        .event_consumer(&source, &name, &subject, prefetch, &mut resume)
                        .await
                    {
                        Ok(again) => {
                            consumer = again;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(consumer = %name, "cannot create the consumer again yet: {e}")
                        }
                    }
                    tokio::select! {
                        () = task_cancel.cancelled() => break 'outer,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        });
        Ok(Subscription::new(rx, self.guard(cancel)))
    }

    async fn services(&self) -> Result<Option<Vec<String>>, BrokerError> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.map_err(backend)?;
        client
            .publish_with_reply("$SRV.PING", inbox, bytes::Bytes::new())
            .await
            .map_err(backend)?;
        client.flush().await.map_err(backend)?;
        // Every instance answers at once; stop once answers pause, and after a second at most.
        let mut names = std::collections::BTreeSet::new();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut quiet = Duration::from_millis(300);
        loop {
            let wait = quiet.min(give_up.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, sub.next()).await {
                Ok(Some(msg)) => {
                    if let Some(name) = srv::basidia_ping_name(&msg.payload) {
                        names.insert(name);
                    }
                    quiet = Duration::from_millis(100);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(Some(names.into_iter().collect()))
    }

    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<basidia_core::StoredDeadLetter>, BrokerError> {
        self.check()?;
        dead_letters::list(self, limit).await
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        self.check()?;
        dead_letters::replay(self, which).await
    }

    fn max_payload(&self) -> Option<usize> {
        let max = self.inner.max_payload.load(Ordering::Relaxed);
        (max > 0).then_some(max)
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Replies of workers that finished just before count as sent: handed to the client, and
        // written out. The client's drain only queues its own command and returns, so without the
        // flush a process that ends right after closing loses what was still queued.
        self.inner.outbox.flush(&self.inner).await;
        let written = tokio::time::timeout(CLOSE_FLUSH_LIMIT, self.inner.client.flush()).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(
                "messages still queued when the connection closed may not have been sent"
            );
        }
        self.inner.shutdown.cancel();
        self.inner.calls.pending.fail_all(|| BrokerError::Closed);
        let _ = self.inner.client.drain().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basidia_core::HeaderValue;

    #[test]
    fn a_consumer_created_again_picks_up_where_it_should() {
        use jetstream::consumer::DeliverPolicy;
        let first = time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let second = first + Duration::from_secs(60);
        let mut resume = Resume::default();
        assert_eq!(resume.policy(first), DeliverPolicy::New);
        resume.created_on(first, 41);
        resume.given(42);
        resume.given(45);
        resume.given(43);
        // The same stream: after the last event given, not from the start or from now.
        assert_eq!(
            resume.policy(first),
            DeliverPolicy::ByStartSequence { start_sequence: 46 }
        );
        resume.created_on(first, 0);
        assert_eq!(resume.next, 46);
        // A stream created again holds only what was published since.
        assert_eq!(resume.policy(second), DeliverPolicy::All);
        resume.created_on(second, 0);
        assert_eq!(
            resume.policy(second),
            DeliverPolicy::ByStartSequence { start_sequence: 1 }
        );
        resume.given(u64::MAX);
        assert_eq!(resume.next, u64::MAX);
    }

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
        assert_eq!(redact_url("nats://app:pw@host"), "nats://app:***@host");
        assert_eq!(redact_url("nats://tok@host"), "nats://***@host");
        assert!(!format!("{:?}", NatsOptions::new("nats://a:secret@h")).contains("secret"));
    }

    #[test]
    fn context_header_reads_every_kind() {
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

    /// Calls answered, failed or timed out, alone or many at once, leave nothing registered.
    #[tokio::test]
    async fn finished_calls_leave_no_registration_behind() {
        let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
            return;
        };
        let server = NatsBroker::connect(&url).await.expect("connect");
        let client = NatsBroker::connect(&url).await.expect("connect");
        let service = format!("t_forget_{}", std::process::id());
        let mut sub = server
            .serve(&service, ConsumeOptions::default())
            .await
            .expect("serve");
        let echo = tokio::spawn(async move {
            while let Some(d) = sub.next().await {
                if d.routing_key == "echo" {
                    let body = d.message.body.clone();
                    let _ = d.reply(Message::new(body, DEFAULT_CONTENT_TYPE)).await;
                }
                // "silent" requests are left unanswered, to time out.
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let call = |method: &'static str, timeout: Duration| {
            let client = client.clone();
            let service = service.clone();
            async move {
                let body = bytes::Bytes::from_static(b"\x91\xa1x");
                client
                    .call(
                        &service,
                        method,
                        Message::new(body, DEFAULT_CONTENT_TYPE),
                        timeout,
                    )
                    .await
            }
        };
        call("echo", Duration::from_secs(5))
            .await
            .expect("a lone call");
        let many: Vec<_> = (0..32)
            .map(|_| tokio::spawn(call("echo", Duration::from_secs(5))))
            .collect();
        for c in many {
            c.await.expect("caller").expect("one of many calls");
        }
        let silent = call("silent", Duration::from_millis(200)).await;
        assert!(matches!(silent, Err(BrokerError::Timeout(_))), "{silent:?}");
        let unknown = client
            .call(
                "t_nobody_here",
                "m",
                Message::new(bytes::Bytes::new(), DEFAULT_CONTENT_TYPE),
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(unknown, Err(BrokerError::UnknownService(_))),
            "{unknown:?}"
        );
        assert!(
            client.inner.calls.pending.is_empty(),
            "finished calls are still registered"
        );
        server.close().await;
        client.close().await;
        echo.abort();
    }

    #[test]
    fn the_deadline_travels_in_its_own_header() {
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
    fn names_that_cannot_be_published_to_are_refused() {
        assert!(fits_subject("greeting_service") && fits_subject("say-hello"));
        for bad in ["", "a b", "a\tb", "a\r\nPUB x 1", "*", "a>"] {
            assert!(!fits_subject(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_and_subjects() {
        assert_eq!(js_name("evt-a-b.c--svc.m"), "evt-a-b_c--svc_m");
        assert_eq!(event_stream("user_service"), "BASIDIA_EVENTS_user_service");
        assert_eq!(rpc_subject("s", "m"), "basidia.rpc.s.m");
        assert_eq!(
            event_subject("s", "user.created"),
            "basidia.events.s.user.created"
        );
    }
}
