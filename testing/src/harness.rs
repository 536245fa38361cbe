//! The service harness and the worker factory.

use std::sync::Arc;
use std::time::Duration;

use basidia_core::{
    Client, Error, EventDispatcher, Format, Inject, InjectContext, NamedService, RpcError,
    RpcProxy, Runner, RunnerConfig, RunningServices, Service, ServiceOptions, SharedBroker,
    WorkerEvent, WorkerEvents,
};
use basidia_memory::MemoryBroker;
use serde::Serialize;

type AddFn = Box<dyn FnOnce(&mut Runner) + Send>;

/// Builds a [`ServiceHarness`].
pub struct HarnessBuilder {
    broker: MemoryBroker,
    config: RunnerConfig,
    adds: Vec<AddFn>,
    verifier: Option<Arc<dyn basidia_core::auth::TokenVerifier>>,
}

impl std::fmt::Debug for HarnessBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarnessBuilder").finish_non_exhaustive()
    }
}

impl HarnessBuilder {
    /// Hosts the service `S`.
    pub fn service<S: Service + NamedService + Inject>(self) -> Self {
        self.service_with::<S>(ServiceOptions::new())
    }

    /// Hosts the service `S` with options (replaced dependencies, restricted entrypoints).
    pub fn service_with<S: Service + NamedService + Inject>(
        mut self,
        options: ServiceOptions,
    ) -> Self {
        self.adds.push(Box::new(move |r| {
            r.add_with::<S>(options);
        }));
        self
    }

    /// Hosts an already-built service (a hand-written `Service`, a fake).
    pub fn instance<S: Service>(mut self, service: S) -> Self {
        self.adds.push(Box::new(move |r| {
            r.add_instance(service);
        }));
        self
    }

    /// Sets the whole configuration.
    pub fn config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a configuration section that `Config<T>` fields read.
    pub fn section(mut self, name: &str, value: serde_json::Value) -> Self {
        self.config.sections.insert(name.to_string(), value);
        self
    }

    /// Checks callers of methods with roles with `verifier` (without one they refuse everyone).
    pub fn token_verifier(mut self, verifier: Arc<dyn basidia_core::auth::TokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Uses an existing memory broker (to share it with other harnesses or fakes).
    pub fn broker(mut self, broker: MemoryBroker) -> Self {
        self.broker = broker;
        self
    }

    /// Starts the services.
    pub async fn start(self) -> Result<ServiceHarness, Error> {
        let shared: SharedBroker = Arc::new(self.broker.clone());
        let mut runner = Runner::new(shared).with_config(self.config);
        if let Some(v) = self.verifier {
            runner = runner.with_token_verifier(v);
        }
        for add in self.adds {
            add(&mut runner);
        }
        let observer = runner.observe();
        let running = runner.start().await?;
        Ok(ServiceHarness {
            broker: self.broker,
            running,
            observer,
        })
    }
}

/// Services running in-process on a memory broker.
pub struct ServiceHarness {
    broker: MemoryBroker,
    running: RunningServices,
    observer: WorkerEvents,
}

impl std::fmt::Debug for ServiceHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHarness")
            .field("services", &self.running.names())
            .finish_non_exhaustive()
    }
}

impl ServiceHarness {
    /// A builder on a fresh memory broker.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            broker: MemoryBroker::new(),
            config: RunnerConfig::default(),
            adds: Vec::new(),
            verifier: None,
        }
    }

    /// Starts the one service `S` with default options.
    pub async fn start<S: Service + NamedService + Inject>() -> Result<ServiceHarness, Error> {
        Self::builder().service::<S>().start().await
    }

    /// The memory broker (for inspecting dead letters, queues, unroutable events).
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    /// The running services.
    pub fn running(&self) -> &RunningServices {
        &self.running
    }

    /// An HTTP client of the services' `#[http]` routes, in process: requests go through the
    /// same router the server runs (no socket), with `config`'s limits, CORS and gateway (on
    /// this harness's broker), plus health.
    #[cfg(feature = "http")]
    pub fn http(
        &self,
        config: &basidia_http::HttpConfig,
    ) -> Result<HttpClient, basidia_http::HttpError> {
        let shared: SharedBroker = Arc::new(self.broker.clone());
        let services = self.running.descriptions().into_iter().cloned().collect();
        let router = basidia_http::Edge::new(self.running.http_endpoints(), config)
            .with_health(basidia_http::Health::new(
                shared.clone(),
                self.running.probes(),
            ))
            .with_gateway(shared, services)
            .router()?;
        Ok(HttpClient { router })
    }

    /// A dynamic proxy from a separate connection, as an outside caller.
    pub fn proxy(&self) -> RpcProxy {
        RpcProxy::new(Arc::new(self.broker.connect()))
    }

    /// A typed client from a separate connection.
    pub fn client<C: Client>(&self) -> C {
        C::connect(&self.proxy())
    }

    /// Calls with dynamic JSON arguments (array: positional, object: keyword).
    pub async fn call_json(
        &self,
        service: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, RpcError> {
        self.proxy().call_json(service, method, args).await
    }

    /// Dispatches an event as the service `source`.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        source: &str,
        event_type: &str,
        payload: &T,
    ) -> Result<(), RpcError> {
        EventDispatcher::new(Arc::new(self.broker.connect()), source, Format::MsgPack)
            .dispatch(event_type, payload)
            .await
    }

    /// A waiter for the next run of `service.entrypoint` that finishes after this call; create
    /// it before triggering the work.
    pub fn waiter(&self, service: &str, entrypoint: &str) -> EntrypointWaiter {
        EntrypointWaiter {
            rx: self.observer.resubscribe(),
            service: service.to_string(),
            entrypoint: entrypoint.to_string(),
        }
    }

    /// Stops the services gracefully.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Why waiting for an entrypoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The entrypoint did not run within the timeout.
    #[error("{service}.{entrypoint} did not run within {timeout:?}")]
    Timeout {
        /// The service.
        service: String,
        /// The entrypoint.
        entrypoint: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The services stopped.
    #[error("the services stopped while waiting")]
    Stopped,
}

/// Waits for an entrypoint to have run (Nameko's `entrypoint_waiter`).
#[derive(Debug)]
pub struct EntrypointWaiter {
    rx: WorkerEvents,
    service: String,
    entrypoint: String,
}

impl EntrypointWaiter {
    /// Waits at most `timeout` for the entrypoint to finish; returns how it ended (its
    /// [`WorkerEvent::error`] tells a failure).
    pub async fn wait(mut self, timeout: Duration) -> Result<WorkerEvent, WaitError> {
        let fut = async {
            loop {
                match self.rx.next().await {
                    Some(ev) if ev.service == self.service && ev.entrypoint == self.entrypoint => {
                        return Ok(ev)
                    }
                    Some(_) => {}
                    None => return Err(WaitError::Stopped),
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(WaitError::Timeout {
                    service: self.service.clone(),
                    entrypoint: self.entrypoint.clone(),
                    timeout,
                })
            })
    }
}

/// Builds one service with some dependencies replaced, for calling its methods directly.
pub struct WorkerFactory<S> {
    broker: MemoryBroker,
    config: RunnerConfig,
    overrides: Vec<(String, Box<dyn std::any::Any + Send + Sync>)>,
    _service: std::marker::PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for WorkerFactory<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerFactory").finish_non_exhaustive()
    }
}

/// Starts building the service `S` outside any container. Dependencies not replaced are built
/// on a private memory broker where no other service runs, so a call through them fails fast
/// with `UnknownService` instead of reaching anything real.
pub fn worker_factory<S: Service + NamedService + Inject>() -> WorkerFactory<S> {
    WorkerFactory {
        broker: MemoryBroker::new(),
        config: RunnerConfig::default(),
        overrides: Vec::new(),
        _service: std::marker::PhantomData,
    }
}

impl<S: Service + NamedService + Inject> WorkerFactory<S> {
    /// Replaces the dependency in field `field`.
    pub fn replace<T: Send + Sync + 'static>(mut self, field: &str, value: T) -> Self {
        self.overrides.push((field.to_string(), Box::new(value)));
        self
    }

    /// Adds a configuration section.
    pub fn section(mut self, name: &str, value: serde_json::Value) -> Self {
        self.config.sections.insert(name.to_string(), value);
        self
    }

    /// Uses this memory broker for the dependencies that are not replaced.
    pub fn broker(mut self, broker: MemoryBroker) -> Self {
        self.broker = broker;
        self
    }

    /// Builds the service.
    pub async fn build(self) -> Result<S, Error> {
        let settings = self.config.settings_for(S::NAME);
        let mut cx = InjectContext::new(
            S::NAME,
            settings,
            Arc::new(self.broker),
            Arc::new(self.config.sections),
        );
        for (field, value) in self.overrides {
            cx.set_override(&field, value);
        }
        let service = S::inject(&mut cx).await?;
        cx.check_overrides_used()?;
        Ok(service)
    }
}

/// An in-process HTTP client of a harness's routes (see [`ServiceHarness::http`]).
#[cfg(feature = "http")]
#[derive(Clone)]
pub struct HttpClient {
    router: basidia_http::__private::Router,
}

#[cfg(feature = "http")]
impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

#[cfg(feature = "http")]
impl HttpClient {
    /// Sends `request` and returns the response with its whole body.
    pub async fn send(&self, request: basidia_http::Request) -> basidia_core::http::HttpResponse {
        basidia_http::call(&self.router, request).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> basidia_core::http::HttpResponse {
        self.send(Self::request(
            "GET",
            path,
            basidia_http::Body::empty(),
            None,
        ))
        .await
    }

    /// `method path` with `body` as JSON.
    pub async fn json<T: Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: &T,
    ) -> basidia_core::http::HttpResponse {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(Self::request(
            method,
            path,
            basidia_http::Body::from(bytes),
            Some("application/json"),
        ))
        .await
    }

    fn request(
        method: &str,
        path: &str,
        body: basidia_http::Body,
        content_type: Option<&str>,
    ) -> basidia_http::Request {
        let mut builder = basidia_http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(body).unwrap_or_else(|_| {
            // A method or path that is not one: the router answers it as unroutable.
            let mut r = basidia_http::Request::new(basidia_http::Body::empty());
            *r.uri_mut() = basidia_http::Uri::from_static("/");
            r
        })
    }
}
