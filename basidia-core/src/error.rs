//! Errors: the wire-level [`RemoteError`], the caller-side [`RpcError`], broker failures
//! ([`BrokerError`]) and the crate-wide [`Error`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kinds of failure Basidia itself reports, on the wire and to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No service of that name is reachable.
    UnknownService,
    /// The service has no entrypoint of that name.
    MethodNotFound,
    /// The request could not be decoded (bad content type, bad envelope).
    MalformedRequest,
    /// The arguments do not match the method's parameters.
    IncorrectSignature,
    /// The deadline passed before a reply arrived.
    Timeout,
    /// The broker connection dropped while the call was in flight.
    ConnectionLost,
    /// The handler itself failed (returned an error or panicked).
    Handler,
    /// Anything else (encoding, broker faults).
    Other,
}

impl ErrorKind {
    /// The `exc_type` this kind travels under.
    pub const fn exc_type(self) -> &'static str {
        match self {
            ErrorKind::UnknownService => "UnknownService",
            ErrorKind::MethodNotFound => "MethodNotFound",
            ErrorKind::MalformedRequest => "MalformedRequest",
            ErrorKind::IncorrectSignature => "IncorrectSignature",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::ConnectionLost => "ConnectionLost",
            ErrorKind::Handler => "HandlerError",
            ErrorKind::Other => "Error",
        }
    }

    /// The `exc_path` this kind travels under; the built-in kinds use the paths Nameko peers
    /// recognise so that a Python caller gets its own exception class back.
    pub const fn exc_path(self) -> &'static str {
        match self {
            ErrorKind::UnknownService => "nameko.exceptions.UnknownService",
            ErrorKind::MethodNotFound => "nameko.exceptions.MethodNotFound",
            ErrorKind::MalformedRequest => "nameko.exceptions.MalformedRequest",
            ErrorKind::IncorrectSignature => "nameko.exceptions.IncorrectSignature",
            ErrorKind::Timeout => "basidia.Timeout",
            ErrorKind::ConnectionLost => "basidia.ConnectionLost",
            ErrorKind::Handler => "basidia.HandlerError",
            ErrorKind::Other => "basidia.Error",
        }
    }

    fn from_exc_type(exc_type: &str) -> ErrorKind {
        match exc_type {
            "UnknownService" => ErrorKind::UnknownService,
            "MethodNotFound" => ErrorKind::MethodNotFound,
            "MalformedRequest" => ErrorKind::MalformedRequest,
            "IncorrectSignature" => ErrorKind::IncorrectSignature,
            "Timeout" => ErrorKind::Timeout,
            "ConnectionLost" => ErrorKind::ConnectionLost,
            _ => ErrorKind::Handler,
        }
    }
}

/// An error as it travels in a reply, in Nameko's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The error's type name, e.g. `MethodNotFound` or a user error type's name.
    pub exc_type: String,
    /// The error's full path, e.g. `nameko.exceptions.MethodNotFound` or `my_crate.UserError`.
    #[serde(default)]
    pub exc_path: String,
    /// Structured data: for a user error, its serialized value is the first element.
    #[serde(default)]
    pub exc_args: Vec<serde_json::Value>,
    /// A human-readable message.
    #[serde(default, deserialize_with = "string_or_any")]
    pub value: String,
}

fn string_or_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

impl RemoteError {
    /// A built-in error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let value = message.into();
        RemoteError {
            exc_type: kind.exc_type().to_string(),
            exc_path: kind.exc_path().to_string(),
            exc_args: vec![serde_json::Value::String(value.clone())],
            value,
        }
    }

    /// `MethodNotFound` for `service.method`.
    pub fn method_not_found(service: &str, method: &str) -> Self {
        Self::new(
            ErrorKind::MethodNotFound,
            format!("{service} has no method {method:?}"),
        )
    }

    /// `IncorrectSignature` with an explanation.
    pub fn incorrect_signature(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::IncorrectSignature, message)
    }

    /// `MalformedRequest` with an explanation.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedRequest, message)
    }

    /// A user error: the type name of `E`, its serialized data and its message.
    pub fn from_user_error<E: Serialize + fmt::Display + ?Sized>(error: &E) -> Self {
        let full = std::any::type_name::<E>();
        let base = full.split('<').next().unwrap_or(full);
        let exc_type = base.rsplit("::").next().unwrap_or(base).to_string();
        let data = serde_json::to_value(error).unwrap_or(serde_json::Value::Null);
        RemoteError {
            exc_type,
            exc_path: base.replace("::", "."),
            exc_args: vec![data],
            value: error.to_string(),
        }
    }

    /// The kind of error, for the built-in kinds; user errors are [`ErrorKind::Handler`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_exc_type(&self.exc_type)
    }

    /// Whether this error's type is named `exc_type`.
    pub fn is(&self, exc_type: &str) -> bool {
        self.exc_type == exc_type
    }

    /// Decodes the user error carried in `exc_args[0]`, if its type name is `E`'s.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        let full = std::any::type_name::<E>();
        let base = full.split('<').next().unwrap_or(full);
        let name = base.rsplit("::").next().unwrap_or(base);
        if name != self.exc_type {
            return None;
        }
        self.exc_args
            .first()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.value)
    }
}

impl std::error::Error for RemoteError {}

/// A failure of the broker or its connection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No queue or subscriber exists for the service.
    #[error("unknown service {0:?}: nothing is serving it")]
    UnknownService(String),
    /// No reply before the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection dropped; calls in flight at that moment fail with this.
    #[error("connection to the broker lost: {reason}")]
    ConnectionLost {
        /// What happened.
        reason: String,
        /// The client library's error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The broker handle was closed.
    #[error("the broker is closed")]
    Closed,
    /// The broker refuses to take messages for now (RabbitMQ blocks publishing connections
    /// under a memory or disk alarm) and the deadline passed while waiting.
    #[error("the broker is not taking messages ({reason}); gave up after {after:?}")]
    Blocked {
        /// What the broker said.
        reason: String,
        /// How long the publish waited.
        after: Duration,
    },
    /// A payload exceeds what the broker accepts.
    #[error("payload of {size} bytes exceeds the broker's limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A request had no `reply_to`, so no reply can be sent.
    #[error("the request has no reply address")]
    NoReplyTo,
    /// The URL could not be used.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),
    /// Any other failure reported by the backend.
    #[error("broker error: {reason}")]
    Backend {
        /// What failed.
        reason: String,
        /// The client library's error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
}

/// The error a caller gets from an RPC call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The service answered with an error (a user error or a built-in kind).
    #[error("remote error: {0}")]
    Remote(RemoteError),
    /// Nothing serves the named service.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// No reply arrived before the deadline.
    #[error("call to {service}.{method} timed out after {after:?}")]
    Timeout {
        /// The target service.
        service: String,
        /// The method called.
        method: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The connection dropped while the call was in flight.
    #[error("connection lost during the call: {reason}")]
    ConnectionLost {
        /// What happened.
        reason: String,
        /// The client library's error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The arguments could not be encoded.
    #[error("cannot encode the request: {reason}")]
    Encode {
        /// What could not be encoded.
        reason: String,
        /// The encoder's error.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The reply could not be decoded into the expected type.
    #[error("cannot decode the reply: {reason}")]
    Decode {
        /// What could not be decoded.
        reason: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Another broker failure.
    #[error(transparent)]
    Broker(BrokerError),
}

impl RpcError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RpcError::Remote(r) => r.kind(),
            RpcError::UnknownService(_) => ErrorKind::UnknownService,
            RpcError::Timeout { .. } => ErrorKind::Timeout,
            RpcError::ConnectionLost { .. } => ErrorKind::ConnectionLost,
            RpcError::Encode { .. } | RpcError::Decode { .. } | RpcError::Broker(_) => {
                ErrorKind::Other
            }
        }
    }

    /// The remote error, if the service answered with one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            RpcError::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// Decodes a user error of type `E` carried by a remote error.
    pub fn decode_remote<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        self.remote().and_then(RemoteError::decode)
    }

    /// Converts this error into the [`RemoteError`] a handler sends on: a remote error passes
    /// through unchanged, so a chain of services reports the original failure.
    pub fn to_remote(&self) -> RemoteError {
        match self {
            RpcError::Remote(r) => r.clone(),
            other => RemoteError::new(other.kind(), other.to_string()),
        }
    }

    pub(crate) fn from_broker(err: BrokerError, service: &str, method: &str) -> Self {
        match err {
            BrokerError::UnknownService(s) => RpcError::UnknownService(s),
            BrokerError::Timeout(after) => RpcError::Timeout {
                service: service.to_string(),
                method: method.to_string(),
                after,
            },
            BrokerError::ConnectionLost { reason, source } => {
                RpcError::ConnectionLost { reason, source }
            }
            other => RpcError::Broker(other),
        }
    }
}

impl RpcError {
    pub(crate) fn encode(e: basidia_serializers::Error) -> Self {
        RpcError::Encode {
            reason: e.to_string(),
            source: Some(ErrorSource::new(e)),
        }
    }

    pub(crate) fn decode(e: basidia_serializers::Error) -> Self {
        RpcError::Decode {
            reason: e.to_string(),
            source: Some(ErrorSource::new(e)),
        }
    }

    pub(crate) fn decode_msg(reason: impl Into<String>) -> Self {
        RpcError::Decode {
            reason: reason.into(),
            source: None,
        }
    }
}

impl From<RemoteError> for RpcError {
    fn from(r: RemoteError) -> Self {
        RpcError::Remote(r)
    }
}

/// A lower-level error kept as the source of a [`BrokerError`] or [`RpcError`]: shared, so that
/// the errors stay `Clone` (one failure often fails many calls). It dereferences to the error
/// itself, which is what `source()` returns, so a caller can downcast it to the client
/// library's type.
#[derive(Clone)]
pub struct ErrorSource(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ErrorSource {
    /// Keeps `e`.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ErrorSource(std::sync::Arc::new(e))
    }

    /// Keeps a boxed error.
    pub fn from_boxed(e: BoxError) -> Self {
        ErrorSource(std::sync::Arc::from(e))
    }
}

// Deliberately not `Error` itself: `source()` then hands out the wrapped error, not this
// wrapper, and downcasting reaches the client library's type.
impl std::ops::Deref for ErrorSource {
    type Target = dyn std::error::Error + Send + Sync + 'static;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A boxed error from user code (dependency providers, lifecycle hooks).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the core crate: setting services up, starting and stopping them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A broker operation failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A payload could not be encoded or decoded.
    #[error(transparent)]
    Serialization(#[from] basidia_serializers::Error),
    /// A dependency could not be built or started.
    #[error("dependency {field:?} of {service}: {message}")]
    Dependency {
        /// The service.
        service: String,
        /// The field that holds the dependency.
        field: String,
        /// What went wrong.
        message: String,
        /// The provider's error, when it reported one.
        #[source]
        source: Option<BoxError>,
    },
    /// A configuration value is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A service's startup hook or one of its dependencies failed to start.
    #[error("service {service} failed to start: {message}")]
    Startup {
        /// The service.
        service: String,
        /// What went wrong.
        message: String,
        /// The hook's or the dependency's error.
        #[source]
        source: Option<BoxError>,
    },
    /// Two services with one name were added to a runner.
    #[error("service {0:?} was added twice")]
    DuplicateService(String),
}

/// Result type of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
