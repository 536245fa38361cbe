//! The process `basidia run` builds around service crates: it hosts every registered service
//! on the configured broker, and optionally evaluates shell expressions or opens the shell in the
//! same process (the way to use the in-memory broker from the command line).
//!
//! The generated program is one call:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: basidia_cli::Allocator = basidia_cli::Allocator;
//!
//! fn register(runner: &mut basidia::Runner) {
//!     // runner.add::<MyService>();
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     basidia_cli::host::main(&[basidia_cli::host::Registration {
//!         crate_name: "my_services",
//!         register,
//!     }])
//! }
//! ```

use std::process::ExitCode;

use basidia::Runner;
use clap::Parser;

use crate::flags::ConfigFlags;
use crate::shell::{self, Session};

/// One service crate's entry point: its `register` function.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The crate, for messages.
    pub crate_name: &'static str,
    /// Adds the crate's services to a runner.
    pub register: fn(&mut Runner),
}

/// The host's command line (what `basidia run` passes on).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "basidia run",
    about = "Hosts the services of the crates it was built with."
)]
pub struct HostArgs {
    /// Configuration and its top layer.
    #[command(flatten)]
    pub config: ConfigFlags,
    /// Runs only this service (repeatable).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Opens the shell once the services are up; leaving it stops them.
    #[arg(long)]
    pub shell: bool,
    /// Evaluates a shell expression once the services are up, prints the result, and after the
    /// last one stops (repeatable; the exit status is 1 if any failed).
    #[arg(long, value_name = "EXPR")]
    pub exec: Vec<String>,
}

/// Parses the command line, then runs [`run`] on a multi-threaded runtime.
pub fn main(registrations: &[Registration]) -> ExitCode {
    let args = HostArgs::parse();
    let Some(runtime) = runtime(true) else {
        return ExitCode::FAILURE;
    };
    let code = runtime.block_on(run(args, registrations));
    // Blocking tasks (a shell waiting on stdin) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// A tokio runtime (multi-threaded or on this thread); `None` after saying why it could not start.
pub fn runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
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

/// Installs a log subscriber on standard error: `info` by default, `warn` while running
/// expressions or the shell; `RUST_LOG` overrides.
pub fn init_tracing(quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Log targets of client libraries that print whole messages, headers and all (and so context
/// data such as `auth_token`), switched off by default. lapin logs every message the broker
/// returns (a call to a service nothing serves) at warn; Basidia reports those calls itself as
/// `UnknownService`.
const MESSAGE_DUMPING_TARGETS: &[&str] = &["lapin::returned_messages"];

/// The log filter used when `RUST_LOG` is not set.
pub fn default_filter(quiet: bool) -> String {
    let mut filter = String::from(if quiet { "warn" } else { "info" });
    for target in MESSAGE_DUMPING_TARGETS {
        filter.push_str(&format!(",{target}=off"));
    }
    filter
}

/// Hosts the services until a signal, or runs expressions or the shell against them.
pub async fn run(args: HostArgs, registrations: &[Registration]) -> ExitCode {
    let interactive = args.shell || !args.exec.is_empty();
    init_tracing(interactive);
    let loaded = match args.config.load() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("basidia: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = loaded.settings;
    let url = basidia_core::redact_url(&settings.broker);
    let broker = match crate::config::connect(&settings).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("basidia: cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runner = Runner::new(broker.clone()).with_config(settings.runner_config());
    for r in registrations {
        (r.register)(&mut runner);
    }
    if runner.service_names().is_empty() {
        let crates: Vec<&str> = registrations.iter().map(|r| r.crate_name).collect();
        eprintln!(
            "basidia: {} registered no services: add them in `register` with runner.add::<MyService>()",
            crates.join(", ")
        );
        return ExitCode::FAILURE;
    }
    if !args.services.is_empty() {
        runner.only(args.services.clone());
    }
    let running = match runner.start().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("basidia: cannot start the services: {e}");
            close(&broker).await;
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<String> = running.names().iter().map(|s| s.to_string()).collect();
    tracing::info!("serving {} on {url}", names.join(", "));

    let session = || {
        Session::new(
            broker.clone(),
            settings.serializer,
            settings.rpc_timeout,
            &names,
        )
    };
    let code = if !args.exec.is_empty() {
        let ok = shell::exec(&session(), &args.exec).await;
        running.stop().await;
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else if args.shell {
        let banner = format!(
            "Basidia shell on {url}, hosting {}.\nType help for the commands; Tab completes; exit or Ctrl-D leaves.",
            names.join(", ")
        );
        let ok = shell::repl(session(), banner).await;
        running.stop().await;
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else {
        eprintln!(
            "basidia: serving {} on {url}; Ctrl-C stops",
            names.join(", ")
        );
        basidia::shutdown_signal().await;
        eprintln!("basidia: stopping (Ctrl-C again to force)");
        tokio::select! {
            () = running.stop() => ExitCode::SUCCESS,
            () = basidia::shutdown_signal() => {
                eprintln!("basidia: forced stop");
                ExitCode::from(130)
            }
        }
    };
    close(&broker).await;
    code
}

/// How long closing the broker may take: after a forced stop (or a broker that no longer
/// answers) the process must still end.
const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes `broker`, giving up after [`CLOSE_LIMIT`].
pub async fn close(broker: &basidia::SharedBroker) {
    if tokio::time::timeout(CLOSE_LIMIT, broker.close())
        .await
        .is_err()
    {
        tracing::warn!("the broker connection did not close within {CLOSE_LIMIT:?}; leaving it");
    }
}
