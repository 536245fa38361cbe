//! Dependencies: what a service struct's fields are built from. Each field type implements
//! [`Inject`]; Basidia provides RPC clients ([`Dependency`]), the dynamic [`RpcProxy`], the
//! [`EventDispatcher`], typed configuration sections ([`Config`]) and user-written providers
//! ([`Provided`] over a [`DependencyProvider`]).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basidia_serializers::Format;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::broker::SharedBroker;
use crate::config::ServiceSettings;
use crate::context::Context;
use crate::error::{BoxError, Error, RemoteError, RpcError};
use crate::message::Message;
use crate::proxy::{Client, RpcProxy};

/// Options written on a field with `#[inject(...)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOptions {
    /// `#[inject(timeout = "2s")]`: the deadline of calls through this dependency.
    pub timeout: Option<Duration>,
    /// `#[inject(section = "smtp")]`: the configuration section (default: the field name).
    pub section: Option<&'static str>,
    /// `#[inject(format = "json")]`: the request format of calls through this dependency (for a
    /// peer that accepts only JSON, such as a default-configured Nameko service).
    pub format: Option<Format>,
}

/// What a dependency is built from: the service, its settings, the broker and configuration.
pub struct InjectContext {
    service: String,
    settings: ServiceSettings,
    broker: SharedBroker,
    sections: Arc<serde_json::Map<String, serde_json::Value>>,
    providers: Vec<Arc<dyn DependencyProvider>>,
    overrides: HashMap<String, Box<dyn Any + Send + Sync>>,
    field: &'static str,
    options: FieldOptions,
}

impl fmt::Debug for InjectContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectContext")
            .field("service", &self.service)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl InjectContext {
    /// A context for building the service `service`.
    pub fn new(
        service: &str,
        settings: ServiceSettings,
        broker: SharedBroker,
        sections: Arc<serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        InjectContext {
            service: service.to_string(),
            settings,
            broker,
            sections,
            providers: Vec::new(),
            overrides: HashMap::new(),
            field: "",
            options: FieldOptions::default(),
        }
    }

    /// Replaces the field `field` with `value` instead of building it (for tests).
    pub fn set_override(&mut self, field: &str, value: Box<dyn Any + Send + Sync>) {
        self.overrides.insert(field.to_string(), value);
    }

    /// Builds the field `name` of type `T`, unless an override replaces it.
    pub async fn field<T: Inject>(
        &mut self,
        name: &'static str,
        options: FieldOptions,
    ) -> Result<T, Error> {
        if let Some(value) = self.overrides.remove(name) {
            return value
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|_| Error::Dependency {
                    service: self.service.clone(),
                    field: name.to_string(),
                    message: format!("the replacement is not a {}", std::any::type_name::<T>()),
                    source: None,
                });
        }
        self.field = name;
        self.options = options;
        T::inject(self).await
    }

    /// The service being built.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The field being built.
    pub fn field_name(&self) -> &'static str {
        self.field
    }

    /// The field's `#[inject(...)]` options.
    pub fn options(&self) -> &FieldOptions {
        &self.options
    }

    /// The service's settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The broker.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// A configuration section, decoded; a missing section decodes from an empty table.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        let value = self
            .sections
            .get(name)
            .cloned()
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("section [{name}] for {}: {e}", self.service)))
    }

    /// Registers a provider so that the container runs its lifecycle and worker hooks.
    pub fn register_provider(&mut self, provider: Arc<dyn DependencyProvider>) {
        self.providers.push(provider);
    }

    /// The providers registered while building.
    pub fn take_providers(&mut self) -> Vec<Arc<dyn DependencyProvider>> {
        std::mem::take(&mut self.providers)
    }

    /// Fails if some override named no field.
    pub fn check_overrides_used(&self) -> Result<(), Error> {
        match self.overrides.keys().next() {
            None => Ok(()),
            Some(name) => Err(Error::Dependency {
                service: self.service.clone(),
                field: name.clone(),
                message: "no such field to replace".into(),
                source: None,
            }),
        }
    }

    fn error(&self, source: BoxError) -> Error {
        Error::Dependency {
            service: self.service.clone(),
            field: self.field.to_string(),
            message: source.to_string(),
            source: Some(source),
        }
    }
}

/// A type that can be built as a field of a service struct.
#[async_trait]
pub trait Inject: Sized + Send + Sync + 'static {
    /// Builds the value.
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error>;
}

/// A typed RPC client of another service, as a dependency: `db: Dependency<DatabaseServiceClient>`.
///
/// Calls go out with the worker's context and the service's `rpc_timeout` (or the field's
/// `#[inject(timeout = "...")]`) as their deadline.
#[derive(Debug, Clone)]
pub struct Dependency<C>(C);

impl<C> Dependency<C> {
    /// Wraps a client (for tests: a client that talks to a fake).
    pub fn new(client: C) -> Self {
        Dependency(client)
    }

    /// The client.
    pub fn into_inner(self) -> C {
        self.0
    }
}

impl<C> Deref for Dependency<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

fn proxy_for(cx: &InjectContext) -> RpcProxy {
    RpcProxy::new(cx.broker.clone())
        .with_timeout(cx.options.timeout.unwrap_or(cx.settings.rpc_timeout))
        .with_format(cx.options.format.unwrap_or(cx.settings.serializer))
}

#[async_trait]
impl<C: Client> Inject for Dependency<C> {
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error> {
        Ok(Dependency(C::from_proxy(proxy_for(cx).service(C::SERVICE))))
    }
}

#[async_trait]
impl Inject for RpcProxy {
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error> {
        Ok(proxy_for(cx))
    }
}

/// Dispatches events from this service: `events.dispatch("user.created", &payload)`.
#[derive(Clone)]
pub struct EventDispatcher {
    broker: SharedBroker,
    source: Arc<str>,
    format: Format,
}

impl fmt::Debug for EventDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDispatcher")
            .field("source", &self.source)
            .field("format", &self.format)
            .finish()
    }
}

impl EventDispatcher {
    /// A dispatcher sending as `source`.
    pub fn new(broker: SharedBroker, source: &str, format: Format) -> Self {
        EventDispatcher {
            broker,
            source: Arc::from(source),
            format,
        }
    }

    /// Dispatches an event; returns once the broker has accepted it. The current worker's
    /// context travels with it.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        payload: &T,
    ) -> Result<(), RpcError> {
        let body = self.format.encode(payload).map_err(RpcError::encode)?;
        if let Some(max) = self.broker.max_payload() {
            if body.len() > max {
                return Err(RpcError::Broker(crate::BrokerError::PayloadTooLarge {
                    size: body.len(),
                    max,
                }));
            }
        }
        let ctx = Context::current();
        let mut headers = ctx
            .as_ref()
            .map(|c| c.outgoing_headers())
            .unwrap_or_default();
        // A span of its own only for an exporter (see `crate::telemetry`): its id is the parent
        // the event carries to its handlers.
        let span = crate::telemetry::outgoing(
            || {
                tracing::info_span!(
                    "event.dispatch",
                    source = %self.source,
                    event_type,
                    otel.name = tracing::field::Empty,
                    otel.kind = tracing::field::Empty,
                )
            },
            crate::telemetry::SpanRole::Publish {
                source: &self.source,
                event_type,
            },
            self.broker.kind(),
            ctx.as_deref(),
            &mut headers,
        )
        .unwrap_or_else(
            || tracing::debug_span!("event.dispatch", source = %self.source, event_type),
        );
        let message = Message {
            headers,
            deadline: ctx.as_ref().and_then(|c| c.outgoing_deadline(None)),
            ..Message::new(body, self.format.content_type())
        };
        let began = tokio::time::Instant::now();
        let result = self
            .broker
            .publish_event(&self.source, event_type, message)
            .instrument(span.clone())
            .await
            .map_err(|e| RpcError::from_broker(e, &self.source, event_type));
        if let Err(e) = &result {
            let text = e.to_string();
            let end = crate::telemetry::SpanEnd::error(crate::proxy::error_type(e), &text);
            crate::telemetry::end(&span, end);
        }
        let outcome = crate::metrics::outcome(result.as_ref().err().map(RpcError::kind));
        crate::metrics::registry()
            .published(&self.source, event_type)
            .record(outcome, began.elapsed());
        result
    }
}

#[async_trait]
impl Inject for EventDispatcher {
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error> {
        Ok(EventDispatcher::new(
            cx.broker.clone(),
            &cx.service,
            cx.settings.serializer,
        ))
    }
}

/// A typed configuration section: `smtp: Config<SmtpSettings>` reads the section named by
/// `#[inject(section = "...")]`, or by the field name.
#[derive(Debug)]
pub struct Config<T>(Arc<T>);

impl<T> Clone for Config<T> {
    fn clone(&self) -> Self {
        Config(Arc::clone(&self.0))
    }
}

impl<T> Config<T> {
    /// Wraps a value (for tests).
    pub fn new(value: T) -> Self {
        Config(Arc::new(value))
    }
}

impl<T> Deref for Config<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[async_trait]
impl<T: DeserializeOwned + Send + Sync + 'static> Inject for Config<T> {
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error> {
        let name = cx.options.section.unwrap_or(cx.field);
        cx.section(name).map(Config::new)
    }
}

/// What kind of entrypoint a worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntrypointKind {
    /// An RPC method.
    Rpc,
    /// An event handler.
    Event,
    /// A timer.
    Timer,
    /// An HTTP route.
    Http,
}

/// One worker, as providers' worker hooks see it.
#[derive(Debug, Clone, Copy)]
pub struct WorkerInfo<'a> {
    /// The service.
    pub service: &'a str,
    /// The entrypoint (method) name.
    pub entrypoint: &'a str,
    /// The kind of entrypoint.
    pub kind: EntrypointKind,
    /// The worker's context.
    pub context: &'a Context,
}

/// A user-written dependency with a lifecycle, as Nameko's DependencyProvider: built once per
/// service at setup, started before the service takes work, stopped after it drained, and told
/// about every worker.
#[async_trait]
pub trait DependencyProvider: Send + Sync + 'static {
    /// Builds the provider for a service (reads configuration, opens pools).
    async fn setup(cx: &InjectContext) -> Result<Self, BoxError>
    where
        Self: Sized;

    /// Runs before the service takes work.
    async fn start(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs after the service stopped taking work and its workers finished.
    async fn stop(&self) {}

    /// Runs before each worker.
    fn worker_setup(&self, worker: &WorkerInfo<'_>) {
        let _ = worker;
    }

    /// Runs after each worker with its outcome.
    fn worker_result(&self, worker: &WorkerInfo<'_>, outcome: Result<(), &RemoteError>) {
        let _ = (worker, outcome);
    }

    /// Runs after each worker, last.
    fn worker_teardown(&self, worker: &WorkerInfo<'_>) {
        let _ = worker;
    }
}

/// A field holding a user-written [`DependencyProvider`]: `db: Provided<DbPool>`.
#[derive(Debug)]
pub struct Provided<P>(Arc<P>);

impl<P> Clone for Provided<P> {
    fn clone(&self) -> Self {
        Provided(Arc::clone(&self.0))
    }
}

impl<P> Provided<P> {
    /// Wraps a provider (for tests).
    pub fn new(provider: P) -> Self {
        Provided(Arc::new(provider))
    }
}

impl<P> Deref for Provided<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.0
    }
}

#[async_trait]
impl<P: DependencyProvider> Inject for Provided<P> {
    async fn inject(cx: &mut InjectContext) -> Result<Self, Error> {
        let provider = Arc::new(P::setup(cx).await.map_err(|e| cx.error(e))?);
        cx.register_provider(provider.clone());
        Ok(Provided(provider))
    }
}
