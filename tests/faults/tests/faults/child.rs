//! A service host in a process of its own: this test binary started again with the ignored
//! test [`host_child`] selected, hosting the services below until it gets a signal. What the
//! handlers do is appended to a log file the parent reads, so runs can be counted across
//! processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use basidia::prelude::*;
use basidia::RunnerConfig;

const URL_VAR: &str = "BASIDIA_FAULT_CHILD_URL";
const LOG_VAR: &str = "BASIDIA_FAULT_CHILD_LOG";
const GRACE_VAR: &str = "BASIDIA_FAULT_CHILD_GRACE_MS";

/// No positional arguments.
pub const NO_ARGS: [u8; 0] = [];
/// No keyword arguments.
pub const NO_KWARGS: std::collections::BTreeMap<String, u8> = std::collections::BTreeMap::new();

/// How long the slow handlers work.
pub const WORK: Duration = Duration::from_secs(3);

fn record(what: &str, id: &str) {
    let Some(path) = std::env::var_os(LOG_VAR) else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the run log opens");
    writeln!(f, "{what} {id}").expect("the run log takes a line");
}

/// Works for `how_long`, recording the start and the end of `id`.
async fn slow(id: &str, how_long: Duration) {
    record("start", id);
    tokio::time::sleep(how_long).await;
    record("done", id);
}

/// Runs `rabbitmqctl` with `args`, failing the test if it fails; its standard output.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Slow work, counted.
#[service]
pub struct DrainProbe;

#[service(name = "drain_probe")]
impl DrainProbe {
    /// Answers at once: the parent waits for this before it starts.
    #[rpc]
    async fn ping(&self) -> String {
        "pong".into()
    }

    /// Works for [`WORK`], recording its start and end.
    #[rpc]
    async fn work(&self, id: String) -> String {
        slow(&id, WORK).await;
        id
    }

    /// Works for `secs` seconds, longer than a grace period if need be.
    #[rpc]
    async fn linger(&self, id: String, secs: u64) -> String {
        slow(&id, Duration::from_secs(secs)).await;
        id
    }

    /// The same for an event.
    #[event_handler("drain_source", "job")]
    async fn on_job(&self, id: String) {
        slow(&id, WORK).await;
    }
}

/// A second service in the same process, so that a stop drains several at once.
#[service]
pub struct DrainPeer;

#[service(name = "drain_peer")]
impl DrainPeer {
    /// Works for [`WORK`], recording its start and end.
    #[rpc]
    async fn work(&self, id: String) -> String {
        slow(&id, WORK).await;
        id
    }

    /// Works for `secs` seconds.
    #[rpc]
    async fn linger(&self, id: String, secs: u64) -> String {
        slow(&id, Duration::from_secs(secs)).await;
        id
    }
}

/// Takes its process down in the middle of an event, as a segfaulting library or an OOM kill
/// would. Hosted only by children started with [`Mode::poison`].
#[service]
pub struct PoisonProbe;

#[service(name = "poison_probe")]
impl PoisonProbe {
    /// Records its start, then aborts the process.
    #[event_handler("poison_source", "job")]
    async fn on_job(&self, id: String) {
        record("start", &id);
        std::process::abort();
    }
}

/// How a child host is set up.
#[derive(Debug, Clone)]
pub struct Mode {
    /// The shutdown grace.
    pub grace: Duration,
    /// Host [`PoisonProbe`], with this `event_max_deliveries`.
    pub poison: Option<u32>,
    /// On AMQP: quorum event queues.
    pub quorum: bool,
    /// On NATS: the JetStream ack wait.
    pub ack_wait: Option<Duration>,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            grace: Duration::from_secs(10),
            poison: None,
            quorum: false,
            ack_wait: None,
        }
    }
}

impl Mode {
    /// Hosts the poison service, dead-lettering past `max_deliveries`.
    pub fn poison(max_deliveries: u32) -> Self {
        Mode {
            poison: Some(max_deliveries),
            ..Mode::default()
        }
    }

    fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(GRACE_VAR, self.grace.as_millis().to_string())];
        if let Some(max) = self.poison {
            env.push((POISON_VAR, max.to_string()));
        }
        if self.quorum {
            env.push((QUORUM_VAR, "1".into()));
        }
        if let Some(wait) = self.ack_wait {
            env.push((ACK_WAIT_VAR, wait.as_millis().to_string()));
        }
        env
    }
}

const POISON_VAR: &str = "BASIDIA_FAULT_CHILD_POISON";
const QUORUM_VAR: &str = "BASIDIA_FAULT_CHILD_QUORUM";
const ACK_WAIT_VAR: &str = "BASIDIA_FAULT_CHILD_ACK_WAIT_MS";

fn env_ms(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .map(|v| Duration::from_millis(v.parse().unwrap()))
}

async fn connect_child(url: &str) -> basidia::SharedBroker {
    if url.starts_with("amqp") {
        let mut options = basidia::AmqpOptions::new(url);
        options.quorum_queues = std::env::var_os(QUORUM_VAR).is_some();
        return std::sync::Arc::new(
            basidia::AmqpBroker::connect_with(options)
                .await
                .expect("RabbitMQ answers"),
        );
    }
    let mut options = basidia::NatsOptions::new(url);
    if let Some(wait) = env_ms(ACK_WAIT_VAR) {
        options.ack_wait = wait;
    }
    std::sync::Arc::new(
        basidia::NatsBroker::connect_with(options)
            .await
            .expect("NATS answers"),
    )
}

/// The child's side: hosts the services on the broker named in the environment until SIGTERM,
/// as `basidia run` does. Selected explicitly by [`Host::spawn`]; ignored otherwise.
#[test]
#[ignore = "run by the fault tests in a process of its own"]
fn host_child() {
    let Ok(url) = std::env::var(URL_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    runtime.block_on(async move {
        let broker = connect_child(&url).await;
        let mut config = RunnerConfig::default();
        config.defaults.shutdown_grace = env_ms(GRACE_VAR).unwrap_or(Duration::from_secs(10));
        let mut runner = Runner::new(broker.clone()).with_config(config.clone());
        runner.add::<DrainProbe>().add::<DrainPeer>();
        if let Ok(max) = std::env::var(POISON_VAR) {
            config.defaults.event_max_deliveries = max.parse().unwrap();
            runner = Runner::new(broker.clone()).with_config(config);
            // Only the probe's ping: its event queue may be of the other queue type.
            runner
                .add_with::<DrainProbe>(basidia::ServiceOptions::new().only_entrypoints(["ping"]))
                .add::<PoisonProbe>();
        }
        runner.run().await.expect("the services run");
        broker.close().await;
    });
}

/// A running child host.
pub struct Host {
    child: Child,
    stderr: PathBuf,
}

impl Host {
    /// Starts a host on `url` that records runs in `log`, and waits until it answers.
    pub async fn start(url: &str, log: &Path, caller: &RpcProxy) -> Host {
        Self::start_with(url, log, caller, &Mode::default()).await
    }

    /// [`Host::start`] with a shutdown grace of `grace`.
    pub async fn start_with_grace(
        url: &str,
        log: &Path,
        caller: &RpcProxy,
        grace: Duration,
    ) -> Host {
        let mode = Mode {
            grace,
            ..Mode::default()
        };
        Self::start_with(url, log, caller, &mode).await
    }

    /// Starts a host without waiting for it to answer.
    pub fn spawn(url: &str, log: &Path, mode: &Mode) -> Host {
        let stderr = log.with_extension(format!("stderr-{}", uuid::Uuid::new_v4().simple()));
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--ignored", "--exact", "child::host_child", "--nocapture"])
            .env(URL_VAR, url)
            .env(LOG_VAR, log)
            .env(
                "RUST_LOG",
                std::env::var("BASIDIA_FAULT_CHILD_LOG_FILTER").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in mode.to_env() {
            command.env(k, v);
        }
        let child = command.spawn().expect("the child host starts");
        Host { child, stderr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size of the process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kb * 1024
    }

    /// Whether the process has ended.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts a host in `mode` and waits until it answers.
    pub async fn start_with(url: &str, log: &Path, caller: &RpcProxy, mode: &Mode) -> Host {
        let host = Self::spawn(url, log, mode);
        let quick = caller.clone().with_timeout(Duration::from_secs(1));
        let mut last = None;
        for _ in 0..60 {
            let pong: Result<String, _> = quick
                .call("drain_probe", "ping", &NO_ARGS, &NO_KWARGS)
                .await;
            if pong.is_ok() {
                // The event handlers subscribe right after the RPC consumer.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return host;
            }
            last = pong.err();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "the child host never answered ({last:?}); its log:\n{}",
            host.log()
        );
    }

    /// Sends SIGTERM, as a deploy does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end, at most `limit`; its exit status.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "the child host did not stop within {limit:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A graceful stop, so that nothing this host holds is left for the next test's hosts.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
            let end = std::time::Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// How many lines of the run log read `<what> <id>`.
pub fn count(log: &Path, what: &str, id: &str) -> usize {
    let line = format!("{what} {id}");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Waits until the run log has `<what> <id>`, at most `limit`.
pub async fn wait_for(log: &Path, what: &str, id: &str, limit: Duration) {
    let end = tokio::time::Instant::now() + limit;
    while count(log, what, id) == 0 {
        assert!(
            tokio::time::Instant::now() < end,
            "no {what:?} of {id} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh path for a run log.
pub fn scratch_log(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "basidia-{label}-{}.log",
        uuid::Uuid::new_v4().simple()
    ))
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by every test of this binary: they share service names, queues and the brokers' state
/// (an alarm blocks every connection), so one test's hosts must not take another's work.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}
