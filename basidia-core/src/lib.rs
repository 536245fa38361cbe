//! Basidia's core: the [`Service`] contract, containers and the [`Runner`], the call
//! [`Context`], errors, dependencies and the [`Broker`] contract.
//!
//! Users depend on the `basidia` facade crate, which re-exports what they need; this crate's
//! API follows the facade's version but only the facade is the stable surface.

pub mod auth;
pub mod broker;
pub mod config;
mod container;
pub mod context;
pub mod dependency;
pub mod envelope;
pub mod error;
pub mod http;
#[doc(hidden)]
pub mod internal;
pub mod message;
pub mod metrics;
#[doc(hidden)]
pub mod private;
pub mod proxy;
pub mod runner;
pub mod service;
pub mod telemetry;

pub use broker::{
    delivery_channel, event_exchange_name, rpc_queue_name, Broker, ConsumeOptions, Delivery,
    DeliveryReceiver, DeliverySender, EventBinding, HandlerType, InstanceInfo, Replay, Settle,
    SharedBroker, StoredDeadLetter, Subscription,
};
pub use config::{parse_duration, redact_url, RunnerConfig, ServiceOverrides, ServiceSettings};
pub use container::{HttpEndpoint, ServiceProbe, WorkerEvent, WorkerEvents};
pub use context::Context;
pub use dependency::{
    Config, Dependency, DependencyProvider, EntrypointKind, EventDispatcher, FieldOptions, Inject,
    InjectContext, Provided, WorkerInfo,
};
pub use envelope::{Arguments, NoKwargs};
pub use error::{
    BoxError, BrokerError, Error, ErrorKind, ErrorSource, RemoteError, Result, RpcError,
};
pub use message::{ContextData, HeaderValue, Headers, Message};
pub use proxy::{CallOptions, Client, RpcProxy, ServiceProxy, DEFAULT_TIMEOUT};
pub use runner::{shutdown_signal, Runner, RunningServices, ServiceOptions};
pub use service::{
    EncodedReply, EventHandlerDescription, EventPayload, IntoHandlerResult, MethodDescription,
    NamedService, ParamDescription, Service, ServiceDescription, TimerDescription, DESCRIBE_METHOD,
};

pub use basidia_serializers::{Format, Value};
