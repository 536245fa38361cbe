//! Dependencies, configuration, lifecycle hooks, concurrency bounds, graceful shutdown,
//! hand-written services and declared clients.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use basidia::prelude::*;
use basidia::{Arguments, EncodedReply, MethodDescription, ParamDescription};
use basidia::{
    Error, InjectContext, RemoteError, RunnerConfig, ServiceDescription, ServiceOverrides,
    WorkerInfo,
};
use basidia_testing::ServiceHarness;
use serde::Deserialize;
use serde_json::json;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(line: impl Into<String>) {
    LOG.lock().unwrap().push(line.into());
}

/// A provider that records its lifecycle.
struct Recorder {
    label: String,
}

#[async_trait]
impl DependencyProvider for Recorder {
    async fn setup(cx: &InjectContext) -> Result<Self, basidia::BoxError> {
        #[derive(Deserialize)]
        struct Section {
            label: String,
        }
        let s: Section = cx.section("recorder")?;
        log(format!("setup {} for {}", s.label, cx.service()));
        Ok(Recorder { label: s.label })
    }
    async fn start(&self) -> Result<(), basidia::BoxError> {
        log("start");
        Ok(())
    }
    async fn stop(&self) {
        log("stop");
    }
    fn worker_setup(&self, w: &WorkerInfo<'_>) {
        log(format!("worker_setup {}", w.entrypoint));
    }
    fn worker_result(&self, w: &WorkerInfo<'_>, outcome: Result<(), &RemoteError>) {
        log(format!(
            "worker_result {} {}",
            w.entrypoint,
            outcome.is_ok()
        ));
    }
    fn worker_teardown(&self, w: &WorkerInfo<'_>) {
        log(format!("worker_teardown {}", w.entrypoint));
    }
}

/// The greeting section.
#[derive(Debug, Deserialize)]
struct Greeting {
    prefix: String,
    #[serde(default = "default_suffix")]
    suffix: String,
}

fn default_suffix() -> String {
    "!".into()
}

#[service]
struct Hooks {
    rec: Provided<Recorder>,
    #[inject(section = "greeting")]
    words: Config<Greeting>,
}

#[service(name = "hooks")]
impl Hooks {
    #[on_start]
    async fn begin(&self) {
        log("on_start");
    }

    #[on_stop]
    async fn end(&self) {
        log("on_stop");
    }

    #[rpc]
    async fn greet(&self, name: String) -> String {
        format!(
            "{} {name}{} ({})",
            self.words.prefix, self.words.suffix, self.rec.label
        )
    }

    #[rpc]
    async fn fail(&self) -> Result<(), RemoteError> {
        Err(RemoteError::new(basidia::ErrorKind::Handler, "nope"))
    }
}

#[tokio::test]
async fn providers_config_and_hooks_run_in_order() {
    let h = ServiceHarness::builder()
        .section("recorder", json!({"label": "rec1"}))
        .section("greeting", json!({"prefix": "Hi"}))
        .service::<Hooks>()
        .start()
        .await
        .unwrap();
    let c = h.client::<HooksClient>();
    assert_eq!(c.greet("Ann".into()).await.unwrap(), "Hi Ann! (rec1)");
    assert!(c.fail().await.is_err());
    h.stop().await;
    let log: Vec<String> = LOG
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("setup x"))
        .cloned()
        .collect();
    assert_eq!(
        log,
        vec![
            "setup rec1 for hooks",
            "start",
            "on_start",
            "worker_setup greet",
            "worker_result greet true",
            "worker_teardown greet",
            "worker_setup fail",
            "worker_result fail false",
            "worker_teardown fail",
            "on_stop",
            "stop",
        ]
    );
}

#[tokio::test]
async fn a_bad_config_section_is_an_error_naming_it() {
    let err = ServiceHarness::builder()
        .section("recorder", json!({"label": "x"}))
        .section("greeting", json!({"prefix": 12}))
        .service::<Hooks>()
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("[greeting]"), "{err}");
}

#[service]
struct Busy {
    #[inject(default)]
    active: AtomicUsize,
    #[inject(default)]
    peak: AtomicUsize,
}

#[service(name = "busy")]
impl Busy {
    #[rpc]
    async fn work(&self, ms: u64) -> u64 {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        ms
    }

    #[rpc]
    async fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

fn busy_config(max_workers: usize, grace: Duration) -> RunnerConfig {
    let mut c = RunnerConfig::default();
    c.services.insert(
        "busy".into(),
        ServiceOverrides {
            max_workers: Some(max_workers),
            shutdown_grace: Some(grace),
            ..ServiceOverrides::default()
        },
    );
    c
}

#[tokio::test(start_paused = true)]
async fn max_workers_bounds_concurrency_and_shutdown_drains_in_flight_work() {
    let h = ServiceHarness::builder()
        .config(busy_config(2, Duration::from_secs(30)))
        .service::<Busy>()
        .start()
        .await
        .unwrap();
    let c = h.client::<BusyClient>();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.work(100).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 100);
    }
    assert_eq!(c.peak().await.unwrap(), 2);

    // A long call in flight when the stop begins still completes.
    let in_flight = {
        let c = c.clone();
        tokio::spawn(async move { c.work(5_000).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.stop().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), 5_000);
    // Stopped: nothing consumes the queue any more, so a call waits for its deadline.
    let err = c
        .with_timeout(Duration::from_secs(1))
        .work(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), basidia::ErrorKind::Timeout);
}

/// A service written without the macros.
struct Manual;

#[async_trait]
impl Service for Manual {
    fn name(&self) -> &str {
        "manual"
    }

    fn describe(&self) -> ServiceDescription {
        ServiceDescription {
            name: "manual".into(),
            rpc: vec![MethodDescription {
                name: "double".into(),
                params: vec![ParamDescription {
                    name: "n".into(),
                    ty: "i64".into(),
                    schema: None,
                }],
                returns: "i64".into(),
                returns_schema: None,
                doc: String::new(),
                roles: Vec::new(),
            }],
            ..ServiceDescription::default()
        }
    }

    async fn handle_rpc(
        &self,
        method: &str,
        mut args: Arguments,
    ) -> Result<EncodedReply, RemoteError> {
        match method {
            "double" => {
                args.check(&["n"])?;
                let n: i64 = args.take(0, "n")?;
                basidia::__private::reply_ok(args.format(), &(n * 2))
            }
            _ => Err(RemoteError::method_not_found("manual", method)),
        }
    }
}

/// A client declared for a service defined elsewhere.
#[client(service = "manual")]
trait Manual {
    /// Doubles.
    async fn double(&self, n: i64) -> i64;
    /// Not served.
    async fn triple(&self, n: i64) -> i64;
}

#[tokio::test]
async fn hand_written_services_and_declared_clients_work_together() {
    let h = ServiceHarness::builder()
        .instance(Manual)
        .start()
        .await
        .unwrap();
    let c = h.client::<ManualClient>();
    assert_eq!(c.double(21).await.unwrap(), 42);
    let err = c.triple(1).await.unwrap_err();
    assert_eq!(err.kind(), basidia::ErrorKind::MethodNotFound);
    let d = h.proxy().describe("manual").await.unwrap();
    assert_eq!(d.rpc[0].name, "double");
    let kw: BTreeMap<&str, i64> = [("n", 5)].into_iter().collect();
    let v: i64 = h
        .proxy()
        .call("manual", "double", &[(); 0], &kw)
        .await
        .unwrap();
    assert_eq!(v, 10);
    h.stop().await;
}

#[service]
struct Caller {
    #[inject(timeout = "1s")]
    busy: Dependency<BusyClient>,
    rpc: RpcProxy,
}

#[service(name = "caller")]
impl Caller {
    #[rpc]
    async fn slow_call(&self) -> Result<u64, RpcError> {
        self.busy.work(60_000).await
    }

    #[rpc]
    async fn dynamic(&self, ms: u64) -> Result<u64, RpcError> {
        self.rpc
            .call("busy", "work", &(ms,), &basidia_core::envelope::NoKwargs)
            .await
    }
}

#[tokio::test(start_paused = true)]
async fn a_dependency_timeout_bounds_its_calls() {
    let h = ServiceHarness::builder()
        .config(busy_config(10, Duration::from_secs(1)))
        .service::<Caller>()
        .service::<Busy>()
        .start()
        .await
        .unwrap();
    let c = h.client::<CallerClient>();
    let err = c.slow_call().await.unwrap_err();
    let remote = err
        .remote()
        .expect("the timeout travels back as a remote error");
    assert_eq!(remote.exc_type, "Timeout");
    assert_eq!(c.dynamic(5).await.unwrap(), 5);
    h.stop().await;
}

#[tokio::test]
async fn runners_reject_duplicates_and_unknown_names() {
    let broker: basidia::SharedBroker = Arc::new(basidia::MemoryBroker::new());
    let mut r = Runner::new(broker.clone());
    r.add::<Busy>().add::<Busy>();
    assert!(matches!(r.start().await, Err(Error::DuplicateService(ref s)) if s == "busy"));
    let mut r = Runner::new(broker.clone());
    r.add::<Busy>().only(["nope"]);
    let err = r.start().await.unwrap_err();
    assert!(
        err.to_string().contains("no service named \"nope\""),
        "{err}"
    );
    let mut r = Runner::new(broker);
    r.add::<Busy>().add_instance(Manual).only(["manual"]);
    let running = r.start().await.unwrap();
    assert_eq!(running.names(), vec!["manual"]);
    running.stop().await;
}

#[service]
struct Crunch {
    #[inject(default)]
    active: AtomicUsize,
    #[inject(default)]
    peak: AtomicUsize,
}

#[service(name = "crunch")]
impl Crunch {
    /// Holds its thread for `ms` without yielding, as CPU-bound work does.
    #[rpc]
    async fn spin(&self, ms: u64) -> u64 {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.active.fetch_sub(1, Ordering::SeqCst);
        ms
    }

    #[rpc]
    async fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_that_hold_their_thread_still_run_side_by_side() {
    // Workers start on the consume loop; one whose first step holds the thread makes the next
    // ones start on tasks of their own, so they use the other threads instead of queueing.
    let h = ServiceHarness::builder()
        .service::<Crunch>()
        .start()
        .await
        .unwrap();
    let c = h.client::<CrunchClient>();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.spin(100).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 100);
    }
    let peak = c.peak().await.unwrap();
    assert!(
        peak >= 2,
        "CPU-bound workers ran one at a time (peak {peak})"
    );
    h.stop().await;
}
