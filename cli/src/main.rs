//! `basidia`: run services, call them, dispatch events, scaffold projects, show configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use basidia_cli::flags::ConfigFlags;
use basidia_cli::{project, scaffold};
use basidia_runtime::config;
use basidia_shell::{self as shell, describe_rpc_error, Session};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "basidia",
    version,
    about = "Nameko-style microservices in Rust: run services, call them, dispatch events.",
    after_help = "Configuration: ./basidia.toml (or --config), then BASIDIA_* variables, then flags.\nQuick start: basidia run examples/services --exec 'greeting_service.hello(\"World\")'"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    config: ConfigFlags,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the service crate(s) at PATH and run all their services in one process.
    Run {
        /// A service crate, a workspace, or a directory with service crates below it.
        path: PathBuf,
        /// Run only this service (repeatable).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Rebuild and restart when the sources change.
        #[arg(long, conflicts_with_all = ["shell", "exec"])]
        watch: bool,
        /// Open the shell in the same process once the services are up.
        #[arg(long)]
        shell: bool,
        /// Evaluate a shell expression once the services are up, print the result, and exit
        /// after the last one (repeatable); the exit status is 1 if any failed.
        #[arg(long, value_name = "EXPR")]
        exec: Vec<String>,
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
        /// Run no HTTP server, even for services with HTTP routes.
        #[arg(long)]
        no_http: bool,
        /// Show cargo's output only when the build fails.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Build the service crate(s) at PATH into a standalone program for deployment, which runs
    /// without cargo or the sources: `DIR/NAME --config DIR/basidia.toml`.
    Build {
        /// A service crate, a workspace, or a directory with service crates below it.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Where the program (and the project's basidia.toml) go.
        #[arg(long, short, value_name = "DIR", default_value = "dist")]
        out: PathBuf,
        /// The program's name (the first service crate's package name by default).
        #[arg(long)]
        name: Option<String>,
        /// Build with optimisations, as production should run.
        #[arg(long)]
        release: bool,
        /// Show cargo's output only when the build fails.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Open the interactive shell on the configured broker.
    Shell {
        /// Evaluate this expression and exit instead (repeatable).
        #[arg(long, value_name = "EXPR")]
        exec: Vec<String>,
    },
    /// Call SERVICE.METHOD and print the JSON result.
    Call {
        /// The method, as service.method.
        target: String,
        /// Arguments as JSON: an array is positional, an object is keyword arguments.
        args: Option<String>,
    },
    /// Dispatch an event as if SOURCE had.
    Emit {
        /// The service the event comes from.
        source: String,
        /// The event type.
        event_type: String,
        /// The payload as JSON (null when left out).
        payload: Option<String>,
    },
    /// Scaffold a project or a service.
    New {
        #[command(subcommand)]
        what: NewCmd,
    },
    /// Print the merged configuration, secrets masked, each value with where it came from.
    ShowConfig,
    /// List the running service instances the broker can see: service, instance, host,
    /// process id, version, uptime and entrypoints (on NATS, from the services API).
    Status {
        /// Redraw every two seconds until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Print them as a JSON array, for scripts.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
    },
    /// List or replay the dead letters the broker keeps.
    DeadLetters {
        #[command(subcommand)]
        what: DeadLettersCmd,
    },
}

#[derive(Subcommand)]
enum DeadLettersCmd {
    /// Show them, oldest first: where from, why, how often delivered, how old, and the payload
    /// with secrets masked.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put them back where they came from, with their delivery count reset.
    Replay {
        /// The one to replay, by the id `list` shows.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Every one kept.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum NewCmd {
    /// A project: a workspace with a services crate, a test, and basidia.toml.
    Project {
        /// The project name (also its directory).
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// A service in the project here (or at --path).
    Service {
        /// The service name: `billing` makes `billing_service`.
        name: String,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// An HTTP service (a `GET` route and its test) instead of an RPC one.
        #[arg(long)]
        http: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            path,
            services,
            watch,
            shell,
            exec,
            release,
            no_http,
            quiet,
        } => {
            // Check the configuration here, so that a mistake shows before a long build.
            let settings = match cli.config.load() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("basidia: {e}");
                    return ExitCode::from(2);
                }
            };
            let release = release || settings.settings.profile == config::Profile::Release;
            let wants_shell = shell || !exec.is_empty();
            let mut host_args = cli.config.to_args();
            for s in services {
                host_args.extend(["--service".to_string(), s]);
            }
            if shell {
                host_args.push("--shell".into());
            }
            for e in exec {
                host_args.extend(["--exec".to_string(), e]);
            }
            if no_http {
                host_args.push("--no-http".into());
            }
            project::run(&project::RunOptions {
                path,
                host_args,
                shell: wants_shell,
                watch,
                release,
                quiet,
            })
        }
        Cmd::Build {
            path,
            out,
            name,
            release,
            quiet,
        } => {
            let options = basidia_cli::build::BuildOptions {
                path,
                out,
                name,
                release,
                quiet,
            };
            match basidia_cli::build::build(&options) {
                Ok(built) => {
                    println!("built {}", built.binary.display());
                    if let Some(config) = built.config {
                        println!("with {}", config.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("basidia: {e}");
                    ExitCode::from(match e {
                        project::RunError::BuildFailed | project::RunError::Cargo(_) => 1,
                        _ => 2,
                    })
                }
            }
        }
        Cmd::New { what } => {
            let result = match what {
                NewCmd::Project { name, path } => scaffold::new_project(&path, &name).map(|dir| {
                    println!(
                        "created {}\n\nnext:\n  cd {}\n  cargo test\n  basidia run . --exec 'hello_service.hello(\"World\")'",
                        dir.display(),
                        dir.display()
                    );
                }),
                NewCmd::Service { name, path, http } => {
                    scaffold::new_service(&path, &name, http).map(|file| {
                        println!("created {} and registered it in src/lib.rs", file.display());
                    })
                }
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("basidia: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::ShowConfig => match cli.config.load() {
            Ok(loaded) => {
                if let Some(f) = &loaded.file {
                    println!("# configuration file: {}", f.display());
                }
                print!("{}", config::render(&loaded));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("basidia: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Shell { exec } => with_broker(&cli.config, |settings, broker| async move {
            let session = Session::new(broker, settings.serializer, settings.rpc_timeout, &[]);
            if exec.is_empty() {
                if settings.broker.starts_with("memory:") {
                    eprintln!("basidia: note: the memory broker lives inside one process; to reach services on it use `basidia run <path> --shell`");
                }
                let banner = format!(
                    "Basidia shell on {}.\nType help for the commands; Tab completes; exit or Ctrl-D leaves.",
                    basidia_core::redact_url(&settings.broker)
                );
                shell::repl(session, banner).await
            } else {
                shell::exec(&session, &exec).await
            }
        }),
        Cmd::Call { target, args } => {
            let Some((service, method)) = target.split_once('.') else {
                eprintln!("basidia: expected service.method, got {target:?}");
                return ExitCode::from(2);
            };
            let args: serde_json::Value = match args.as_deref().map(serde_json::from_str) {
                None => serde_json::Value::Null,
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    eprintln!("basidia: the arguments are not valid JSON: {e}");
                    return ExitCode::from(2);
                }
            };
            let (service, method) = (service.to_string(), method.to_string());
            with_broker(&cli.config, |settings, broker| async move {
                let proxy = basidia::RpcProxy::new(broker)
                    .with_format(settings.serializer)
                    .with_timeout(settings.rpc_timeout);
                match proxy.call_json(&service, &method, args).await {
                    Ok(v) => {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                        );
                        true
                    }
                    Err(e) => {
                        eprintln!("error: {}", describe_rpc_error(&e));
                        false
                    }
                }
            })
        }
        Cmd::Status { watch, json } => with_broker(&cli.config, |_, broker| async move {
            loop {
                let all = match basidia_cli::status::instances(&broker).await {
                    Ok(all) => all,
                    Err(e) => {
                        eprintln!("error: {}", shell::printable(&e));
                        return false;
                    }
                };
                if json {
                    println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                    return true;
                }
                let table = basidia_cli::status::table(&all, basidia_core::context::now_epoch_ms());
                if !watch {
                    println!("{table}");
                    return true;
                }
                // Clear the screen and home the cursor, then draw.
                println!("\x1b[2J\x1b[H{table}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return true,
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
        }),
        Cmd::DeadLetters { what } => with_broker(&cli.config, |_, broker| async move {
            match what {
                DeadLettersCmd::List { limit } => {
                    match basidia_cli::dead_letters::list(&broker, limit).await {
                        Ok(text) => {
                            println!("{text}");
                            true
                        }
                        Err(e) => {
                            eprintln!("error: {}", shell::printable(&e.to_string()));
                            false
                        }
                    }
                }
                DeadLettersCmd::Replay { id, .. } => {
                    match basidia_cli::dead_letters::replay(&broker, id.as_deref()).await {
                        Ok(0) if id.is_some() => {
                            eprintln!(
                                "error: no dead letter {:?} could be replayed",
                                id.unwrap_or_default()
                            );
                            false
                        }
                        Ok(n) => {
                            println!("replayed {n} dead letter(s)");
                            true
                        }
                        Err(e) => {
                            eprintln!("error: {}", shell::printable(&e.to_string()));
                            false
                        }
                    }
                }
            }
        }),
        Cmd::Emit {
            source,
            event_type,
            payload,
        } => {
            let payload: serde_json::Value = match payload.as_deref().map(serde_json::from_str) {
                None => serde_json::Value::Null,
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    eprintln!("basidia: the payload is not valid JSON: {e}");
                    return ExitCode::from(2);
                }
            };
            with_broker(&cli.config, |settings, broker| async move {
                let dispatcher =
                    basidia::EventDispatcher::new(broker, &source, settings.serializer);
                match dispatcher.dispatch(&event_type, &payload).await {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("error: {}", describe_rpc_error(&e));
                        false
                    }
                }
            })
        }
    }
}

/// Loads the configuration, connects, runs `f`, closes the broker: exit 0 if `f` returned true,
/// 1 if it returned false or the broker is unreachable, 2 for bad configuration.
fn with_broker<F, Fut>(flags: &ConfigFlags, f: F) -> ExitCode
where
    F: FnOnce(config::Settings, basidia::SharedBroker) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    basidia_runtime::logging::init(true);
    let settings = match flags.load() {
        Ok(l) => l.settings,
        Err(e) => {
            eprintln!("basidia: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = basidia_runtime::tokio_runtime(true) else {
        return ExitCode::FAILURE;
    };
    let ok = runtime.block_on(async {
        let broker = match config::connect(&settings).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "basidia: cannot connect to {}: {e}",
                    basidia_core::redact_url(&settings.broker)
                );
                return false;
            }
        };
        let ok = f(settings, broker.clone()).await;
        basidia_runtime::close(&broker).await;
        ok
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
