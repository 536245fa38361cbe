//! The [`Service`] trait: the contract between a service and its container. The `#[service]`
//! macro implements it; a hand-written implementation works the same way.

use async_trait::async_trait;
use basidia_serializers::Format;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::broker::HandlerType;
use crate::envelope::Arguments;
use crate::error::{BoxError, RemoteError};
use crate::http::{HttpRequest, HttpResponse, HttpRouteDescription};

/// The name of the built-in introspection method every service answers.
pub const DESCRIBE_METHOD: &str = "__describe__";

/// A complete, encoded reply body produced by a service for one RPC request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedReply(pub Vec<u8>);

/// An event as a handler receives it.
#[derive(Debug, Clone)]
pub struct EventPayload {
    /// The format the event was encoded in.
    pub format: Format,
    /// The encoded payload.
    pub body: Bytes,
}

impl EventPayload {
    /// Decodes the payload; a payload of the wrong shape is a `MalformedRequest`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, RemoteError> {
        self.format
            .decode(&self.body)
            .map_err(|e| RemoteError::malformed(format!("undecodable event payload: {e}")))
    }
}

/// A service: named, self-describing, and able to handle RPC requests, events and timer ticks.
///
/// Handlers run with the worker's [`Context`](crate::Context) set for the task.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The service name, unique in the fleet.
    fn name(&self) -> &str;

    /// The entrypoints, for introspection and for the container to subscribe. RPC methods that
    /// are not listed here answer `MethodNotFound`.
    fn describe(&self) -> ServiceDescription;

    /// Handles one RPC request; an unknown method answers `MethodNotFound`.
    async fn handle_rpc(&self, method: &str, args: Arguments) -> Result<EncodedReply, RemoteError>;

    /// Handles one event for the handler method named `handler`.
    async fn handle_event(&self, handler: &str, event: EventPayload) -> Result<(), RemoteError> {
        let _ = event;
        Err(RemoteError::method_not_found(self.name(), handler))
    }

    /// Handles one HTTP request for the `#[http]` method named `route`: `Ok` with the response
    /// the method gave, or `Err` with the error it returned (or why its parameters could not be
    /// read from the request), which the container answers as problem details.
    async fn handle_http(
        &self,
        route: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, RemoteError> {
        let _ = request;
        Err(RemoteError::method_not_found(self.name(), route))
    }

    /// Handles one tick of the timer method named `timer`.
    async fn handle_timer(&self, timer: &str) -> Result<(), RemoteError> {
        Err(RemoteError::method_not_found(self.name(), timer))
    }

    /// Runs once before the service takes work.
    async fn on_start(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs once after the service has stopped taking work and in-flight work has finished.
    async fn on_stop(&self) {}
}

/// A service type with a name known at compile time; the `#[service]` macro implements it.
pub trait NamedService {
    /// The service name.
    const NAME: &'static str;
}

/// The JSON Schema (2020-12) of `T`, its definitions under `components/schemas` as an OpenAPI
/// document keeps them (`$ref`s point there).
#[cfg(feature = "schemars")]
pub(crate) fn schema_of<T: schemars::JsonSchema + ?Sized>() -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// One parameter of an RPC method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamDescription {
    /// The parameter name (also its keyword).
    pub name: String,
    /// The Rust type, as written.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its JSON Schema, for a type that implements `schemars::JsonSchema` (with the `schemars`
    /// feature); definitions it refers to are under its `components/schemas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// One RPC method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDescription {
    /// The method name.
    pub name: String,
    /// Its parameters, in positional order.
    pub params: Vec<ParamDescription>,
    /// The return type, as written.
    pub returns: String,
    /// The JSON Schema of what it returns on success, as [`ParamDescription::schema`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns_schema: Option<serde_json::Value>,
    /// The doc comment.
    #[serde(default)]
    pub doc: String,
    /// The roles a caller needs (any one of them), checked against the caller's verified token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// One event handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHandlerDescription {
    /// The handler method.
    pub name: String,
    /// The source service.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// How handlers share events.
    pub handler_type: HandlerType,
    /// The payload type, as written.
    pub payload: String,
    /// How long one run of the handler may take, in milliseconds (`timeout = "..."` on the
    /// attribute); `None` takes the service's `event_handler_timeout`. The handler's calls get
    /// this as their deadline, counted from when the event is taken up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerDescription {
    /// The timer method.
    pub name: String,
    /// The interval in milliseconds.
    pub interval_ms: u64,
    /// Whether it fires once at start.
    pub eager: bool,
}

/// Everything a service offers, as the introspection call returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceDescription {
    /// The service name.
    pub name: String,
    /// RPC methods.
    pub rpc: Vec<MethodDescription>,
    /// Event handlers.
    pub events: Vec<EventHandlerDescription>,
    /// Timers.
    pub timers: Vec<TimerDescription>,
    /// HTTP routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRouteDescription>,
}

impl ServiceDescription {
    /// The RPC method named `name`.
    pub fn method(&self, name: &str) -> Option<&MethodDescription> {
        self.rpc.iter().find(|m| m.name == name)
    }
}

/// What an event handler or timer may return: `()` or `Result<(), E>` with a displayable `E`.
pub trait IntoHandlerResult {
    /// `Ok` or the failure as a remote error.
    fn into_handler_result(self) -> Result<(), RemoteError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), RemoteError> {
        Ok(())
    }
}

impl<E: std::fmt::Display> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), RemoteError> {
        self.map_err(|e| RemoteError::new(crate::ErrorKind::Handler, e.to_string()))
    }
}
