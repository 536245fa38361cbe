//! # Basidia
//!
//! Nameko-style message-broker microservices for Rust. A service is a plain Rust type whose
//! methods are entrypoints; services call each other through typed clients and exchange events;
//! everything travels over a pluggable broker (in-memory, RabbitMQ speaking Nameko's protocol,
//! NATS) in msgpack or JSON.
//!
//! ```
//! use basidia::prelude::*;
//!
//! #[service]
//! pub struct GreetingService;
//!
//! #[service(name = "greeting_service")]
//! impl GreetingService {
//!     /// Greets someone.
//!     #[rpc]
//!     async fn hello(&self, name: String) -> String {
//!         format!("Hello, {name}!")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::new();
//! let mut runner = Runner::new(std::sync::Arc::new(broker.clone()));
//! runner.add::<GreetingService>();
//! let running = runner.start().await?;
//!
//! let client = GreetingServiceClient::connect(&running.rpc_proxy());
//! assert_eq!(client.hello("World".into()).await?, "Hello, World!");
//! running.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Entrypoints
//! - `#[rpc]`: parameters decode from positional arguments or from keyword arguments by name;
//!   `Option` parameters may be left out. Returning `Result<T, E>` with `E: Serialize + Display`
//!   sends a [`RemoteError`] carrying `E`'s type name and data; returning `Result<T, RpcError>`
//!   passes a downstream failure through unchanged.
//! - `#[event_handler("source_service", "event.type")]`, with
//!   `handler_type = "service_pool" | "singleton" | "broadcast"`: one parameter, the payload.
//!   A failing handler is retried up to `event_max_deliveries`, then dead-lettered.
//! - `#[timer(interval = "30s")]` (add `eager` to fire at start): no parameters; runs never
//!   overlap.
//! - `#[on_start]` and `#[on_stop]`: lifecycle hooks.
//!
//! ## Dependencies
//! `#[service]` on the struct builds each field: [`Dependency<C>`] (a typed client),
//! [`RpcProxy`] (dynamic calls), [`EventDispatcher`], [`Config<T>`] (a configuration section),
//! [`Provided<P>`] (a user-written [`DependencyProvider`]). Field options:
//! `#[inject(timeout = "2s")]`, `#[inject(format = "json")]` (for peers that accept only JSON,
//! as a default-configured Nameko service does), `#[inject(section = "smtp")]`,
//! `#[inject(default)]`.
//!
//! ## Crates
//! Only this facade is the stable surface. `crate = "..."` on `#[service]` and `#[client]` names
//! this crate when it is renamed in `Cargo.toml`.

#![cfg_attr(docsrs, feature(doc_cfg))]

// The surface is this explicit list; `tests/public_api.rs` keeps a snapshot of it, so that an
// item joins or leaves it only on purpose.

// Writing services and their dependencies.
pub use basidia_core::{
    Arguments, Client, Config, Context, Dependency, DependencyProvider, EncodedReply,
    EntrypointKind, EventDispatcher, EventPayload, Inject, InjectContext, NamedService, Provided,
    Service, WorkerInfo,
};
pub use basidia_macros::{client, event_handler, http, rpc, service, timer};

// Running services.
pub use basidia_core::{
    parse_duration, shutdown_signal, Runner, RunnerConfig, RunningServices, ServiceOptions,
    ServiceOverrides, ServiceSettings, WorkerEvent, WorkerEvents,
};

// Calling services.
pub use basidia_core::{CallOptions, NoKwargs, RpcProxy, ServiceProxy, DEFAULT_TIMEOUT};
pub use basidia_serializers::{Format, Value};

// Errors.
pub use basidia_core::{BoxError, BrokerError, Error, ErrorKind, RemoteError, RpcError};

// What services say about themselves (`describe`, the shell's help).
pub use basidia_core::{
    EventHandlerDescription, HandlerType, MethodDescription, ParamDescription, ServiceDescription,
    TimerDescription,
};

// Brokers.
#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub use basidia_amqp::{AmqpBroker, AmqpOptions};
pub use basidia_core::{
    Broker, HeaderValue, Headers, InstanceInfo, Message, Replay, SharedBroker, StoredDeadLetter,
};
pub use basidia_memory::{DeadLetter, MemoryBroker};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use basidia_nats::{NatsBroker, NatsOptions};

/// What a broker backend implements, for a backend of one's own: the [`Broker`] trait is at the
/// crate root; these are the types its methods take and return. `basidia-conformance` checks an
/// implementation against the contract.
pub mod broker {
    pub use basidia_core::{
        delivery_channel, event_exchange_name, rpc_queue_name, ConsumeOptions, Delivery,
        DeliveryReceiver, DeliverySender, EventBinding, Settle, Subscription,
    };
}

/// Opens a broker by URL scheme: `memory://` (a new in-process broker), `amqp://` or
/// `amqps://` (RabbitMQ; needs the `amqp` feature), `nats://` or `tls://` (NATS; needs the
/// `nats` feature).
pub async fn connect(url: &str) -> Result<SharedBroker, BrokerError> {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(std::sync::Arc::new(MemoryBroker::new())),
        #[cfg(feature = "amqp")]
        "amqp" | "amqps" => Ok(std::sync::Arc::new(AmqpBroker::connect(url).await?)),
        #[cfg(not(feature = "amqp"))]
        "amqp" | "amqps" => Err(BrokerError::InvalidUrl(
            "this build has no AMQP support: enable the `amqp` feature".into(),
        )),
        #[cfg(feature = "nats")]
        "nats" | "tls" => Ok(std::sync::Arc::new(NatsBroker::connect(url).await?)),
        #[cfg(not(feature = "nats"))]
        "nats" | "tls" => Err(BrokerError::InvalidUrl(
            "this build has no NATS support: enable the `nats` feature".into(),
        )),
        other => Err(BrokerError::InvalidUrl(format!(
            "unknown broker scheme {other:?}: expected memory://, amqp://, amqps://, nats:// or tls://"
        ))),
    }
}

/// The HTTP edge (feature `http`): what `#[http]` methods take and return, the server, health.
///
/// ```
/// use basidia::http::{Json, StatusCode};
/// use basidia::prelude::*;
///
/// #[derive(serde::Serialize)]
/// struct Greeting {
///     message: String,
/// }
///
/// #[service]
/// pub struct ApiService;
///
/// #[service(name = "api_service")]
/// impl ApiService {
///     /// `GET /greet/World` answers `{"message": "Hello, World!"}`.
///     #[http(GET, "/greet/{name}")]
///     async fn greet(&self, name: String) -> Json<Greeting> {
///         Json(Greeting { message: format!("Hello, {name}!") })
///     }
///
///     /// `POST /echo` answers 201 with the JSON it was sent.
///     #[http(POST, "/echo")]
///     async fn echo(&self, body: Json<serde_json::Value>) -> (StatusCode, Json<serde_json::Value>) {
///         (StatusCode::CREATED, body)
///     }
/// }
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http {
    pub use basidia_core::http::{
        HttpParamDescription, HttpRequest, HttpResponse, HttpRouteDescription, ParamSource,
    };
    pub use basidia_core::{HttpEndpoint, ServiceProbe};
    pub use basidia_http::{
        call, router, Body, Bytes, CorsConfig, Edge, Form, GatewayConfig, HeaderMap, Health,
        HealthCheck, Html, HttpConfig, HttpError, HttpServer, IntoResponse, Json, Method, Query,
        Request, Response, StatusCode, Uri, DEFAULT_ADDRESS,
    };
}

/// Roles: what `roles = [...]` on `#[rpc]` and `#[http]` checks callers' tokens with. The JWT
/// verifier is the `auth` feature's.
pub mod auth {
    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    pub use basidia_auth::{AuthConfigError, JwtConfig, JwtVerifier};
    pub use basidia_core::auth::{forbidden, unauthorized, TokenVerifier, Verified, USER_ID};
}

/// The process's metrics, as `/metrics` serves them: `metrics::registry().render()` gives the
/// Prometheus text of every series.
pub mod metrics {
    pub use basidia_core::metrics::{registry, Registry, MAX_SERIES};
}

/// Everything a service module needs: `use basidia::prelude::*;`.
pub mod prelude {
    pub use crate::{
        client, event_handler, http, rpc, service, timer, Client, Config, Context, Dependency,
        DependencyProvider, EventDispatcher, MemoryBroker, Provided, RemoteError, RpcError,
        RpcProxy, Runner, Service,
    };
}

/// Support for generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use basidia_core::http::{
        HttpParamDescription, HttpRequest, HttpResponse, HttpRouteDescription, ParamSource,
    };
    pub use basidia_core::private::*;
    pub use basidia_core::{
        Arguments, BoxError, Client, EncodedReply, Error, EventHandlerDescription, EventPayload,
        FieldOptions, Format, HandlerType, Inject, InjectContext, IntoHandlerResult,
        MethodDescription, NamedService, ParamDescription, RemoteError, RpcError, Service,
        ServiceDescription, ServiceProxy, TimerDescription,
    };
    pub use serde;

    /// What `#[http]` methods generate code against (the `http` feature).
    #[cfg(feature = "http")]
    pub mod http {
        pub use basidia_http::__private::*;
    }
}
