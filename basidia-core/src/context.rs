//! The context of a call: call ids, context data (auth token, user id, custom keys), deadline and
//! trace parent. A worker runs with its context set for the task, and every outgoing call and
//! dispatched event made from that task carries it on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::message::{HeaderValue, Headers};

/// The header key of the call id stack.
pub const CALL_ID_STACK: &str = "call_id_stack";
/// The header key of the deadline, in milliseconds since the Unix epoch.
pub const DEADLINE: &str = "deadline";
/// The header key of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// The header key of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";
/// How many entries the call id stack keeps (the newest ones).
pub const CALL_ID_STACK_LIMIT: usize = 11;

tokio::task_local! {
    static CURRENT: Arc<Context>;
}

/// The context of one worker (or of a standalone caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// This worker's call id, `<service>.<method>.<uuid>`.
    pub call_id: Option<String>,
    /// The chain of call ids that led here, this worker's last; at most
    /// [`CALL_ID_STACK_LIMIT`] entries.
    pub call_id_stack: Vec<String>,
    /// Context data: `auth_token`, `user_id`, `language`, `user_agent` and custom keys.
    pub data: Headers,
    /// When the work must be done by.
    pub deadline: Option<Instant>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Context::default()
    }

    /// Sets a context data key.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<HeaderValue>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(deadline_after(timeout));
        self
    }

    /// A context data value as a string.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(HeaderValue::as_str)
    }

    /// The auth token, if any.
    pub fn auth_token(&self) -> Option<&str> {
        self.get("auth_token")
    }

    /// The user id, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.get("user_id")
    }

    /// The W3C trace parent, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.get(TRACEPARENT)
    }

    /// The trace id of the W3C trace parent (32 hex digits), if there is a valid one: every
    /// worker's context has one.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent()
            .and_then(parse_traceparent)
            .map(|(trace_id, _)| trace_id)
    }

    /// The context of the task running now, if one was set.
    pub fn current() -> Option<Arc<Context>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Runs `fut` with `ctx` as the current context.
    pub fn scope<F: Future>(ctx: Arc<Context>, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(ctx, fut)
    }

    /// The context of a worker for an incoming message: the incoming context data, a fresh
    /// call id appended to the incoming call id stack, and the incoming deadline (a
    /// [`DEADLINE`] entry in `headers` stands in for a missing `deadline`).
    pub fn for_worker(
        service: &str,
        entrypoint: &str,
        headers: &Headers,
        deadline: Option<Instant>,
    ) -> Context {
        let call_id = new_call_id(service, entrypoint);
        let mut data = Headers::new();
        let mut stack = Vec::new();
        let mut deadline = deadline;
        for (key, value) in headers {
            match key.as_str() {
                CALL_ID_STACK => match value {
                    HeaderValue::List(items) => stack.clone_from(items),
                    HeaderValue::Str(s) => stack.push(s.clone()),
                    _ => {}
                },
                DEADLINE => {
                    if deadline.is_none() {
                        deadline = value.as_i64().map(instant_from_epoch_ms);
                    }
                }
                _ => {
                    data.insert(key.clone(), value.clone());
                }
            }
        }
        stack.push(call_id.clone());
        if stack.len() > CALL_ID_STACK_LIMIT {
            stack.drain(..stack.len() - CALL_ID_STACK_LIMIT);
        }
        // Every worker is a hop of a trace: the caller's trace if it sent a valid one, else a
        // new one; the worker's own span id is the parent its calls and events carry on. With
        // a span hook installed, the worker's span decides that id once it is opened
        // (`Context::adopt_span`), and meanwhile the entry holds the caller's, if valid.
        let own = match data
            .get(TRACEPARENT)
            .and_then(HeaderValue::as_str)
            .and_then(parse_traceparent)
        {
            Some(_) if crate::telemetry::hook().is_some() => None,
            None if crate::telemetry::hook().is_some() => {
                data.remove(TRACEPARENT);
                None
            }
            trace => Some(child_traceparent(trace)),
        };
        if let Some(own) = own {
            data.insert(TRACEPARENT.to_string(), HeaderValue::Str(own));
        }
        Context {
            call_id: Some(call_id),
            call_id_stack: stack,
            data,
            deadline,
        }
    }

    /// Gives this worker's context a span id of Basidia's own in the caller's trace, with the
    /// caller's flags, as a worker has without a span hook.
    pub(crate) fn adopt_own_span(&mut self) {
        let parent = self.traceparent().and_then(parse_traceparent);
        let own = child_traceparent(parent);
        self.data
            .insert(TRACEPARENT.to_string(), HeaderValue::Str(own));
    }

    /// Makes `span`, the span of this context's worker standing for `role`, a hop of the
    /// caller's trace through the installed span hook, and this context's trace parent the
    /// span's own; does nothing without a hook.
    pub(crate) fn adopt_span(
        &mut self,
        span: &tracing::Span,
        role: crate::telemetry::SpanRole<'_>,
        broker: &str,
    ) {
        let Some(hook) = crate::telemetry::hook() else {
            return;
        };
        let parent = self
            .traceparent()
            .filter(|p| parse_traceparent(p).is_some());
        let start = crate::telemetry::SpanStart::new(role, broker)
            .with_parent(parent, parent.and(self.get(TRACESTATE)));
        let own = hook
            .start(span, &start)
            .filter(|own| parse_traceparent(own).is_some())
            .unwrap_or_else(|| child_traceparent(parent.and_then(parse_traceparent)));
        self.data
            .insert(TRACEPARENT.to_string(), HeaderValue::Str(own));
    }

    /// The headers an outgoing message carries: the context data and the call id stack. (The
    /// deadline travels beside them: see [`Context::outgoing_deadline`].)
    pub fn outgoing_headers(&self) -> Headers {
        let mut headers = self.data.clone();
        if !self.call_id_stack.is_empty() {
            headers.insert(
                CALL_ID_STACK.to_string(),
                HeaderValue::List(self.call_id_stack.clone()),
            );
        }
        headers
    }

    /// The deadline an outgoing message carries: the earlier of the context's and `deadline`.
    pub fn outgoing_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        earlier(self.deadline, deadline)
    }
}

/// The trace id and flags of a W3C `traceparent` (version 00: `00-<32 hex>-<16 hex>-<2 hex>`,
/// lower case, ids not all zeros); `None` for anything else, which starts a new trace.
pub(crate) fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let b = value.as_bytes();
    if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let (trace, parent, flags) = (&b[3..35], &b[36..52], &b[53..55]);
    let zero = |s: &[u8]| s.iter().all(|&c| c == b'0');
    if !hex(trace) || !hex(parent) || !hex(flags) || zero(trace) || zero(parent) {
        return None;
    }
    Some((&value[3..35], &value[53..55]))
}

/// A `traceparent` for a new span: in `trace` (its id and flags) if given, else in a new,
/// sampled trace.
fn child_traceparent(trace: Option<(&str, &str)>) -> String {
    let random = uuid::Uuid::new_v4();
    let bytes = random.as_bytes();
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match trace {
        Some((trace_id, _)) => out.push_str(trace_id),
        None => push_hex(&mut out, uuid::Uuid::new_v4().as_bytes()),
    }
    out.push('-');
    push_hex(&mut out, &bytes[..8]);
    out.push('-');
    out.push_str(trace.map_or("01", |(_, flags)| flags));
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// `<service>.<entrypoint>.<uuid4>`, built without the formatting machinery (one per worker).
fn new_call_id(service: &str, entrypoint: &str) -> String {
    let mut uuid = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid);
    let mut id = String::with_capacity(service.len() + entrypoint.len() + uuid.len() + 2);
    id.push_str(service);
    id.push('.');
    id.push_str(entrypoint);
    id.push('.');
    id.push_str(uuid);
    id
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Converts an epoch-milliseconds deadline into an instant on tokio's clock.
pub fn instant_from_epoch_ms(ms: i64) -> Instant {
    let remaining = ms.saturating_sub(now_epoch_ms()).max(0);
    let remaining = Duration::from_millis(u64::try_from(remaining).unwrap_or(0));
    // A peer may send any number; an instant that far ahead would overflow the clock.
    Instant::now() + remaining.min(FARTHEST_DEADLINE)
}

/// The farthest ahead a deadline from the wire is taken to be; beyond it means "none to speak
/// of", and keeps instant arithmetic from overflowing.
const FARTHEST_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The instant `timeout` from now; a timeout past [`FARTHEST_DEADLINE`] (a configured
/// `Duration::MAX`, say) counts as that far, rather than overflow the clock.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(FARTHEST_DEADLINE)
}

/// The earlier of two deadlines; either alone if only one is set.
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The epoch milliseconds `after` from now.
pub fn epoch_ms_after(after: Duration) -> i64 {
    now_epoch_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

/// Converts an instant on tokio's clock into epoch milliseconds.
pub fn epoch_ms_from_instant(at: Instant) -> i64 {
    let remaining = at.saturating_duration_since(Instant::now());
    now_epoch_ms().saturating_add(i64::try_from(remaining.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_continues_a_valid_trace_and_starts_one_otherwise() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = Headers::new();
        headers.insert(TRACEPARENT.into(), HeaderValue::Str(given.into()));
        let ctx = Context::for_worker("svc", "m", &headers, None);
        assert_eq!(ctx.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let own = ctx.traceparent().unwrap();
        assert_eq!(own.len(), 55);
        assert_ne!(
            own, given,
            "the worker's own span id is what its calls carry"
        );
        assert!(own.ends_with("-01"));
        for forged in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "x",
            "",
        ] {
            headers.insert(TRACEPARENT.into(), HeaderValue::Str(forged.into()));
            let ctx = Context::for_worker("svc", "m", &headers, None);
            let id = ctx.trace_id().expect("a new trace");
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736", "{forged}");
            assert!(parse_traceparent(ctx.traceparent().unwrap()).is_some());
        }
        let fresh = Context::for_worker("svc", "m", &Headers::new(), None);
        let other = Context::for_worker("svc", "m", &Headers::new(), None);
        assert_ne!(fresh.trace_id(), other.trace_id());
    }

    #[test]
    fn a_timeout_past_a_year_does_not_overflow_the_clock() {
        let ctx = Context::new().with_timeout(Duration::MAX);
        let left = ctx.deadline.unwrap() - Instant::now();
        assert!(left <= FARTHEST_DEADLINE && left > FARTHEST_DEADLINE / 2);
        let _ = deadline_after(Duration::MAX);
    }

    #[test]
    fn worker_context_appends_and_caps_the_stack() {
        let incoming: Vec<String> = (0..20).map(|i| format!("a.b.{i}")).collect();
        let mut headers = Headers::new();
        headers.insert(CALL_ID_STACK.into(), HeaderValue::List(incoming));
        headers.insert("auth_token".into(), "tok".into());
        let ctx = Context::for_worker("svc", "m", &headers, None);
        assert_eq!(ctx.call_id_stack.len(), CALL_ID_STACK_LIMIT);
        assert_eq!(ctx.call_id_stack.last(), ctx.call_id.as_ref());
        let id = ctx.call_id.as_deref().unwrap();
        let uuid = id.strip_prefix("svc.m.").unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        assert_eq!(uuid.len(), 36);
        assert_eq!(ctx.call_id_stack[0], "a.b.10");
        assert_eq!(ctx.auth_token(), Some("tok"));
        let out = ctx.outgoing_headers();
        assert_eq!(out.get("auth_token"), Some(&HeaderValue::from("tok")));
        assert!(matches!(out.get(CALL_ID_STACK), Some(HeaderValue::List(l)) if l.len() == 11));
        assert!(
            !out.contains_key(DEADLINE),
            "the deadline travels beside the headers"
        );
    }

    #[tokio::test]
    async fn the_deadline_comes_from_the_message_or_its_headers_and_leaves_the_earlier() {
        let soon = Instant::now() + Duration::from_secs(5);
        let later = Instant::now() + Duration::from_secs(60);
        let mut headers = Headers::new();
        let ms = epoch_ms_from_instant(later);
        headers.insert(DEADLINE.into(), HeaderValue::Int(ms));
        let given = Context::for_worker("svc", "m", &headers, Some(soon));
        assert_eq!(
            given.deadline,
            Some(soon),
            "the message's own deadline wins"
        );
        assert!(
            given.get(DEADLINE).is_none(),
            "a deadline is no context data"
        );
        let from_headers = Context::for_worker("svc", "m", &headers, None);
        let d = from_headers.deadline.expect("a deadline header stands in");
        let off = d.max(later) - d.min(later);
        assert!(off <= Duration::from_millis(5), "{off:?}");
        assert_eq!(given.outgoing_deadline(Some(later)), Some(soon));
        assert_eq!(given.outgoing_deadline(None), Some(soon));
        assert_eq!(
            Context::default().outgoing_deadline(Some(later)),
            Some(later)
        );
        assert_eq!(Context::default().outgoing_deadline(None), None);
    }

    #[tokio::test]
    async fn current_is_task_scoped() {
        assert!(Context::current().is_none());
        let ctx = Arc::new(Context::new().with("user_id", "7"));
        let seen = Context::scope(ctx, async {
            Context::current().unwrap().user_id().map(String::from)
        })
        .await;
        assert_eq!(seen.as_deref(), Some("7"));
    }
}
