//! What an operator does to the broker under a running service, and channel
//! errors.
//!
//! - `rabbitmqctl delete_queue` on a service's RPC queue, its event queue and the caller's reply
//!   queue: the service notices the cancellation, declares the queue again and consumes it, and
//!   calls and events work again within seconds. Before, the service stayed deaf for good
//!   (every call answered UnknownService) and logged nothing; with the reply queue gone every
//!   call timed out.
//! - Channel errors (a publish to an exchange an operator deleted, a message over the broker's
//!   size limit, a delivery held past RabbitMQ's `consumer_timeout`) close one channel, which is reopened on the same connection; the process keeps
//!   one connection. Before, a channel error counted as a lost connection: a second connection
//!   was opened while the first stayed.

use std::sync::Arc;
use std::time::Duration;

use basidia::prelude::*;
use basidia::AmqpBroker;
use basidia::{Broker, Message};

use crate::amqp_wire::url;
use crate::child::{rabbitmqctl, serial, NO_ARGS, NO_KWARGS};

static EVENTS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

#[service]
struct Deaf;

#[service(name = "t_deaf")]
impl Deaf {
    #[rpc]
    async fn hello(&self) -> String {
        "hello".into()
    }

    #[event_handler("t_deaf_src", "ping")]
    async fn on_ping(&self, n: u32) {
        EVENTS.lock().unwrap().push(n);
    }
}

/// How many connections the broker holds under `name`.
fn connections_named(name: &str) -> usize {
    rabbitmqctl(&["-q", "list_connections", "client_properties"])
        .lines()
        .filter(|l| l.contains(&format!("\"{name}\"")))
        .count()
}

struct Fixture {
    server: Arc<AmqpBroker>,
    caller: Arc<AmqpBroker>,
    running: basidia::RunningServices,
    proxy: RpcProxy,
}

async fn fixture(url: &str) -> Fixture {
    let server = Arc::new(AmqpBroker::connect(url).await.unwrap());
    let caller = Arc::new(AmqpBroker::connect(url).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<Deaf>();
    let running = runner.start().await.unwrap();
    let proxy = RpcProxy::new(caller.clone()).with_timeout(Duration::from_secs(1));
    Fixture {
        server,
        caller,
        running,
        proxy,
    }
}

impl Fixture {
    /// Calls `hello` until it answers, at most `limit`.
    async fn answers_within(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        let mut last = None;
        while tokio::time::Instant::now() < end {
            match self
                .proxy
                .call::<String, _, _>("t_deaf", "hello", &NO_ARGS, &NO_KWARGS)
                .await
            {
                Ok(answer) => {
                    assert_eq!(answer, "hello");
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("t_deaf did not answer within {limit:?}: {last:?}");
    }

    /// Publishes the event `n` until its handler has it, at most `limit`.
    async fn handles_within(&self, n: u32, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            let body = serde_json::to_vec(&n).unwrap();
            let _ = self
                .caller
                .publish_event("t_deaf_src", "ping", Message::new(body, "application/json"))
                .await;
            for _ in 0..10 {
                if EVENTS.lock().unwrap().contains(&n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("event {n} was not handled within {limit:?}");
    }

    fn one_connection_each(&self) {
        for broker in [&self.server, &self.caller] {
            let name = broker.connection_name();
            assert_eq!(connections_named(&name), 1, "connections of {name}");
        }
    }

    async fn stop(self) {
        self.running.stop().await;
        self.caller.close().await;
        self.server.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_queues_are_declared_and_consumed_again() {
    let Some(url) = url() else { return };
    let _serial = serial().await;
    let f = fixture(&url).await;
    f.answers_within(Duration::from_secs(5)).await;
    f.handles_within(1, Duration::from_secs(5)).await;

    rabbitmqctl(&["-q", "delete_queue", "rpc-t_deaf"]);
    f.answers_within(Duration::from_secs(10)).await;

    rabbitmqctl(&["-q", "delete_queue", "evt-t_deaf_src-ping--t_deaf.on_ping"]);
    // Events published while no queue is bound are unroutable and gone, as with any topic
    // exchange; the handler gets those published once its queue is back.
    f.handles_within(2, Duration::from_secs(10)).await;

    rabbitmqctl(&["-q", "delete_queue", f.caller.reply_queue()]);
    f.answers_within(Duration::from_secs(10)).await;

    f.one_connection_each();
    f.stop().await;
}

fn delete_exchange(name: &str) {
    rabbitmqctl(&[
        "-q",
        "eval",
        &format!(
            "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"{name}\">>), false, <<\"test\">>)."
        ),
    ]);
}

/// Sets a RabbitMQ application setting while it lives, and puts the one found back on drop.
struct BrokerSetting {
    key: &'static str,
    found: String,
}

impl BrokerSetting {
    fn set(key: &'static str, value: &str) -> Self {
        let found = rabbitmqctl(&[
            "-q",
            "eval",
            &format!("application:get_env(rabbit, {key})."),
        ])
        .trim()
        .to_string();
        rabbitmqctl(&[
            "-q",
            "eval",
            &format!("application:set_env(rabbit, {key}, {value})."),
        ]);
        BrokerSetting { key, found }
    }
}

impl Drop for BrokerSetting {
    fn drop(&mut self) {
        let restore = match self
            .found
            .strip_prefix("{ok,")
            .and_then(|v| v.strip_suffix('}'))
        {
            Some(value) => format!("application:set_env(rabbit, {}, {value}).", self.key),
            None => format!("application:unset_env(rabbit, {}).", self.key),
        };
        rabbitmqctl(&["-q", "eval", &restore]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_error_reopens_that_channel_only() {
    let Some(url) = url() else { return };
    let _serial = serial().await;
    let f = fixture(&url).await;
    f.handles_within(10, Duration::from_secs(5)).await;

    // A publish to an exchange an operator deleted: NOT_FOUND closes the publishing channel.
    delete_exchange("t_deaf_src.events");
    let body = serde_json::to_vec(&11u32).unwrap();
    let refused = f
        .caller
        .publish_event("t_deaf_src", "ping", Message::new(body, "application/json"))
        .await;
    assert!(
        refused.is_err(),
        "the publish to a deleted exchange fails: {refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.one_connection_each();
    f.answers_within(Duration::from_secs(5)).await;
    let body = serde_json::to_vec(&11u32).unwrap();
    f.caller
        .publish_event("t_deaf_src", "ping", Message::new(body, "application/json"))
        .await
        .expect("the exchange is declared again on the reopened channel");

    // A message over the broker's size limit: PRECONDITION_FAILED closes the channel. The limit
    // applies to connections made after it is set.
    let limited = {
        let _limit = BrokerSetting::set("max_message_size", "4096");
        let limited = AmqpBroker::connect(&url).await.unwrap();
        let body = serde_json::to_vec(&"x".repeat(8192)).unwrap();
        let refused = limited
            .publish_event("t_deaf_src", "big", Message::new(body, "application/json"))
            .await;
        assert!(refused.is_err(), "an oversize publish fails: {refused:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        limited
    };
    assert_eq!(connections_named(&limited.connection_name()), 1);
    let body = serde_json::to_vec(&12u32).unwrap();
    limited
        .publish_event("t_deaf_src", "ping", Message::new(body, "application/json"))
        .await
        .expect("publishing works again on the reopened channel");
    let answer: String = RpcProxy::new(Arc::new(limited.clone()))
        .call("t_deaf", "hello", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("and so do calls");
    assert_eq!(answer, "hello");
    f.one_connection_each();
    limited.close().await;
    f.stop().await;
}

static LONG_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[service]
struct Overdue;

#[service(name = "t_overdue")]
impl Overdue {
    /// Holds its delivery past the broker's `consumer_timeout` the first time.
    #[rpc]
    async fn work(&self) -> u32 {
        let run = LONG_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if run == 1 {
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        run
    }

    #[rpc]
    async fn hello(&self) -> String {
        "hello".into()
    }
}

/// RabbitMQ's `consumer_timeout` closes the channel of a consumer that holds a delivery too
/// long, with the connection left open: a channel error from the broker's side, on a private
/// node configured with a one-second timeout checked every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_timeout_closes_one_channel_and_the_service_consumes_again() {
    if url().is_none() || !crate::rabbit_nodes::available() {
        return;
    }
    let _serial = serial().await;
    let node = tokio::task::spawn_blocking(|| {
        crate::rabbit_nodes::RabbitNodes::start(
            1,
            "consumer_timeout = 1000",
            "[{rabbit, [{channel_tick_interval, 500}]}].",
        )
    })
    .await
    .unwrap();
    let node = &node.nodes[0];
    let server = Arc::new(AmqpBroker::connect(&node.url()).await.unwrap());
    let caller = Arc::new(AmqpBroker::connect(&node.url()).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<Overdue>();
    let running = runner.start().await.unwrap();
    let proxy = RpcProxy::new(caller.clone()).with_timeout(Duration::from_secs(20));

    let run: u32 = proxy
        .call("t_overdue", "work", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("the overdue call is answered");
    eprintln!(
        "the overdue call was answered by run {run}; {} runs in all",
        LONG_RUNS.load(std::sync::atomic::Ordering::SeqCst)
    );
    let answered: String = proxy
        .call("t_overdue", "hello", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("the service consumes again after its channel was closed");
    assert_eq!(answered, "hello");
    let named = node
        .ctl(&["list_connections", "client_properties"])
        .lines()
        .filter(|l| l.contains(&format!("\"{}\"", server.connection_name())))
        .count();
    assert_eq!(named, 1, "the service keeps one connection");
    running.stop().await;
    caller.close().await;
    server.close().await;

    // On the same private node: quorum queues have no priorities, and a service asking for
    // both is refused at start with a reason rather than left half-declared.
    let quorum =
        AmqpBroker::connect_with(basidia::AmqpOptions::new(&node.url()).with_quorum_queues(true))
            .await
            .unwrap();
    let mut config = basidia::RunnerConfig::default();
    config.services.insert(
        "t_overdue".into(),
        basidia::ServiceOverrides {
            max_priority: Some(5),
            ..basidia::ServiceOverrides::default()
        },
    );
    let mut runner = Runner::new(Arc::new(quorum.clone())).with_config(config);
    runner.add::<Overdue>();
    let Err(refused) = runner.start().await else {
        panic!("priorities on a quorum queue are refused");
    };
    assert!(
        format!("{refused:#}").contains("priorities"),
        "the refusal says why: {refused:#}"
    );
    quorum.close().await;
}
