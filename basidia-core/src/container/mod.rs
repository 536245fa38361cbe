//! The service container: hosts one service on a broker, admits work up to `max_workers`,
//! runs each worker with its context, settles every delivery, and drains gracefully.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use basidia_serializers::Format;
use futures_util::FutureExt;
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::{authorize, with_subject, TokenVerifier};
use crate::broker::{ConsumeOptions, Delivery, EventBinding, SharedBroker, Subscription};
use crate::config::ServiceSettings;
use crate::context::Context;
use crate::dependency::{DependencyProvider, EntrypointKind, WorkerInfo};
use crate::envelope::{encode_error_reply, Arguments, RequestMetadata};
use crate::error::{Error, ErrorKind, RemoteError};
use crate::message::Message;
use crate::private::reply_ok;
use crate::service::{EncodedReply, EventPayload, Service, ServiceDescription, DESCRIBE_METHOD};
use crate::telemetry::{SpanEnd, SpanRole};

mod http;

pub use http::HttpEndpoint;

/// What a finished worker reports to observers (the test harness waits on these).
#[derive(Debug, Clone)]
pub struct WorkerEvent {
    /// The service.
    pub service: String,
    /// The entrypoint.
    pub entrypoint: String,
    /// The kind of entrypoint.
    pub kind: EntrypointKind,
    /// The worker's call id.
    pub call_id: String,
    /// The failure, if the worker failed.
    pub error: Option<RemoteError>,
}

/// A stream of [`WorkerEvent`]s, from [`Runner::observe`](crate::Runner::observe) or
/// [`RunningServices::observe`](crate::RunningServices::observe). An observer that falls behind
/// by more than the buffer (1,024 events) misses the oldest of them.
#[derive(Debug)]
pub struct WorkerEvents(broadcast::Receiver<WorkerEvent>);

impl WorkerEvents {
    pub(crate) fn new(rx: broadcast::Receiver<WorkerEvent>) -> Self {
        WorkerEvents(rx)
    }

    /// The next event; `None` once every service is stopped.
    pub async fn next(&mut self) -> Option<WorkerEvent> {
        loop {
            match self.0.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Another observer, which sees the events from now on.
    pub fn resubscribe(&self) -> Self {
        WorkerEvents(self.0.resubscribe())
    }
}

struct Shared {
    name: String,
    service: Arc<dyn Service>,
    broker: SharedBroker,
    settings: ServiceSettings,
    providers: Vec<Arc<dyn DependencyProvider>>,
    workers: Workers,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Set with `cancel`: the consume loops check it for every delivery, where polling the
    /// token would take its lock.
    stopping: AtomicBool,
    allowed: Option<HashSet<String>>,
    observers: broadcast::Sender<WorkerEvent>,
    description: ServiceDescription,
    broadcast_id: String,
    /// Requests dropped for want of a reply address.
    unanswerable: RateLimited,
    /// Checks the tokens of callers of methods with roles.
    verifier: Option<Arc<dyn TokenVerifier>>,
    /// Consume loops that ended while the service was running: the broker closed their
    /// consumer for good, and the service no longer hears what they took.
    lost_consumers: AtomicUsize,
    /// Its series in the process's metrics.
    metrics: Arc<crate::metrics::ServiceMetrics>,
    /// What `basidia status` shows of it.
    instance: crate::broker::InstanceInfo,
}

/// Counts occurrences of something worth a log line, and says when to write one: for the first,
/// then at most once per [`RateLimited::EVERY`], with how many there were since the last.
struct RateLimited {
    since_report: AtomicUsize,
    last_report: std::sync::Mutex<Option<Instant>>,
}

impl RateLimited {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        RateLimited {
            since_report: AtomicUsize::new(0),
            last_report: std::sync::Mutex::new(None),
        }
    }

    /// Counts one; `Some(count)` when a log line is due.
    fn note(&self) -> Option<usize> {
        self.since_report.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Self::EVERY) {
            return None;
        }
        *last = Some(now);
        Some(self.since_report.swap(0, Ordering::Relaxed))
    }
}

/// Whether a running service is taking work, for readiness.
#[derive(Clone)]
pub struct ServiceProbe(Arc<Shared>);

impl std::fmt::Debug for ServiceProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProbe")
            .field("service", &self.0.name)
            .field("running", &self.is_running())
            .finish()
    }
}

impl ServiceProbe {
    /// The service.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether it is taking work: not stopping, and every consumer it started still consuming.
    pub fn is_running(&self) -> bool {
        !self.0.stopping.load(Ordering::Acquire)
            && self.0.lost_consumers.load(Ordering::Acquire) == 0
    }
}

/// Hosts one service.
pub struct ServiceContainer {
    shared: Arc<Shared>,
    loops: Vec<JoinHandle<()>>,
    started: bool,
}

impl std::fmt::Debug for ServiceContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContainer")
            .field("service", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl ServiceContainer {
    /// A container for `service`. `allowed`, when set, restricts which entrypoints run.
    pub fn new(
        service: Arc<dyn Service>,
        broker: SharedBroker,
        settings: ServiceSettings,
        providers: Vec<Arc<dyn DependencyProvider>>,
        allowed: Option<HashSet<String>>,
        observers: broadcast::Sender<WorkerEvent>,
        verifier: Option<Arc<dyn TokenVerifier>>,
    ) -> Self {
        let description = service.describe();
        let entrypoints: Vec<(String, &'static str)> = description
            .rpc
            .iter()
            .map(|m| (m.name.clone(), "rpc"))
            .chain(description.events.iter().map(|e| (e.name.clone(), "event")))
            .chain(description.timers.iter().map(|t| (t.name.clone(), "timer")))
            .chain(description.http.iter().map(|h| (h.name.clone(), "http")))
            .collect();
        let metrics =
            crate::metrics::registry().service(service.name(), &entrypoints, settings.max_workers);
        let instance = crate::broker::InstanceInfo::starting_now(
            service.name(),
            entrypoints.iter().map(|(name, _)| name.clone()).collect(),
        );
        let shared = Shared {
            name: service.name().to_string(),
            metrics,
            instance,
            workers: Workers::new(settings.max_workers),
            service,
            broker,
            settings,
            providers,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            allowed,
            observers,
            description,
            broadcast_id: uuid::Uuid::new_v4().simple().to_string(),
            unanswerable: RateLimited::new(),
            verifier,
            lost_consumers: AtomicUsize::new(0),
        };
        ServiceContainer {
            shared: Arc::new(shared),
            loops: Vec::new(),
            started: false,
        }
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The service's description.
    pub fn description(&self) -> &ServiceDescription {
        &self.shared.description
    }

    /// A view of the service's state, for readiness.
    pub fn probe(&self) -> ServiceProbe {
        ServiceProbe(Arc::clone(&self.shared))
    }

    /// The service's HTTP routes (those allowed to run), for the HTTP server to serve.
    pub fn http_endpoints(&self) -> Vec<HttpEndpoint> {
        self.shared
            .description
            .http
            .iter()
            .filter(|r| self.shared.is_allowed(&r.name))
            .map(|r| HttpEndpoint::new(Arc::clone(&self.shared), r.clone()))
            .collect()
    }

    /// Starts providers, runs the service's start hook, then subscribes its entrypoints.
    pub async fn start(&mut self) -> Result<(), Error> {
        let s = Arc::clone(&self.shared);
        for (i, p) in s.providers.iter().enumerate() {
            if let Err(e) = p.start().await {
                for started in s.providers[..i].iter().rev() {
                    started.stop().await;
                }
                return Err(Error::Startup {
                    service: s.name.clone(),
                    message: format!("dependency failed to start: {e}"),
                    source: Some(e),
                });
            }
        }
        if let Err(e) = s.service.on_start().await {
            for p in s.providers.iter().rev() {
                p.stop().await;
            }
            return Err(Error::Startup {
                service: s.name.clone(),
                message: e.to_string(),
                source: Some(e),
            });
        }
        let guarded = s.description.rpc.iter().any(|m| !m.roles.is_empty())
            || s.description.http.iter().any(|r| !r.roles.is_empty());
        if guarded && s.verifier.is_none() {
            // Info, not warn: refusing everyone is the safe reading of a missing [auth], and
            // a development run (the quick start) should not look broken for it.
            tracing::info!(
                service = %s.name,
                "methods with roles refuse every caller: no token verifier ([auth]) is configured"
            );
        }
        self.started = true;
        if let Err(e) = self.subscribe().await {
            self.stop_with_grace(Duration::ZERO).await;
            return Err(e);
        }
        self.shared.broker.announce(&self.shared.instance);
        tracing::info!(service = %self.shared.name, "service started");
        Ok(())
    }

    async fn subscribe(&mut self) -> Result<(), Error> {
        let s = Arc::clone(&self.shared);
        let prefetch = u16::try_from(s.settings.max_workers)
            .unwrap_or(u16::MAX)
            .max(1);
        let options = ConsumeOptions {
            prefetch,
            max_priority: s.settings.max_priority,
            endpoints: Vec::new(),
        };
        let rpc_options = ConsumeOptions {
            endpoints: s.description.rpc.iter().map(|m| m.name.clone()).collect(),
            ..options.clone()
        };
        let sub = s.broker.serve(&s.name, rpc_options).await?;
        self.loops
            .push(tokio::spawn(consume(Arc::clone(&s), sub, None)));
        for handler in &s.description.events {
            if !s.is_allowed(&handler.name) {
                continue;
            }
            let binding = EventBinding {
                source: handler.source.clone(),
                event_type: handler.event_type.clone(),
                service: s.name.clone(),
                method: handler.name.clone(),
                handler_type: handler.handler_type,
                broadcast_id: s.broadcast_id.clone(),
            };
            let sub = s.broker.subscribe(&binding, options.clone()).await?;
            self.loops.push(tokio::spawn(consume(
                Arc::clone(&s),
                sub,
                Some(Arc::from(handler.name.as_str())),
            )));
        }
        for timer in &s.description.timers {
            if !s.is_allowed(&timer.name) {
                continue;
            }
            let period = Duration::from_millis(timer.interval_ms.max(1));
            self.loops.push(tokio::spawn(run_timer(
                Arc::clone(&s),
                Arc::from(timer.name.as_str()),
                period,
                timer.eager,
            )));
        }
        Ok(())
    }

    /// Stops taking work, waits for in-flight workers up to the shutdown grace, then runs the
    /// stop hook and stops providers.
    pub async fn stop(mut self) {
        let grace = self.shared.settings.shutdown_grace;
        self.stop_with_grace(grace).await;
    }

    async fn stop_with_grace(&mut self, grace: Duration) {
        let s = Arc::clone(&self.shared);
        if self.started {
            s.broker.withdraw(&s.instance.id);
        }
        s.stopping.store(true, Ordering::SeqCst);
        s.cancel.cancel();
        for l in self.loops.drain(..) {
            let _ = l.await;
        }
        s.tracker.close();
        if tokio::time::timeout(grace, s.tracker.wait()).await.is_err() {
            tracing::warn!(
                service = %s.name,
                in_flight = s.tracker.len(),
                "shutdown grace of {grace:?} passed with workers still running"
            );
        }
        if self.started {
            s.service.on_stop().await;
            for p in s.providers.iter().rev() {
                p.stop().await;
            }
        }
        tracing::info!(service = %s.name, "service stopped");
    }
}

impl Shared {
    /// `ctx` if its caller may run `entrypoint`, which needs one of `roles`: with the verified
    /// subject as its user id when there are roles; else the error to answer with, the
    /// entrypoint not run.
    fn authorized(
        &self,
        ctx: Arc<Context>,
        entrypoint: &str,
        roles: &[String],
    ) -> Result<Arc<Context>, RemoteError> {
        match authorize(self.verifier.as_deref(), &ctx, entrypoint, roles) {
            Err(e) => {
                tracing::warn!(service = %self.name, entrypoint, "refused: {}", e.value);
                Err(e)
            }
            Ok(None) => Ok(ctx),
            Ok(Some(verified)) => Ok(Arc::new(with_subject(
                Arc::unwrap_or_clone(ctx),
                verified.subject,
            ))),
        }
    }

    fn is_allowed(&self, entrypoint: &str) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.contains(entrypoint))
    }

    fn notify(
        &self,
        entrypoint: &str,
        kind: EntrypointKind,
        ctx: &Context,
        error: Option<&RemoteError>,
    ) {
        if self.observers.receiver_count() > 0 {
            let _ = self.observers.send(WorkerEvent {
                service: self.name.clone(),
                entrypoint: entrypoint.to_string(),
                kind,
                call_id: ctx.call_id.clone().unwrap_or_default(),
                error: error.cloned(),
            });
        }
    }

    /// The span of a worker of `entrypoint` with `ctx`, standing for `role`, and the context
    /// as the worker runs with it: a hop of the caller's trace, with the span's own id as the
    /// parent its calls and events carry (see [`crate::telemetry`]).
    fn worker_span(
        &self,
        entrypoint: &str,
        kind: EntrypointKind,
        ctx: Arc<Context>,
        role: SpanRole<'_>,
    ) -> (tracing::Span, Arc<Context>) {
        let open = || {
            tracing::info_span!(
                "worker",
                service = %self.name,
                entrypoint,
                kind = ?kind,
                call_id = ctx.call_id.as_deref().unwrap_or(""),
                trace_id = tracing::field::Empty,
                otel.name = tracing::field::Empty,
                otel.kind = tracing::field::Empty,
            )
        };
        if crate::telemetry::unsampled(ctx.traceparent()) {
            // The caller decided against a trace: no exported span, and a span id of Basidia's
            // own (with the caller's flags) for the calls it makes.
            let span = crate::telemetry::open_suppressed(open);
            let mut own = Arc::unwrap_or_clone(ctx);
            own.adopt_own_span();
            span.record("trace_id", own.trace_id().unwrap_or(""));
            return (span, Arc::new(own));
        }
        let span = open();
        let ctx = if crate::telemetry::hook().is_some() {
            let mut own = Arc::unwrap_or_clone(ctx);
            own.adopt_span(&span, role, self.broker.kind());
            Arc::new(own)
        } else {
            ctx
        };
        span.record("trace_id", ctx.trace_id().unwrap_or(""));
        (span, ctx)
    }

    /// Runs a handler future as a worker in `span`: context set, provider hooks around it,
    /// panics caught, the outcome told to the span hook.
    async fn run_worker<F, T>(
        &self,
        entrypoint: &str,
        kind: EntrypointKind,
        ctx: Arc<Context>,
        span: &tracing::Span,
        fut: F,
    ) -> Result<T, RemoteError>
    where
        F: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let info = WorkerInfo {
            service: &self.name,
            entrypoint,
            kind,
            context: &ctx,
        };
        for p in &self.providers {
            p.worker_setup(&info);
        }
        let metrics = self.metrics.entrypoint(entrypoint);
        // Given back when the worker ends, or when its future is dropped (an HTTP request past
        // its timeout).
        let in_flight = InFlight::count(&self.metrics);
        let began = Instant::now();
        let work = Context::scope(Arc::clone(&ctx), AssertUnwindSafe(fut).catch_unwind())
            .instrument(span.clone());
        let work = if crate::telemetry::unsampled(ctx.traceparent()) {
            futures_util::future::Either::Left(crate::telemetry::run_suppressed(work))
        } else {
            futures_util::future::Either::Right(work)
        };
        let result = work.await.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_string());
            tracing::error!(service = %self.name, entrypoint, "handler panicked: {message}");
            Err(RemoteError {
                exc_type: "HandlerPanicked".into(),
                exc_path: "basidia.HandlerPanicked".into(),
                exc_args: vec![message.clone().into()],
                value: message,
            })
        });
        for p in &self.providers {
            p.worker_result(&info, result.as_ref().map(|_| ()));
        }
        for p in &self.providers {
            p.worker_teardown(&info);
        }
        drop(in_flight);
        if let Some(m) = metrics {
            let outcome = crate::metrics::outcome(result.as_ref().err().map(RemoteError::kind));
            m.handled.record(outcome, began.elapsed());
        }
        if let Err(e) = &result {
            let call_id = ctx.call_id.as_deref().unwrap_or("");
            crate::metrics::registry().note_error(&self.name, entrypoint, call_id, e);
        }
        self.notify(entrypoint, kind, &ctx, result.as_ref().err());
        // An HTTP worker's span ends once, with its error and the status answered, where the
        // status is known.
        if kind != EntrypointKind::Http {
            crate::telemetry::end(
                span,
                match &result {
                    Ok(_) => SpanEnd::ok(),
                    Err(e) => SpanEnd::error(&e.exc_type, &e.value),
                },
            );
        }
        result
    }

    async fn handle_request(&self, mut delivery: Delivery) {
        let method_owned = std::mem::take(&mut delivery.routing_key);
        let method = method_owned.as_str();
        if delivery.message.reply_to.is_none() {
            // Nowhere to answer: running the work would produce a result nobody can receive.
            // Nor is it kept: anyone able to publish could fill the dead letters with such
            // messages at no cost. It is counted, and reported at most every few seconds.
            if let Some(dropped) = self.unanswerable.note() {
                tracing::warn!(
                    service = %self.name,
                    method,
                    dropped,
                    "requests without a reply address dropped unrun"
                );
            }
            if let Err(e) = delivery.ack().await {
                tracing::warn!(service = %self.name, "cannot ack: {e}");
            }
            return;
        }
        let msg = &delivery.message;
        let format = msg
            .content_type
            .as_deref()
            .and_then(Format::from_content_type);
        let reply_format = format.unwrap_or(Format::Json);
        let outcome: Result<EncodedReply, RemoteError> = match format {
            None => Err(RemoteError::malformed(format!(
                "unsupported content type {:?}: expected application/x-msgpack or application/json",
                msg.content_type.as_deref().unwrap_or("")
            ))),
            Some(format) => match Arguments::decode(format, msg.body.clone()) {
                Err(e) => Err(e),
                Ok(_) if method == DESCRIBE_METHOD => reply_ok(format, &self.description),
                Ok(_) if !self.is_allowed(method) || self.description.method(method).is_none() => {
                    self.metrics.unknown_methods.fetch_add(1, Ordering::Relaxed);
                    Err(RemoteError::method_not_found(&self.name, method))
                }
                Ok(mut args) => {
                    let ctx = Arc::new(worker_context(
                        &self.name,
                        method,
                        msg,
                        args.take_metadata(),
                    ));
                    let roles = self
                        .description
                        .method(method)
                        .map_or(&[][..], |m| m.roles.as_slice());
                    if ctx.deadline.is_some_and(|d| d <= Instant::now()) {
                        Err(RemoteError::new(
                            ErrorKind::Timeout,
                            "the caller's deadline passed before the request was handled",
                        ))
                    } else {
                        match self.authorized(ctx, method, roles) {
                            Err(e) => Err(e),
                            Ok(ctx) => {
                                let role = SpanRole::RpcServer {
                                    service: &self.name,
                                    method,
                                };
                                let kind = EntrypointKind::Rpc;
                                let (span, ctx) = self.worker_span(method, kind, ctx, role);
                                let service = &self.service;
                                self.run_worker(method, kind, ctx, &span, async move {
                                    service.handle_rpc(method, args).await
                                })
                                .await
                            }
                        }
                    }
                }
            },
        };
        let (mut body, mut error) = match outcome {
            Ok(EncodedReply(body)) => (body, None),
            Err(e) => (encode_error_reply(reply_format, &e), Some(e.to_string())),
        };
        if let Some(max) = self.broker.max_payload().filter(|max| body.len() > *max) {
            // The broker would refuse this reply and the caller would wait out its deadline;
            // tell the caller instead why it gets no result.
            let e = RemoteError::new(
                ErrorKind::Other,
                format!(
                    "the reply of {} bytes exceeds the broker's limit of {max} bytes",
                    body.len()
                ),
            );
            tracing::warn!(service = %self.name, method, "{e}");
            body = encode_error_reply(reply_format, &e);
            error = Some(e.to_string());
        }
        let reply = Message {
            error,
            ..Message::new(body, reply_format.content_type())
        };
        match delivery.reply(reply).await {
            Ok(()) => {
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(service = %self.name, method, "cannot ack request: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(service = %self.name, method, "cannot publish reply, requeueing: {e}");
                let _ = delivery.requeue().await;
            }
        }
    }

    async fn handle_event(&self, handler: &str, delivery: Delivery) {
        let count = delivery.message.delivery_count;
        let max = self.settings.event_max_deliveries;
        if count > max {
            // Delivered more often than it may run, without a failure being seen: its handler
            // ended the process (or outlived its lease) each time. Running it again would only
            // do that again.
            tracing::error!(
                service = %self.name,
                handler,
                deliveries = count,
                "event delivered more than event_max_deliveries ({max}) times, dead-lettered without running"
            );
            if let Some(m) = self.metrics.entrypoint(handler) {
                m.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            let reason =
                format!("delivered {count} times, more than the limit of {max}, without finishing");
            if let Err(e) = delivery.dead_letter(&reason).await {
                tracing::warn!(service = %self.name, handler, "cannot settle event: {e}");
            }
            return;
        }
        let binding = self.description.events.iter().find(|h| h.name == handler);
        let timeout = binding
            .and_then(|h| h.timeout_ms)
            .map_or(self.settings.event_handler_timeout, Duration::from_millis);
        let msg = &delivery.message;
        // The handler's own deadline, from now: the dispatcher's deadline bounded the dispatch,
        // and an event may have waited in its queue far longer than that. Call ids and context
        // data still flow on.
        let ctx = Arc::new(Context::for_worker(
            &self.name,
            handler,
            &msg.headers,
            Some(crate::context::deadline_after(timeout)),
        ));
        let role = SpanRole::Process {
            source: binding.map_or("", |b| b.source.as_str()),
            event_type: binding.map_or("", |b| b.event_type.as_str()),
            service: &self.name,
            handler,
        };
        let (span, ctx) = self.worker_span(handler, EntrypointKind::Event, ctx, role);
        let format = msg
            .content_type
            .as_deref()
            .and_then(Format::from_content_type);
        let outcome = match format {
            None => {
                let e = RemoteError::malformed(format!(
                    "unsupported content type {:?}",
                    msg.content_type.as_deref().unwrap_or("")
                ));
                crate::telemetry::end(&span, SpanEnd::error(&e.exc_type, &e.value));
                Err(e)
            }
            Some(format) => {
                let payload = EventPayload {
                    format,
                    body: msg.body.clone(),
                };
                let service = &self.service;
                self.run_worker(handler, EntrypointKind::Event, ctx, &span, async move {
                    match tokio::time::timeout(timeout, service.handle_event(handler, payload))
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(RemoteError::new(
                            ErrorKind::Timeout,
                            format!("the handler ran past its timeout of {timeout:?}"),
                        )),
                    }
                })
                .await
            }
        };
        let counted = self.metrics.entrypoint(handler);
        // What becomes of the event is said inside the worker's span: a trace shows the retry
        // or the dead-lettering as the span's events, and the log lines carry the worker's ids.
        let settle = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::MalformedRequest | ErrorKind::IncorrectSignature
                ) =>
            {
                span.in_scope(|| {
                    tracing::error!(service = %self.name, handler, "undecodable event dead-lettered: {e}");
                });
                if let Some(m) = counted {
                    m.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                delivery.dead_letter(&e.to_string()).await
            }
            Err(e) if count >= max => {
                span.in_scope(|| {
                    tracing::error!(
                        service = %self.name,
                        handler,
                        deliveries = count,
                        "event handler kept failing, dead-lettered: {e}"
                    );
                });
                if let Some(m) = counted {
                    m.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                delivery
                    .dead_letter(&format!("failed {count} times: {e}"))
                    .await
            }
            Err(e) => {
                let delay = self.settings.retry_delay(count);
                span.in_scope(|| {
                    tracing::warn!(service = %self.name, handler, attempt = count, "event handler failed, retrying in {delay:?}: {e}");
                });
                // The broker keeps the event for the delay; this worker's place is free now.
                if let Some(m) = counted {
                    m.retried.fetch_add(1, Ordering::Relaxed);
                }
                delivery.requeue_after(delay).await
            }
        };
        if let Err(e) = settle {
            tracing::warn!(service = %self.name, handler, "cannot settle event: {e}");
        }
    }
}

/// Caps how many workers of a service run at once (`max_workers`). Taking and giving back a
/// place is one atomic operation while there is room; only a loop that finds the service full
/// waits, and only then does giving back a place wake anyone. On cache lines of its own: every
/// worker writes the count as it starts and ends, while the service's other fields are read by
/// every delivery.
#[repr(align(128))]
struct Workers {
    max: usize,
    busy: AtomicUsize,
    freed: Notify,
}

impl Workers {
    fn new(max: usize) -> Self {
        Workers {
            max: max.max(1),
            busy: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    fn try_take(&self) -> bool {
        if self.busy.fetch_add(1, Ordering::AcqRel) < self.max {
            return true;
        }
        // Undone without a wake-up: this place was never taken, and telling `freed` would wake
        // the very loop that is about to wait, which would find the service still full and try
        // again, forever, without ever yielding its thread.
        self.busy.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Takes a place, waiting for one if the service is full; `false` if `cancelled` came
    /// first.
    async fn take(
        &self,
        cancelled: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let mut cancelled = cancelled;
        loop {
            if self.try_take() {
                return true;
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // A place given back before `enable` woke nobody: look again.
            if self.busy.load(Ordering::Acquire) < self.max {
                continue;
            }
            tokio::select! {
                biased;
                () = &mut cancelled => return false,
                () = freed => {}
            }
        }
    }

    fn give_back(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) >= self.max {
            // The service was full: a loop may be waiting for this place.
            self.freed.notify_one();
        }
    }
}

/// A worker counted in flight until dropped.
struct InFlight<'a>(&'a crate::metrics::ServiceMetrics);

impl<'a> InFlight<'a> {
    fn count(metrics: &'a crate::metrics::ServiceMetrics) -> Self {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's place, given back when the worker ends (or its future is dropped).
struct Busy(Arc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.workers.give_back();
    }
}

/// The context of a worker for the request `msg`, whose envelope carried `metadata`: the context
/// data of both (the message's own entries win a clash) and the earlier of their deadlines.
fn worker_context(
    service: &str,
    method: &str,
    msg: &Message,
    metadata: RequestMetadata,
) -> Context {
    let in_envelope = metadata
        .deadline_ms
        .map(crate::context::instant_from_epoch_ms);
    let deadline = crate::context::earlier(msg.deadline, in_envelope);
    if metadata.context.is_empty() {
        return Context::for_worker(service, method, &msg.headers, deadline);
    }
    let mut headers = metadata.context;
    headers.extend(msg.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    Context::for_worker(service, method, &headers, deadline)
}

/// The next delivery of `sub`, or `None` once the service stops: a flag read for each
/// delivery, the cancellation wait only polled while no delivery is ready.
async fn next_delivery(
    s: &Shared,
    sub: &mut Subscription,
    cancelled: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<Delivery> {
    if s.stopping.load(Ordering::Acquire) {
        return None;
    }
    tokio::select! {
        biased;
        d = sub.next() => match d {
            Some(d) => Some(d),
            None => {
                if !s.cancel.is_cancelled() {
                    tracing::warn!(service = %s.name, "consumer ended: the broker closed it");
                }
                None
            }
        },
        () = cancelled => None,
    }
}

/// How long a worker's first step may take on the consume loop before workers of that loop
/// start on tasks of their own.
const INLINE_STEP_LIMIT: Duration = Duration::from_micros(200);

/// How many deliveries start on tasks of their own after a slow first step, before the next is
/// tried on the consume loop again.
const INLINE_COOLDOWN: u32 = 64;

/// Where each worker's first step runs.
///
/// A worker's first step runs right on the consume loop: most RPC handlers finish in it (no I/O
/// to wait for), and then the worker costs no task, no wake-up and no hand-over to another
/// thread, and replies leave in the order requests came. A worker that has to wait goes on as a
/// task of its own, so the loop takes the next delivery at once. Should first steps take long
/// (CPU-heavy handlers), they would hold the next deliveries back, and so after one that took
/// over [`INLINE_STEP_LIMIT`] the next [`INLINE_COOLDOWN`] workers start on tasks of their own.
/// (What running first steps inline buys is measured in `docs/performance.md`.)
#[derive(Debug, Default)]
struct FirstStep {
    cooldown: u32,
}

/// How a worker was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    /// Its first step ran on the loop and finished the work.
    FinishedInline,
    /// Its first step ran on the loop; the rest goes on as a task.
    ContinuedOnTask,
    /// It went straight to a task of its own (during a cooldown).
    OnTask,
}

impl FirstStep {
    /// Starts `job`, handing it to `spawn` if it does not finish on the spot.
    async fn start<F>(
        &mut self,
        mut job: std::pin::Pin<Box<F>>,
        spawn: impl FnOnce(std::pin::Pin<Box<F>>),
    ) -> Started
    where
        F: std::future::Future<Output = ()> + ?Sized,
    {
        if self.cooldown > 0 {
            self.cooldown -= 1;
            spawn(job);
            return Started::OnTask;
        }
        let began = std::time::Instant::now();
        let finished = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(job.as_mut(), cx).is_ready())
        })
        .await;
        if began.elapsed() > INLINE_STEP_LIMIT {
            self.cooldown = INLINE_COOLDOWN;
        }
        if finished {
            Started::FinishedInline
        } else {
            spawn(job);
            Started::ContinuedOnTask
        }
    }
}

/// Takes deliveries one at a time, admits each as a worker, and starts it (see [`FirstStep`]).
async fn consume(s: Arc<Shared>, mut sub: Subscription, handler: Option<Arc<str>>) {
    let mut first_step = FirstStep::default();
    // One wait for cancellation for the whole loop: registered once, not twice per delivery.
    let cancelled = s.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let Some(delivery) = next_delivery(&s, &mut sub, cancelled.as_mut()).await else {
            if !s.stopping.load(Ordering::Acquire) {
                s.lost_consumers.fetch_add(1, Ordering::AcqRel);
            }
            break;
        };
        if !s.workers.take(cancelled.as_mut()).await {
            break;
        }
        let busy = Busy(Arc::clone(&s));
        let handler = handler.clone();
        // Tracked (for the stop to wait for) only if it goes on as a task of its own: while it
        // runs on this loop, the stop waits for the loop.
        let job = Box::pin(async move {
            let worker = &busy.0;
            match handler {
                None => worker.handle_request(delivery).await,
                Some(h) => worker.handle_event(&h, delivery).await,
            }
            drop(busy);
        });
        first_step
            .start(job, |job| {
                tokio::spawn(s.tracker.track_future(job));
            })
            .await;
    }
}

async fn run_timer(s: Arc<Shared>, name: Arc<str>, period: Duration, eager: bool) {
    let start = if eager {
        Instant::now()
    } else {
        Instant::now() + period
    };
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = s.cancel.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let cancelled = s.cancel.cancelled();
        tokio::pin!(cancelled);
        if !s.workers.take(cancelled).await {
            break;
        }
        let busy = Busy(Arc::clone(&s));
        let timer = Arc::clone(&name);
        let job = s.tracker.spawn(async move {
            let worker = &busy.0;
            let ctx = Arc::new(Context::for_worker(
                &worker.name,
                &timer,
                &Default::default(),
                None,
            ));
            let role = SpanRole::Timer {
                service: &worker.name,
                timer: &timer,
            };
            let (span, ctx) = worker.worker_span(&timer, EntrypointKind::Timer, ctx, role);
            let service = Arc::clone(&worker.service);
            let t = Arc::clone(&timer);
            let result = worker
                .run_worker(&timer, EntrypointKind::Timer, ctx, &span, async move {
                    service.handle_timer(&t).await
                })
                .await;
            if let Err(e) = result {
                tracing::error!(service = %worker.name, timer = %timer, "timer failed: {e}");
            }
            drop(busy);
        });
        // No overlap: the next tick waits for this run (or for shutdown).
        tokio::select! {
            biased;
            () = s.cancel.cancelled() => break,
            _ = job => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// A job whose first step takes `busy` of CPU and which then waits `waits` times.
    fn job(busy: Duration, waits: usize, done: Arc<AtomicBool>) -> Job {
        Box::pin(async move {
            let until = std::time::Instant::now() + busy;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            for _ in 0..waits {
                tokio::task::yield_now().await;
            }
            done.store(true, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_full_service_waits_for_a_place_without_spinning() {
        let workers = Arc::new(Workers::new(1));
        assert!(workers.try_take());
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Arc::clone(&workers);
        // On a thread of its own, so that a spinning wait fails this test instead of hanging it.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let waited = rt.block_on(async {
                let never = std::future::pending::<()>();
                tokio::pin!(never);
                tokio::time::timeout(Duration::from_millis(100), w.take(never.as_mut()))
                    .await
                    .is_err()
            });
            let _ = tx.send(waited);
        });
        let waited = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the wait for a place yields instead of spinning");
        assert!(waited, "no place was free, so the wait timed out");
        workers.give_back();
        assert!(workers.try_take(), "the place given back can be taken");
    }

    #[tokio::test]
    async fn quick_first_steps_finish_on_the_loop_and_waiting_ones_go_on_as_tasks() {
        let mut first = FirstStep::default();
        let done = Arc::new(AtomicBool::new(false));
        let started = first
            .start(job(Duration::ZERO, 0, done.clone()), |_| {
                panic!("spawned a finished job")
            })
            .await;
        assert_eq!(started, Started::FinishedInline);
        assert!(done.load(Ordering::SeqCst));

        let done = Arc::new(AtomicBool::new(false));
        let mut handed = None;
        let started = first
            .start(job(Duration::ZERO, 3, done.clone()), |j| handed = Some(j))
            .await;
        assert_eq!(started, Started::ContinuedOnTask);
        assert!(
            !done.load(Ordering::SeqCst),
            "it waits, so it is not done yet"
        );
        // The job handed over goes on from where its first step stopped.
        tokio::spawn(handed.expect("handed to a task"))
            .await
            .unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(first.cooldown, 0, "neither step was slow");
    }

    #[tokio::test]
    async fn after_a_slow_first_step_the_next_workers_start_on_tasks() {
        let mut first = FirstStep::default();
        let slow = INLINE_STEP_LIMIT * 5;
        let started = first.start(job(slow, 0, Arc::default()), |_| {}).await;
        assert_eq!(
            started,
            Started::FinishedInline,
            "the slow one still ran where it was"
        );
        for i in 0..INLINE_COOLDOWN {
            let mut spawned = false;
            let started = first
                .start(job(Duration::ZERO, 0, Arc::default()), |_| spawned = true)
                .await;
            assert_eq!(started, Started::OnTask, "worker {i} of the cooldown");
            assert!(spawned);
        }
        // The cooldown over, quick ones run on the loop again.
        let started = first
            .start(job(Duration::ZERO, 0, Arc::default()), |_| {
                panic!("spawned")
            })
            .await;
        assert_eq!(started, Started::FinishedInline);
    }
}
