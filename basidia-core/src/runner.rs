//! The runner: builds services with their dependencies, hosts them in containers on one broker,
//! and stops them gracefully on Ctrl-C or SIGTERM.

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::auth::TokenVerifier;
use crate::broker::SharedBroker;
use crate::config::RunnerConfig;
use crate::container::{ServiceContainer, WorkerEvent, WorkerEvents};
use crate::dependency::{DependencyProvider, Inject, InjectContext};
use crate::error::Error;
use crate::proxy::RpcProxy;
use crate::service::{NamedService, Service};

type Built = (Arc<dyn Service>, Vec<Arc<dyn DependencyProvider>>);
type BuildFn = Box<
    dyn FnOnce(InjectContext) -> Pin<Box<dyn Future<Output = Result<Built, Error>> + Send>> + Send,
>;

/// Per-service options: restrict entrypoints, replace dependencies.
#[derive(Default)]
pub struct ServiceOptions {
    entrypoints: Option<HashSet<String>>,
    overrides: Vec<(String, Box<dyn Any + Send + Sync>)>,
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("entrypoints", &self.entrypoints)
            .field(
                "overrides",
                &self.overrides.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ServiceOptions {
    /// Default options: every entrypoint runs, every dependency is built.
    pub fn new() -> Self {
        ServiceOptions::default()
    }

    /// Runs only these entrypoints; other RPC methods answer `MethodNotFound`, other handlers
    /// and timers are not started.
    pub fn only_entrypoints<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoints = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the dependency in field `field` with `value` (which must have the field's type).
    pub fn replace<T: Send + Sync + 'static>(mut self, field: &str, value: T) -> Self {
        self.overrides.push((field.to_string(), Box::new(value)));
        self
    }
}

struct Spec {
    name: String,
    build: BuildFn,
    entrypoints: Option<HashSet<String>>,
}

/// Builds and hosts services.
///
/// ```no_run
/// # async fn demo(broker: basidia_core::SharedBroker) -> Result<(), basidia_core::Error> {
/// use basidia_core::Runner;
/// let mut runner = Runner::new(broker);
/// // runner.add::<GreetingService>();
/// runner.run().await
/// # }
/// ```
pub struct Runner {
    broker: SharedBroker,
    config: RunnerConfig,
    specs: Vec<Spec>,
    only: Option<HashSet<String>>,
    observers: broadcast::Sender<WorkerEvent>,
    verifier: Option<Arc<dyn TokenVerifier>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("broker", &self.broker.kind())
            .field(
                "services",
                &self.specs.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner on `broker` with default configuration.
    pub fn new(broker: SharedBroker) -> Self {
        Runner {
            broker,
            config: RunnerConfig::default(),
            specs: Vec::new(),
            only: None,
            observers: broadcast::channel(1024).0,
            verifier: None,
        }
    }

    /// Checks callers of methods with roles with `verifier`. Without one, such methods refuse
    /// every caller.
    pub fn with_token_verifier(mut self, verifier: Arc<dyn TokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Sets the configuration.
    pub fn with_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Hosts the service type `S`, built from its dependencies.
    pub fn add<S: Service + NamedService + Inject>(&mut self) -> &mut Self {
        self.add_with::<S>(ServiceOptions::default())
    }

    /// Hosts the service type `S` with options.
    pub fn add_with<S: Service + NamedService + Inject>(
        &mut self,
        options: ServiceOptions,
    ) -> &mut Self {
        let overrides = options.overrides;
        let build: BuildFn = Box::new(move |mut cx: InjectContext| {
            Box::pin(async move {
                for (field, value) in overrides {
                    cx.set_override(&field, value);
                }
                let service = S::inject(&mut cx).await?;
                cx.check_overrides_used()?;
                Ok((Arc::new(service) as Arc<dyn Service>, cx.take_providers()))
            })
        });
        self.specs.push(Spec {
            name: S::NAME.to_string(),
            build,
            entrypoints: options.entrypoints,
        });
        self
    }

    /// Hosts an already-built service.
    pub fn add_instance<S: Service>(&mut self, service: S) -> &mut Self {
        let name = service.name().to_string();
        let service: Arc<dyn Service> = Arc::new(service);
        self.specs.push(Spec {
            name,
            build: Box::new(move |_| Box::pin(async move { Ok((service, Vec::new())) })),
            entrypoints: None,
        });
        self
    }

    /// Runs only the named services (others added are skipped).
    pub fn only<I, S>(&mut self, names: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The names of the services added.
    pub fn service_names(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    /// Observes finished workers.
    pub fn observe(&self) -> WorkerEvents {
        WorkerEvents::new(self.observers.subscribe())
    }

    /// Builds and starts every service; on a failure the ones started are stopped again.
    pub async fn start(self) -> Result<RunningServices, Error> {
        let Runner {
            broker,
            config,
            specs,
            only,
            observers,
            verifier,
        } = self;
        if let Some(only) = &only {
            let known: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            if let Some(missing) = only.iter().find(|n| !known.contains(n.as_str())) {
                return Err(Error::Config(format!(
                    "no service named {missing:?}; known: {}",
                    sorted(&known)
                )));
            }
        }
        let mut seen = HashSet::new();
        for spec in &specs {
            if !seen.insert(spec.name.clone()) {
                return Err(Error::DuplicateService(spec.name.clone()));
            }
        }
        let sections = Arc::new(config.sections.clone());
        let mut running = RunningServices {
            broker: broker.clone(),
            containers: Vec::new(),
            observers: observers.clone(),
        };
        for spec in specs {
            if only.as_ref().is_some_and(|o| !o.contains(&spec.name)) {
                continue;
            }
            let settings = config.settings_for(&spec.name);
            let cx = InjectContext::new(
                &spec.name,
                settings.clone(),
                broker.clone(),
                Arc::clone(&sections),
            );
            let built = (spec.build)(cx).await;
            let (service, providers) = match built {
                Ok(b) => b,
                Err(e) => {
                    running.stop().await;
                    return Err(e);
                }
            };
            let mut container = ServiceContainer::new(
                service,
                broker.clone(),
                settings,
                providers,
                spec.entrypoints,
                observers.clone(),
                verifier.clone(),
            );
            if let Err(e) = container.start().await {
                running.stop().await;
                return Err(e);
            }
            running.containers.push(container);
        }
        Ok(running)
    }

    /// Starts every service and runs until Ctrl-C or SIGTERM, then stops gracefully; a second
    /// signal during the drain stops at once.
    pub async fn run(self) -> Result<(), Error> {
        let running = self.start().await?;
        shutdown_signal().await;
        tracing::info!("stopping services (signal again to force)");
        tokio::select! {
            () = running.stop() => {}
            () = shutdown_signal() => tracing::warn!("forced stop"),
        }
        Ok(())
    }
}

fn sorted(names: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = names.iter().copied().collect();
    v.sort_unstable();
    v.join(", ")
}

/// Services hosted by a started [`Runner`].
pub struct RunningServices {
    broker: SharedBroker,
    containers: Vec<ServiceContainer>,
    observers: broadcast::Sender<WorkerEvent>,
}

impl std::fmt::Debug for RunningServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServices")
            .field("services", &self.names())
            .finish_non_exhaustive()
    }
}

impl RunningServices {
    /// The names of the running services.
    pub fn names(&self) -> Vec<&str> {
        self.containers.iter().map(ServiceContainer::name).collect()
    }

    /// What each running service says about itself.
    pub fn descriptions(&self) -> Vec<&crate::ServiceDescription> {
        self.containers
            .iter()
            .map(ServiceContainer::description)
            .collect()
    }

    /// A view of each running service's state, for readiness.
    pub fn probes(&self) -> Vec<crate::ServiceProbe> {
        self.containers
            .iter()
            .map(ServiceContainer::probe)
            .collect()
    }

    /// The HTTP routes of every running service, for the HTTP server to serve.
    pub fn http_endpoints(&self) -> Vec<crate::HttpEndpoint> {
        self.containers
            .iter()
            .flat_map(ServiceContainer::http_endpoints)
            .collect()
    }

    /// The broker.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// A dynamic proxy on the same broker.
    pub fn rpc_proxy(&self) -> RpcProxy {
        RpcProxy::new(self.broker.clone())
    }

    /// Observes finished workers.
    pub fn observe(&self) -> WorkerEvents {
        WorkerEvents::new(self.observers.subscribe())
    }

    /// Stops every service, side by side: each stops taking work at once and drains within its
    /// own grace, so the whole stop takes the longest grace rather than their sum.
    pub async fn stop(mut self) {
        futures_util::future::join_all(self.containers.drain(..).map(ServiceContainer::stop)).await;
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
