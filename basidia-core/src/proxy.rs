//! Outgoing RPC: the dynamic [`RpcProxy`], the per-service [`ServiceProxy`] that generated
//! clients wrap, and the [`Client`] trait they implement.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use basidia_serializers::Format;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::broker::SharedBroker;
use crate::context::Context;
use crate::envelope::{decode_reply, encode_request, NoKwargs};
use crate::error::{BrokerError, RpcError};
use crate::message::Message;
use crate::service::{ServiceDescription, DESCRIBE_METHOD};
use crate::telemetry::{SpanEnd, SpanRole};

/// The default deadline of a call when nothing else sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of outgoing calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOptions {
    /// The deadline of each call (a worker's own deadline shortens it).
    pub timeout: Duration,
    /// The request format.
    pub format: Format,
    /// The message priority, on brokers that support it.
    pub priority: Option<u8>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: DEFAULT_TIMEOUT,
            format: Format::MsgPack,
            priority: None,
        }
    }
}

/// Calls any service by name, with any serializable arguments.
///
/// The context of the current worker (call id stack, context data, deadline) is carried on.
#[derive(Clone)]
pub struct RpcProxy {
    broker: SharedBroker,
    options: CallOptions,
}

impl fmt::Debug for RpcProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcProxy")
            .field("broker", &self.broker.kind())
            .field("options", &self.options)
            .finish()
    }
}

impl RpcProxy {
    /// A proxy over `broker` with default options.
    pub fn new(broker: SharedBroker) -> Self {
        RpcProxy {
            broker,
            options: CallOptions::default(),
        }
    }

    /// The same proxy with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The same proxy with another request format.
    pub fn with_format(mut self, format: Format) -> Self {
        self.options.format = format;
        self
    }

    /// The same proxy with a message priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// The call options.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The broker.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// A proxy bound to one service.
    pub fn service(&self, name: &str) -> ServiceProxy {
        ServiceProxy {
            inner: self.clone(),
            service: Arc::from(name),
        }
    }

    /// Calls `service.method` with positional arguments `args` (anything that serializes as a
    /// sequence, such as a tuple, array or `Vec`) and keyword arguments `kwargs` (anything that
    /// serializes as a map).
    pub async fn call<R, A, K>(
        &self,
        service: &str,
        method: &str,
        args: &A,
        kwargs: &K,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        let began = tokio::time::Instant::now();
        let result = self.call_unmetered(service, method, args, kwargs).await;
        let outcome = crate::metrics::outcome(result.as_ref().err().map(RpcError::kind));
        crate::metrics::registry()
            .calls(service, method)
            .record(outcome, began.elapsed());
        result
    }

    async fn call_unmetered<R, A, K>(
        &self,
        service: &str,
        method: &str,
        args: &A,
        kwargs: &K,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        let ctx = Context::current();
        let timeout = self.timeout(ctx.as_deref(), service, method)?;
        let mut headers = ctx
            .as_ref()
            .map(|c| c.outgoing_headers())
            .unwrap_or_default();
        // The call's span, with an exporter: its parent is the context's trace parent (the
        // worker's own span, or for a context built from a request, as the gateway's, the
        // request's caller).
        let span = crate::telemetry::outgoing(
            || {
                tracing::info_span!(
                    "rpc.client",
                    otel.name = tracing::field::Empty,
                    otel.kind = tracing::field::Empty,
                )
            },
            SpanRole::RpcClient { service, method },
            self.broker.kind(),
            ctx.as_deref(),
            &mut headers,
        );
        let format = self.options.format;
        // `timeout` is already cut to the context's deadline. Where the metadata travels (the
        // message's headers, or the envelope) is the backend's to decide.
        let message = Message {
            body: encode_request(format, args, kwargs)?.into(),
            headers,
            deadline: Some(crate::context::deadline_after(timeout)),
            ..Message::default()
        };
        let result = match &span {
            None => self.round_trip(service, method, message, timeout).await,
            Some(span) => {
                let result = self
                    .round_trip(service, method, message, timeout)
                    .instrument(span.clone())
                    .await;
                match &result {
                    Ok(_) => crate::telemetry::end(span, SpanEnd::ok()),
                    Err(e) => {
                        let text = e.to_string();
                        crate::telemetry::end(span, SpanEnd::error(error_type(e), &text));
                    }
                }
                result
            }
        };
        result
    }

    /// Sends a request and decodes its reply: the result, or the remote error it carries.
    async fn round_trip<R: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<R, RpcError> {
        let reply = self.send(service, method, message, timeout).await?;
        let format = reply
            .content_type
            .as_deref()
            .and_then(Format::from_content_type)
            .ok_or_else(|| {
                RpcError::decode_msg(format!(
                    "reply has unsupported content type {:?}",
                    reply.content_type
                ))
            })?;
        decode_reply(format, &reply.body)
    }

    /// Calls with dynamic JSON arguments: an array is positional, an object is keyword
    /// arguments, null is no arguments, any other value is one positional argument.
    pub async fn call_json(
        &self,
        service: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, RpcError> {
        let value: basidia_serializers::Value = match args {
            serde_json::Value::Object(map) => {
                return self
                    .call(service, method, &[(); 0], &map)
                    .await
                    .map(json_of)
            }
            serde_json::Value::Array(items) => {
                return self
                    .call(service, method, &items, &NoKwargs)
                    .await
                    .map(json_of)
            }
            serde_json::Value::Null => {
                return self
                    .call(service, method, &[(); 0], &NoKwargs)
                    .await
                    .map(json_of)
            }
            other => self.call(service, method, &[other], &NoKwargs).await?,
        };
        Ok(json_of(value))
    }

    /// Asks a service to describe itself (the built-in introspection call).
    pub async fn describe(&self, service: &str) -> Result<ServiceDescription, RpcError> {
        self.call(service, DESCRIBE_METHOD, &[(); 0], &NoKwargs)
            .await
    }

    /// The time a call may take: the proxy's timeout, cut to the current worker's deadline.
    fn timeout(
        &self,
        ctx: Option<&Context>,
        service: &str,
        method: &str,
    ) -> Result<Duration, RpcError> {
        let mut timeout = self.options.timeout;
        if let Some(deadline) = ctx.and_then(|c| c.deadline) {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        if timeout.is_zero() {
            return Err(RpcError::Timeout {
                service: service.to_string(),
                method: method.to_string(),
                after: Duration::ZERO,
            });
        }
        Ok(timeout)
    }

    async fn send(
        &self,
        service: &str,
        method: &str,
        mut message: Message,
        timeout: Duration,
    ) -> Result<Message, RpcError> {
        if let Some(max) = self.broker.max_payload() {
            if message.body.len() > max {
                return Err(RpcError::Broker(BrokerError::PayloadTooLarge {
                    size: message.body.len(),
                    max,
                }));
            }
        }
        message.content_type = Some(Cow::Borrowed(self.options.format.content_type()));
        message.priority = self.options.priority;
        let span = tracing::debug_span!("rpc.call", service, method);
        self.broker
            .call(service, method, message, timeout)
            .instrument(span)
            .await
            .map_err(|e| RpcError::from_broker(e, service, method))
    }
}

/// The type a failed call is recorded under: the remote error's, or the kind of failure.
pub(crate) fn error_type(error: &RpcError) -> &str {
    match error {
        RpcError::Remote(r) => &r.exc_type,
        other => other.kind().exc_type(),
    }
}

fn json_of(value: basidia_serializers::Value) -> serde_json::Value {
    basidia_serializers::value_to_json(&value)
}

/// A proxy bound to one service; generated clients wrap one.
#[derive(Clone, Debug)]
pub struct ServiceProxy {
    inner: RpcProxy,
    service: Arc<str>,
}

impl ServiceProxy {
    /// The target service.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The underlying dynamic proxy.
    pub fn rpc_proxy(&self) -> &RpcProxy {
        &self.inner
    }

    /// The same proxy with another deadline per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut p = self.clone();
        p.inner.options.timeout = timeout;
        p
    }

    /// The same proxy with a message priority.
    pub fn with_priority(&self, priority: u8) -> Self {
        let mut p = self.clone();
        p.inner.options.priority = Some(priority);
        p
    }

    /// Calls `method` with positional and keyword arguments.
    pub async fn call<R, A, K>(&self, method: &str, args: &A, kwargs: &K) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        self.inner.call(&self.service, method, args, kwargs).await
    }

    /// Calls `method` with positional arguments only.
    pub async fn call_args<R, A>(&self, method: &str, args: &A) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.inner
            .call(&self.service, method, args, &NoKwargs)
            .await
    }

    /// Asks the service to describe itself.
    pub async fn describe(&self) -> Result<ServiceDescription, RpcError> {
        self.inner.describe(&self.service).await
    }
}

/// A typed client of one service; generated by `#[service]` and `#[client]`.
pub trait Client: Sized + Send + Sync + 'static {
    /// The service the client calls.
    const SERVICE: &'static str;

    /// Wraps a proxy bound to [`Self::SERVICE`].
    fn from_proxy(proxy: ServiceProxy) -> Self;

    /// The wrapped proxy.
    fn proxy(&self) -> &ServiceProxy;

    /// A client calling through `rpc`.
    fn connect(rpc: &RpcProxy) -> Self {
        Self::from_proxy(rpc.service(Self::SERVICE))
    }
}
