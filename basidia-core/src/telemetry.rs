//! Where a trace exporter meets the spans Basidia makes.
//!
//! Basidia opens a `tracing` span for every worker (RPC, event, HTTP, timer), every outgoing
//! call and every dispatched event, and W3C trace context travels on every hop whatever else
//! happens. With no [`SpanHook`] installed (the default) that is all: span ids on the wire are
//! Basidia's own, and nothing else is done per span.
//!
//! A host that exports traces installs one hook (basidia-runtime does, from `[telemetry]` and
//! the `OTEL_*` variables). For each span the hook is told what the span stands for
//! ([`SpanRole`]) and its remote parent; it links, names and types the span by the
//! OpenTelemetry semantic conventions, and gives back the `traceparent` the span's children
//! carry, so the ids on the wire are the exported spans' ids.

use std::sync::{Arc, OnceLock};

/// What a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanRole<'a> {
    /// A worker answering an RPC request (a server span).
    RpcServer {
        /// The service answering.
        service: &'a str,
        /// The method called.
        method: &'a str,
    },
    /// A call to another service (a client span).
    RpcClient {
        /// The service called.
        service: &'a str,
        /// The method called.
        method: &'a str,
    },
    /// An event dispatched (a messaging `send`, a producer span).
    Publish {
        /// The dispatching service.
        source: &'a str,
        /// The event type.
        event_type: &'a str,
    },
    /// An event handled (a messaging `process`, a consumer span).
    Process {
        /// The service that dispatched it.
        source: &'a str,
        /// The event type.
        event_type: &'a str,
        /// The handling service.
        service: &'a str,
        /// The handler.
        handler: &'a str,
    },
    /// An HTTP request (a server span).
    Http {
        /// The request method (`GET`, ...).
        method: &'a str,
        /// The route template (`/users/{user_id}`).
        route: &'a str,
        /// The service the route belongs to.
        service: &'a str,
    },
    /// A timer's run (an internal span).
    Timer {
        /// The service.
        service: &'a str,
        /// The timer method.
        timer: &'a str,
    },
}

/// A span's start: what it stands for, on which broker, and its remote parent.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SpanStart<'a> {
    /// What the span stands for.
    pub role: SpanRole<'a>,
    /// The broker's kind (`memory`, `amqp`, `nats`), as `Broker::kind` names it.
    pub broker: &'a str,
    /// The W3C `traceparent` of the span's parent: what the message or request came with, or
    /// for an outgoing call or event the sending context's; `None` for a span that starts a
    /// trace.
    pub parent: Option<&'a str>,
    /// The W3C `tracestate` that came with `parent`.
    pub tracestate: Option<&'a str>,
}

impl<'a> SpanStart<'a> {
    /// A span standing for `role` on `broker`, with no remote parent.
    pub fn new(role: SpanRole<'a>, broker: &'a str) -> Self {
        SpanStart {
            role,
            broker,
            parent: None,
            tracestate: None,
        }
    }

    /// The same with a remote parent.
    pub fn with_parent(mut self, parent: Option<&'a str>, tracestate: Option<&'a str>) -> Self {
        self.parent = parent;
        self.tracestate = tracestate;
        self
    }
}

/// How a span's work ended.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SpanEnd<'a> {
    /// The error's type (a remote error's `exc_type`, or an error kind) and message.
    pub error: Option<(&'a str, &'a str)>,
    /// The HTTP status answered, for an HTTP span.
    pub http_status: Option<u16>,
}

impl<'a> SpanEnd<'a> {
    /// Ended well.
    pub fn ok() -> Self {
        SpanEnd::default()
    }

    /// Ended with an error of type `kind`.
    pub fn error(kind: &'a str, message: &'a str) -> Self {
        SpanEnd {
            error: Some((kind, message)),
            http_status: None,
        }
    }

    /// The same with an HTTP status.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }
}

/// What a trace exporter does with Basidia's spans. Each method is called with the `tracing`
/// span in question, which it may extend with data of its own.
pub trait SpanHook: Send + Sync + 'static {
    /// `span` is starting as `start` says: link it to `start.parent` (when given), name and
    /// type it, and return the `traceparent` its children carry, or `None` to leave the ids to
    /// Basidia (when the span is not exported at all, say).
    fn start(&self, span: &tracing::Span, start: &SpanStart<'_>) -> Option<String>;

    /// `span`'s work ended as `end` says (the span itself closes when it is dropped).
    fn end(&self, span: &tracing::Span, end: &SpanEnd<'_>);

    /// Whether a caller's decision not to sample is final (a parent-based sampler). Then the
    /// worker of such a call is left to Basidia alone: its span and every span and event opened
    /// while it runs are marked [`suppressed`], for the exporter's layer to pass over, and its
    /// calls carry the decision on. `false` (the default) shows every span to the hook.
    fn follows_unsampled_parents(&self) -> bool {
        false
    }
}

tokio::task_local! {
    static UNSAMPLED: ();
}

/// Whether the code running now belongs to a worker whose trace is not sampled (see
/// [`SpanHook::follows_unsampled_parents`]): what an exporter's layer filters by.
pub fn suppressed() -> bool {
    UNSAMPLED.try_with(|_| ()).is_ok()
}

/// Whether a worker called with `traceparent` runs unsampled, left out of the exporter: a hook
/// that follows unsampled parents is installed, and the caller's valid parent is not sampled.
pub(crate) fn unsampled(traceparent: Option<&str>) -> bool {
    if !hook().is_some_and(|h| h.follows_unsampled_parents()) {
        return false;
    }
    // The sampled flag is the low bit of the flags.
    traceparent
        .and_then(crate::context::parse_traceparent)
        .and_then(|(_, flags)| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 0)
}

/// Opens a span with `open` marked as suppressed.
pub(crate) fn open_suppressed(open: impl FnOnce() -> tracing::Span) -> tracing::Span {
    UNSAMPLED.sync_scope((), open)
}

/// `fut`, run with everything it opens marked as suppressed.
pub(crate) fn run_suppressed<F: std::future::Future>(
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    UNSAMPLED.scope((), fut)
}

static HOOK: OnceLock<Arc<dyn SpanHook>> = OnceLock::new();

/// Installs the process's span hook; `false` (and `hook` unused) if one is installed already.
pub fn install(hook: Arc<dyn SpanHook>) -> bool {
    HOOK.set(hook).is_ok()
}

/// The installed span hook, if any.
pub fn hook() -> Option<&'static dyn SpanHook> {
    HOOK.get().map(|h| &**h)
}

/// The span of a message about to be sent (a call, an event) standing for `role`, opened by
/// `open`, when a span hook is installed and the sending context's trace is sampled; its
/// `traceparent`, a child of the context's, goes into the message's `headers`. `None` otherwise:
/// the message then carries the context's trace parent as it is.
pub(crate) fn outgoing(
    open: impl FnOnce() -> tracing::Span,
    role: SpanRole<'_>,
    broker: &str,
    ctx: Option<&crate::Context>,
    headers: &mut crate::message::Headers,
) -> Option<tracing::Span> {
    let hook = hook()?;
    let parent = ctx.and_then(crate::Context::traceparent);
    if unsampled(parent) {
        return None;
    }
    let span = open();
    let state = parent.and(ctx.and_then(|c| c.get(crate::context::TRACESTATE)));
    let start = SpanStart::new(role, broker).with_parent(parent, state);
    if let Some(own) = hook.start(&span, &start) {
        headers.insert(
            crate::context::TRACEPARENT.to_string(),
            crate::message::HeaderValue::Str(own),
        );
    }
    Some(span)
}

/// Tells the hook, if any, how `span`'s work ended.
pub(crate) fn end(span: &tracing::Span, end: SpanEnd<'_>) {
    if let Some(h) = hook() {
        h.end(span, &end);
    }
}
