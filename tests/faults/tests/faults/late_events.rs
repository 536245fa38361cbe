//! Events handled late, and retries that wait.
//!
//! - An event dispatched inside a call made with a 2 s timeout, and taken up 5 s later (its
//!   handler's service was down meanwhile): the handler's own calls work. Before, every call the
//!   handler made failed at once with "timed out after 0ns", and the event was dead-lettered.
//! - A handler whose downstream service is down retries with back-off that the broker holds:
//!   while the retry waits, the service's only worker place is free for other work, and once the
//!   downstream service is back the event goes through instead of being dead-lettered within
//!   seconds.

use std::sync::Mutex;
use std::time::Duration;

use basidia::prelude::*;
use basidia::{RunnerConfig, RunningServices, ServiceOverrides};

use crate::amqp_wire::url;
use crate::child::{serial, NO_ARGS, NO_KWARGS};

/// Attempts and failures by event id (other runs' leftovers have ids of their own).
static ATTEMPTS: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());
static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn attempts(id: &str) -> usize {
    ATTEMPTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(i, _)| i == id)
        .count()
}

fn failures(id: &str) -> usize {
    ATTEMPTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(i, failed)| i == id && *failed)
        .count()
}

#[service]
struct LateSource {
    events: EventDispatcher,
}

#[service(name = "t_late_source")]
impl LateSource {
    #[rpc]
    async fn fire(&self, id: String) -> Result<(), RpcError> {
        self.events.dispatch("job", &id).await
    }
}

#[service]
struct LateHandler {
    proxy: RpcProxy,
}

#[service(name = "t_late_handler")]
impl LateHandler {
    #[rpc]
    async fn ping(&self) -> String {
        "pong".into()
    }

    #[event_handler("t_late_source", "job")]
    async fn on_job(&self, id: String) -> Result<(), RpcError> {
        // A worker that is down leaves its durable queue behind, so calls to it wait for their
        // deadline rather than fail at once.
        let echoed: Result<String, _> = self
            .proxy
            .clone()
            .with_timeout(Duration::from_secs(1))
            .call("t_late_worker", "work", &(id.clone(),), &NO_KWARGS)
            .await;
        ATTEMPTS.lock().unwrap().push((id, echoed.is_err()));
        let echoed = echoed?;
        DONE.lock().unwrap().push(echoed);
        Ok(())
    }
}

#[service]
struct LateWorker;

#[service(name = "t_late_worker")]
impl LateWorker {
    #[rpc]
    async fn work(&self, id: String) -> String {
        id
    }
}

fn config(retry_delay: Duration) -> RunnerConfig {
    let mut config = RunnerConfig::default();
    config.defaults.event_retry_delay = retry_delay;
    config.services.insert(
        "t_late_handler".into(),
        ServiceOverrides {
            max_workers: Some(1),
            ..ServiceOverrides::default()
        },
    );
    config
}

async fn host(url: &str, config: &RunnerConfig, add: impl FnOnce(&mut Runner)) -> RunningServices {
    let broker = basidia::connect(url).await.unwrap();
    let mut runner = Runner::new(broker).with_config(config.clone());
    add(&mut runner);
    runner.start().await.expect("the services start")
}

async fn done(id: &str, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if DONE.lock().unwrap().iter().any(|d| d == id) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_taken_up_late_has_a_deadline_of_its_own() {
    let Some(url) = url() else { return };
    let _serial = serial().await;
    let config = config(Duration::from_millis(100));
    // The handler's queue exists, then its service goes down.
    host(&url, &config, |r| {
        r.add::<LateHandler>();
    })
    .await
    .stop()
    .await;
    let others = host(&url, &config, |r| {
        r.add::<LateSource>().add::<LateWorker>();
    })
    .await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    others
        .rpc_proxy()
        .with_timeout(Duration::from_secs(2))
        .call::<(), _, _>("t_late_source", "fire", &(id.clone(),), &NO_KWARGS)
        .await
        .expect("the event is dispatched");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let handler = host(&url, &config, |r| {
        r.add::<LateHandler>();
    })
    .await;
    assert!(
        done(&id, Duration::from_secs(20)).await,
        "the late handler's call went through"
    );
    assert_eq!(attempts(&id), 1, "it went through at the first attempt");
    handler.stop().await;
    others.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_outside_the_worker_and_outlast_an_outage() {
    let Some(url) = url() else { return };
    let _serial = serial().await;
    let retry = Duration::from_secs(3);
    let config = config(retry);
    let services = host(&url, &config, |r| {
        r.add::<LateSource>().add::<LateHandler>();
    })
    .await;
    let proxy = services.rpc_proxy();
    let id = uuid::Uuid::new_v4().simple().to_string();
    proxy
        .call::<(), _, _>("t_late_source", "fire", &(id.clone(),), &NO_KWARGS)
        .await
        .expect("the event is dispatched");
    // The first attempt fails: t_late_worker is not running.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while failures(&id) == 0 {
        assert!(
            tokio::time::Instant::now() < end,
            "the handler never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The only worker place is free while the retry waits.
    let asked = tokio::time::Instant::now();
    let pong: String = proxy
        .call("t_late_handler", "ping", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("the handler's service answers");
    assert_eq!(pong, "pong");
    assert!(
        asked.elapsed() < retry / 3,
        "a call waited {:?} for a worker that sat out a retry delay of {retry:?}",
        asked.elapsed()
    );
    // The downstream service comes back a few seconds into the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let worker = host(&url, &config, |r| {
        r.add::<LateWorker>();
    })
    .await;
    assert!(
        done(&id, Duration::from_secs(30)).await,
        "the event went through once the downstream service was back"
    );
    let attempts = attempts(&id);
    assert!((2..=3).contains(&attempts), "{attempts} attempts");
    worker.stop().await;
    services.stop().await;
}
