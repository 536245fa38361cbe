//! Events on JetStream: streams, durable pull consumers and their settling, and what happens
//! when an operator deletes a consumer or a stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, AckKind};
use async_trait::async_trait;
use basidia_core::internal::{backend, backend_in, lock, lost, lost_boxed};
use basidia_core::{
    BrokerError, ConsumeOptions, Delivery, EventBinding, HandlerType, Message, Settle, Subscription,
};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{
    connect::{until_cancelled, NatsBroker},
    dead_letters,
    dead_letters::{publish_dead_letter, Origin},
    serve::{CoreEndpoint, CoreSettle},
    wire::*,
};

impl NatsBroker {
    pub(crate) async fn ensure_stream(
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
            .map_err(|e| backend_in(format!("cannot create stream {name}"), e))?;
        let mut streams = lock(&self.inner.streams);
        streams.lost.remove(name);
        streams.known.insert(name.to_string());
        Ok(())
    }

    /// Forgets that the stream `name` exists, so the next use looks for it (and creates it),
    /// though not at once: see [`STREAM_SETTLE`].
    pub(crate) fn stream_lost(&self, name: &str) {
        let mut streams = lock(&self.inner.streams);
        streams.known.remove(name);
        streams.lost.insert(name.to_string(), Instant::now());
    }

    /// The dead-letter stream, with its limits: created, or brought to the configured limits if
    /// it exists (the oldest dead letters are discarded first once a limit is reached).
    pub(crate) async fn ensure_dead_letter_stream(&self) -> Result<(), BrokerError> {
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
            .map_err(|e| backend_in(format!("cannot create stream {DEAD_LETTER_STREAM}"), e))?;
        lock(&self.inner.streams)
            .known
            .insert(DEAD_LETTER_STREAM.to_string());
        Ok(())
    }

    pub(crate) async fn ensure_event_stream(&self, source: &str) -> Result<(), BrokerError> {
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
    pub(crate) async fn event_consumer(
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

    pub(crate) async fn event_consumer_unbounded(
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
            .map_err(|e| backend_in(format!("cannot create consumer {name}"), e))?;
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
    pub(crate) async fn publish_event_unbounded(
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

    pub(crate) async fn publish_event_bounded(
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

    pub(crate) async fn subscribe_events(
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
        let (tx, rx) = basidia_core::delivery_channel();
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
}

/// Whether a pull error means the consumer (or its stream) no longer exists.
pub(crate) fn consumer_gone(e: &jetstream::consumer::pull::MessagesError) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind as K;
    matches!(
        e.kind(),
        K::ConsumerDeleted | K::MissingHeartbeat | K::NoResponders
    )
}

/// How long creating or finding a stream and a consumer may take before it is tried again.
pub(crate) const JS_API_LIMIT: Duration = Duration::from_secs(10);

/// The event streams a broker handle knows exist, and those it saw go missing.
#[derive(Default)]
pub(crate) struct Streams {
    pub(crate) known: HashSet<String>,
    pub(crate) lost: HashMap<String, Instant>,
}

/// How long after a stream was seen missing it may be created again. A consumer hears that its
/// stream was deleted while the server is still removing the stream's files; a stream created
/// under the same name in that moment loses its files to the removal (seen on nats-server 2.9:
/// every later store and read fails with "no such file or directory").
pub(crate) const STREAM_SETTLE: Duration = Duration::from_secs(1);

/// Where a durable event consumer picks up when it has to be created again (an operator deleted
/// it, or its whole stream). The first creation takes events from then on, as a queue bound now
/// would. A consumer lost from a stream that is still there resumes after the last event it was
/// given, so that nothing published meanwhile is missed and nothing handled runs again. A stream
/// that was deleted and created again (by a publisher, or by this loop) holds only events
/// published since, so a consumer on it starts from its beginning.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// When the stream the consumer was last created on was created.
    stream_created: Option<time::OffsetDateTime>,
    /// The stream sequence of the first event not yet given to the handler.
    next: u64,
}

impl Resume {
    pub(crate) fn policy(
        &self,
        stream_created: time::OffsetDateTime,
    ) -> jetstream::consumer::DeliverPolicy {
        use jetstream::consumer::DeliverPolicy;
        match self.stream_created {
            None => DeliverPolicy::New,
            Some(created) if created == stream_created => DeliverPolicy::ByStartSequence {
                start_sequence: self.next.max(1),
            },
            Some(_) => DeliverPolicy::All,
        }
    }

    pub(crate) fn created_on(&mut self, stream_created: time::OffsetDateTime, done_up_to: u64) {
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

    pub(crate) fn given(&mut self, stream_sequence: u64) {
        self.next = self.next.max(stream_sequence.saturating_add(1));
    }
}

/// Settles a JetStream delivery. While it is unsettled, a keep-alive tells the server the work
/// is in progress, so `ack_wait` can stay short (a delivery lost with a dead connection comes back
/// quickly) without redelivering events whose handlers simply take long.
pub(crate) struct JsSettle {
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

pub(crate) fn keep_alive(
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
        self.acker.ack().await.map_err(lost_boxed)
    }

    async fn requeue(
        self: Box<Self>,
        _message: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        // The server holds a NAK'd message for its delay before redelivering it.
        let delay = (!delay.is_zero()).then_some(delay);
        self.acker
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(lost_boxed)
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
        self.acker.ack_with(AckKind::Term).await.map_err(lost_boxed)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
