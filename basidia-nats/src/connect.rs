//! Connecting, the state of the link, and what every part of the backend shares.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self};
use basidia_core::internal::{backend_in, lost_in, lost_msg};
use basidia_core::{redact_url, BrokerError};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    calls,
    events::Streams,
    options::{server_list, NatsOptions, UrlAuth, ASSUMED_MAX_PAYLOAD},
    outbox,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub(crate) connected: bool,
    pub(crate) generation: u64,
}

impl LinkState {
    /// The state in one word (`generation << 1 | connected`), so that calls can read it with a
    /// plain load rather than through the watch channel's lock.
    pub(crate) fn packed(self) -> u64 {
        (self.generation << 1) | u64::from(self.connected)
    }

    pub(crate) fn unpacked(word: u64) -> Self {
        LinkState {
            connected: word & 1 == 1,
            generation: word >> 1,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) options: NatsOptions,
    pub(crate) client: async_nats::Client,
    /// The server's `max_payload`, read at connect (reading it clones the whole server info).
    pub(crate) max_payload: std::sync::atomic::AtomicUsize,
    pub(crate) js: jetstream::Context,
    pub(crate) link: watch::Sender<LinkState>,
    /// The current link state, packed: what every call and reply checks.
    pub(crate) link_now: Arc<AtomicU64>,
    pub(crate) streams: Mutex<Streams>,
    /// Where RPC requests and replies queue to be published in batches.
    pub(crate) outbox: outbox::Outbox,
    /// The calls made on this connection that wait for replies.
    pub(crate) calls: calls::Calls,
    pub(crate) closed: AtomicBool,
    pub(crate) shutdown: CancellationToken,
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
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
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
                                lost_msg("the connection dropped while the request was in flight")
                            });
                        }
                        async_nats::Event::Connected => link.send_modify(|s| {
                            s.connected = true;
                            link_now.store(s.packed(), Ordering::SeqCst);
                            // A generation past the first means a connection was lost before.
                            if s.generation > 0 {
                                basidia_core::metrics::registry().note_reconnect("nats");
                            }
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
                backend_in(format!("cannot read credentials {}", creds.display()), e)
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
        let client = connect
            .connect(addr)
            .await
            .map_err(|e| lost_in(format!("cannot connect to {}", redact_url(&options.url)), e))?;
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

    /// The async-nats client underneath, for what Basidia does not offer (server information,
    /// JetStream administration). Unstable: its type follows the async-nats version Basidia
    /// depends on, which may change in any release, and anything done with it bypasses
    /// Basidia's bookkeeping.
    pub fn unstable_raw_client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    pub(crate) fn link_state(&self) -> LinkState {
        LinkState::unpacked(self.inner.link_now.load(Ordering::SeqCst))
    }

    pub(crate) fn check(&self) -> Result<LinkState, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        let state = self.link_state();
        if !state.connected {
            return Err(lost_msg("not connected to NATS; reconnecting"));
        }
        Ok(state)
    }

    /// Runs `work`, but fails it with [`BrokerError::ConnectionLost`] as soon as the connection
    /// seen as `state` drops (or the handle closes) instead of waiting for an answer that the
    /// server will never send.
    pub(crate) async fn unless_dropped<T>(
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
            () = dropped => Err(lost_msg("the connection dropped while the request was in flight")),
            () = self.inner.shutdown.cancelled() => Err(lost_msg("the broker handle was closed")),
        }
    }

    pub(crate) fn guard(&self, cancel: CancellationToken) -> Box<dyn Send + Sync> {
        Box::new(CancelOnDrop(cancel))
    }
}

/// How long closing waits for queued messages to be written.
pub(crate) const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(5);

pub(crate) struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `stream` until `stop` is cancelled. Unlike `take_until`, which polls the cancellation before
/// every item, this polls it while the stream has nothing ready and before every 32nd item:
/// polling a token takes its lock (twice), which for every message would be the dearest part
/// of handing it over.
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
