//! Hosting services: configuration to broker, broker to running services, a signal to a graceful
//! stop.

use std::process::ExitCode;
use std::time::Duration;

use basidia::{Runner, RunningServices, SharedBroker};

use crate::args::{HostArgs, Parsed, USAGE};
use crate::config::{self, ConfigError, Settings};

/// One service crate's entry point: its `register` function. A host is built from a list of
/// these, one per service crate.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The crate, for messages.
    pub crate_name: &'static str,
    /// Adds the crate's services to a runner.
    pub register: fn(&mut Runner),
}

/// Why the services could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The configuration is invalid or unreadable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be reached.
    #[error("cannot connect to {url}")]
    Connect {
        /// The broker URL, credentials masked.
        url: String,
        /// What the broker client said.
        #[source]
        source: basidia::BrokerError,
    },
    /// No registration added a service.
    #[error(
        "{crates} registered no services: add them in `register` with runner.add::<MyService>()"
    )]
    NoServices {
        /// The crates, comma-separated.
        crates: String,
    },
    /// The `[telemetry]` configuration or the `OTEL_*` variables cannot be used.
    #[error("invalid trace export configuration")]
    Telemetry(#[source] crate::telemetry::TelemetryError),
    /// A service could not start (an unknown `--service`, a queue the broker refused, ...).
    #[error("cannot start the services")]
    Start(#[source] basidia::Error),
    /// The `[auth]` configuration cannot verify tokens (a missing key, an unreadable file).
    #[cfg(feature = "auth")]
    #[error("invalid [auth] configuration")]
    Auth(#[source] basidia_auth::AuthConfigError),
    /// The HTTP server could not start (conflicting routes, an address in use).
    #[cfg(feature = "http")]
    #[error("cannot start the HTTP server")]
    Http(#[source] basidia_http::HttpError),
}

impl HostError {
    /// The exit status a host reports this with: 2 for configuration, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HostError::Config(_) | HostError::Telemetry(_) => ExitCode::from(2),
            #[cfg(feature = "auth")]
            HostError::Auth(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// The services of a host, started on the configured broker.
pub struct Hosted {
    broker: SharedBroker,
    settings: Settings,
    running: RunningServices,
    names: Vec<String>,
    url: String,
    #[cfg(feature = "http")]
    http: Option<basidia_http::HttpServer>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("services", &self.names)
            .field("broker", &self.url)
            .finish_non_exhaustive()
    }
}

impl Hosted {
    /// Loads the configuration `args` name, sets logging up as its `[log]` says (unless a
    /// subscriber is installed already), connects to the broker, adds every registration's
    /// services (only those of `--service`, if given) and starts them.
    pub async fn start(args: &HostArgs, registrations: &[Registration]) -> Result<Self, HostError> {
        let settings = args.load()?.settings;
        // Quiet while the shell or expressions share the terminal.
        let quiet = args.shell || !args.exec.is_empty();
        start_logging(quiet, &settings, &args.services)?;
        let url = basidia_core::redact_url(&settings.broker);
        let broker = config::connect(&settings)
            .await
            .map_err(|source| HostError::Connect {
                url: url.clone(),
                source,
            })?;
        let mut runner = Runner::new(broker.clone()).with_config(settings.runner_config());
        #[cfg(feature = "auth")]
        if let Some(auth) = &settings.auth {
            match basidia_auth::JwtVerifier::new(auth) {
                Ok(v) => runner = runner.with_token_verifier(std::sync::Arc::new(v)),
                Err(e) => {
                    close(&broker).await;
                    return Err(HostError::Auth(e));
                }
            }
        }
        for r in registrations {
            (r.register)(&mut runner);
        }
        if runner.service_names().is_empty() {
            close(&broker).await;
            let crates: Vec<&str> = registrations.iter().map(|r| r.crate_name).collect();
            return Err(HostError::NoServices {
                crates: crates.join(", "),
            });
        }
        if !args.services.is_empty() {
            runner.only(args.services.clone());
        }
        let running = match runner.start().await {
            Ok(r) => r,
            Err(e) => {
                close(&broker).await;
                return Err(HostError::Start(e));
            }
        };
        let names = running.names().iter().map(|s| s.to_string()).collect();
        #[cfg(feature = "http")]
        let http = match start_http(&settings, &broker, &running, args.no_http).await {
            Ok(server) => server,
            Err(e) => {
                running.stop().await;
                close(&broker).await;
                return Err(HostError::Http(e));
            }
        };
        Ok(Hosted {
            broker,
            settings,
            running,
            names,
            url,
            #[cfg(feature = "http")]
            http,
        })
    }

    /// Where the HTTP server listens, if it runs.
    #[cfg(feature = "http")]
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(basidia_http::HttpServer::local_addr)
    }

    /// The broker the services run on.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// The configuration they run with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The names of the running services.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The broker URL with its credentials masked, for messages.
    pub fn broker_url(&self) -> &str {
        &self.url
    }

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully: every service stops taking work
    /// and finishes what it holds within its `shutdown_grace`. A second signal forces the stop
    /// (exit status 130).
    pub async fn serve(self) -> ExitCode {
        eprintln!(
            "basidia: serving {} on {}; Ctrl-C stops",
            self.names.join(", "),
            self.url
        );
        basidia::shutdown_signal().await;
        eprintln!("basidia: stopping (Ctrl-C again to force)");
        let broker = self.broker.clone();
        let code = tokio::select! {
            () = self.stop_services() => ExitCode::SUCCESS,
            () = basidia::shutdown_signal() => {
                eprintln!("basidia: forced stop");
                ExitCode::from(130)
            }
        };
        close(&broker).await;
        // A forced stop does not wait for the exporters either.
        if code == ExitCode::SUCCESS {
            crate::telemetry::flush().await;
        }
        code
    }

    /// Stops the services gracefully and closes the broker connection.
    pub async fn stop(self) {
        let broker = self.broker.clone();
        self.stop_services().await;
        close(&broker).await;
        crate::telemetry::flush().await;
    }

    /// Stops the HTTP server from accepting and the services from taking work, side by side;
    /// requests and workers in flight finish within the shutdown grace.
    async fn stop_services(self) {
        #[cfg(feature = "http")]
        if let Some(server) = self.http {
            let grace = self.settings.shutdown_grace;
            tokio::join!(server.stop(grace), self.running.stop());
            return;
        }
        self.running.stop().await;
    }
}

/// Installs the log subscriber, with the trace exporter beside it when `[telemetry]` or the
/// `OTEL_*` variables ask for one. The spans' `service.name` is, unless configured, the one
/// service of `--service`, or the program's name.
fn start_logging(quiet: bool, settings: &Settings, services: &[String]) -> Result<(), HostError> {
    let name = match services {
        [one] => one.clone(),
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "basidia".into()),
    };
    crate::telemetry::install(quiet, &settings.log, &settings.telemetry, &name)
        .map_err(HostError::Telemetry)
}

/// Starts the HTTP server if a service has HTTP routes or health is asked for; `None` if
/// neither.
#[cfg(feature = "http")]
async fn start_http(
    settings: &Settings,
    broker: &SharedBroker,
    running: &RunningServices,
    refused: bool,
) -> Result<Option<basidia_http::HttpServer>, basidia_http::HttpError> {
    let config = &settings.http;
    let endpoints = running.http_endpoints();
    if refused || !config.wanted(endpoints.len()) {
        return Ok(None);
    }
    let services = running.descriptions().into_iter().cloned().collect();
    let mut edge =
        basidia_http::Edge::new(endpoints, config).with_gateway(broker.clone(), services);
    let mut dashboard = basidia_http::Dashboard::new(broker.clone());
    if config.health != Some(false) {
        let health = basidia_http::Health::new(broker.clone(), running.probes());
        dashboard = dashboard.with_health(health.clone());
        edge = edge.with_health(health);
    }
    edge = edge.with_dashboard(dashboard);
    let router = edge.router()?;
    let server =
        basidia_http::HttpServer::start_with(config.address, config.tls.as_ref(), router).await?;
    eprintln!("basidia: HTTP on {}", server.url());
    Ok(Some(server))
}

/// How long closing the broker may take: after a forced stop (or a broker that no longer
/// answers) the process must still end.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Closes `broker`, giving up after a few seconds.
pub async fn close(broker: &SharedBroker) {
    if tokio::time::timeout(CLOSE_LIMIT, broker.close())
        .await
        .is_err()
    {
        tracing::warn!("the broker connection did not close within {CLOSE_LIMIT:?}; leaving it");
    }
}

/// A tokio runtime (multi-threaded or on this thread); `None` after saying why it could not start.
pub fn tokio_runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("basidia: cannot start the runtime: {e}"))
        .ok()
}

/// The `main` of a service program: reads the command line ([`HostArgs`]), logs to standard
/// error, hosts the services `register` adds until Ctrl-C or SIGTERM, and stops them gracefully.
///
/// ```no_run
/// use basidia::prelude::*;
///
/// #[service]
/// pub struct GreetingService;
///
/// #[service(name = "greeting_service")]
/// impl GreetingService {
///     #[rpc]
///     async fn hello(&self, name: String) -> String {
///         format!("Hello, {name}!")
///     }
/// }
///
/// fn register(runner: &mut basidia::Runner) {
///     runner.add::<GreetingService>();
/// }
///
/// fn main() -> std::process::ExitCode {
///     basidia_runtime::run(register)
/// }
/// ```
pub fn run(register: fn(&mut Runner)) -> ExitCode {
    host_main(&[Registration {
        crate_name: "the program",
        register,
    }])
}

/// The process's command line as [`HostArgs`]; `Err` with the exit status after printing the
/// usage (`--help`: 0) or the mistake (2).
pub fn command_line() -> Result<HostArgs, ExitCode> {
    match HostArgs::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => Ok(a),
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("basidia: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// [`run`] for several service crates: the `main` of the host `basidia run` builds.
pub fn host_main(registrations: &[Registration]) -> ExitCode {
    let args = match command_line() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.shell || !args.exec.is_empty() {
        eprintln!(
            "basidia: this host was built without the shell; `basidia run` builds one with it for \
             --exec and --shell"
        );
        return ExitCode::from(2);
    }
    let Some(runtime) = tokio_runtime(true) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        match Hosted::start(&args, registrations).await {
            Ok(hosted) => hosted.serve().await,
            Err(e) => {
                eprintln!("basidia: {}", crate::error_chain(&e));
                e.exit_code()
            }
        }
    })
}
