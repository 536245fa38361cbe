//! The host's command line. It is small and fixed, so it is read by hand: a service process does
//! not need an argument-parsing framework for six flags.

use basidia::Format;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded, Overrides};

/// What a host process was asked to do: the configuration file and its top layer, which services
/// to run, and (for a host built with the shell) expressions to evaluate or the shell to open.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HostArgs {
    /// `--config FILE`: the configuration file instead of `./basidia.toml` or `$BASIDIA_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--broker`, `--timeout`, `--serializer`, `--max-workers`: the top configuration layer.
    pub overrides: Overrides,
    /// `--service NAME` (repeatable): run only these services.
    pub services: Vec<String>,
    /// `--exec EXPR` (repeatable): evaluate these once the services are up, then stop.
    pub exec: Vec<String>,
    /// `--shell`: open the shell once the services are up.
    pub shell: bool,
    /// `--no-http`: run no HTTP server, whatever the services and the configuration say.
    pub no_http: bool,
}

/// A command line the host cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// A flag nobody defined.
    #[error("unknown argument {0:?} (--help lists the arguments)")]
    Unknown(String),
    /// A flag that takes a value came last.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A flag's value does not parse.
    #[error("invalid value {value:?} for {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The result of reading a command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Run with these arguments.
    Run(HostArgs),
    /// `--help` or `-h`: print [`USAGE`] and leave.
    Help,
}

/// The host's usage text.
pub const USAGE: &str = "\
Hosts the services of the crates it was built with, until Ctrl-C or SIGTERM.

Options:
  --config FILE        the configuration file (default ./basidia.toml, or $BASIDIA_CONFIG)
  --broker URL         memory://, amqp://..., amqps://..., nats://... or tls://...
  --timeout DURATION   the RPC call timeout, such as 5s or 500ms
  --serializer FORMAT  msgpack or json
  --max-workers N      how many workers each service runs at once
  --service NAME       run only this service (repeatable)
  --exec EXPR          evaluate a shell expression once the services are up (hosts built
                       with the shell; repeatable)
  --shell              open the shell once the services are up (hosts built with the shell)
  --no-http            run no HTTP server (it runs when a service has HTTP routes, or when
                       the configuration asks for health or the gateway)
  -h, --help           print this text
";

impl HostArgs {
    /// Reads the arguments after the program name, as `--flag value` or `--flag=value`.
    pub fn parse<I, S>(args: I) -> Result<Parsed, ArgsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = HostArgs::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &'static str| match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or(ArgsError::MissingValue(name)),
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--config" => out.config = Some(PathBuf::from(value("--config")?)),
                "--broker" => out.overrides.broker = Some(value("--broker")?),
                "--timeout" => {
                    let v = value("--timeout")?;
                    let d = basidia::parse_duration(&v).map_err(|reason| ArgsError::Invalid {
                        flag: "--timeout",
                        value: v.clone(),
                        reason,
                    })?;
                    out.overrides.rpc_timeout = Some(d);
                }
                "--serializer" => {
                    let v = value("--serializer")?;
                    let f = v.parse::<Format>().map_err(|e| ArgsError::Invalid {
                        flag: "--serializer",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
                    out.overrides.serializer = Some(f);
                }
                "--max-workers" => {
                    let v = value("--max-workers")?;
                    let n = v.parse::<usize>().map_err(|e| ArgsError::Invalid {
                        flag: "--max-workers",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
                    out.overrides.max_workers = Some(n);
                }
                "--service" => out.services.push(value("--service")?),
                "--exec" => out.exec.push(value("--exec")?),
                "--shell" if inline.is_none() => out.shell = true,
                "--no-http" if inline.is_none() => out.no_http = true,
                _ => return Err(ArgsError::Unknown(arg)),
            }
        }
        Ok(Parsed::Run(out))
    }

    /// Loads the configuration these arguments name, with their overrides on top.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        config::load(self.config.as_deref(), &self.overrides)
    }

    /// The arguments again, in the form [`HostArgs::parse`] reads: to hand to another process.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |flag: &str, value: String| {
            out.push(flag.to_string());
            out.push(value);
        };
        if let Some(c) = &self.config {
            push("--config", path_text(c));
        }
        let o = &self.overrides;
        if let Some(b) = &o.broker {
            push("--broker", b.clone());
        }
        if let Some(t) = o.rpc_timeout {
            push("--timeout", format!("{}ms", t.as_millis()));
        }
        if let Some(s) = o.serializer {
            push("--serializer", s.name().into());
        }
        if let Some(n) = o.max_workers {
            push("--max-workers", n.to_string());
        }
        for s in &self.services {
            push("--service", s.clone());
        }
        for e in &self.exec {
            push("--exec", e.clone());
        }
        if self.shell {
            out.push("--shell".into());
        }
        if self.no_http {
            out.push("--no-http".into());
        }
        out
    }
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(args: &[&str]) -> HostArgs {
        match HostArgs::parse(args.iter().copied()) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn every_flag_in_both_spellings_and_back() {
        let a = run(&[
            "--config",
            "x.toml",
            "--broker=nats://h:4222",
            "--timeout",
            "1m30s",
            "--serializer=json",
            "--max-workers",
            "3",
            "--service",
            "a",
            "--service=b",
            "--exec",
            "a.f(1)",
            "--shell",
            "--no-http",
        ]);
        assert_eq!(a.config.as_deref(), Some(Path::new("x.toml")));
        assert_eq!(a.overrides.broker.as_deref(), Some("nats://h:4222"));
        assert_eq!(a.overrides.rpc_timeout, Some(Duration::from_secs(90)));
        assert_eq!(a.overrides.serializer, Some(Format::Json));
        assert_eq!(a.overrides.max_workers, Some(3));
        assert_eq!(a.services, ["a", "b"]);
        assert_eq!(a.exec, ["a.f(1)"]);
        assert!(a.shell);
        assert!(a.no_http);
        assert_eq!(
            run(&a.to_args().iter().map(String::as_str).collect::<Vec<_>>()),
            a
        );
        // An expression may hold `=`; only a flag's first one splits.
        assert_eq!(run(&["--exec=s.f(x=1)"]).exec, ["s.f(x=1)"]);
        assert_eq!(run(&["--exec", "s.f(x=1)"]).exec, ["s.f(x=1)"]);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |args: &[&str]| HostArgs::parse(args.iter().copied()).unwrap_err();
        assert_eq!(err(&["--brokr", "x"]), ArgsError::Unknown("--brokr".into()));
        assert_eq!(err(&["--broker"]), ArgsError::MissingValue("--broker"));
        assert_eq!(
            err(&["--shell=yes"]),
            ArgsError::Unknown("--shell=yes".into())
        );
        assert!(matches!(
            err(&["--max-workers", "many"]),
            ArgsError::Invalid {
                flag: "--max-workers",
                ..
            }
        ));
        assert!(matches!(
            err(&["--timeout", "soon"]),
            ArgsError::Invalid {
                flag: "--timeout",
                ..
            }
        ));
        assert!(matches!(
            err(&["--serializer", "xml"]),
            ArgsError::Invalid {
                flag: "--serializer",
                ..
            }
        ));
        assert_eq!(HostArgs::parse(["-h"]), Ok(Parsed::Help));
        assert_eq!(
            HostArgs::parse(["--broker", "x", "--help"]),
            Ok(Parsed::Help)
        );
    }
}
