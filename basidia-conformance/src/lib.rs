//! The broker conformance suite: the broker contract as `pub async fn`s over brokers, so every
//! backend proves the same behaviour. Each function panics with a message on a violation.
//!
//! A backend's test calls them with a [`Connector`] that opens connections to one server:
//!
//! ```no_run
//! # async fn demo() {
//! use basidia_memory::MemoryBroker;
//! let server = MemoryBroker::new();
//! let connect = move || {
//!     let b: basidia_core::SharedBroker = std::sync::Arc::new(server.connect());
//!     Box::pin(async move { b }) as basidia_conformance::BrokerFuture
//! };
//! basidia_conformance::run_all(&connect).await;
//! # }
//! ```
//!
//! Every function uses fresh, unique service names, so the suite can run against a shared
//! real server.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use basidia_core::{
    BrokerError, ConsumeOptions, Delivery, EventBinding, HandlerType, HeaderValue, Message,
    SharedBroker, Subscription,
};

/// A connection being opened.
pub type BrokerFuture = Pin<Box<dyn Future<Output = SharedBroker> + Send>>;

/// Opens connections to the broker under test; every connection reaches the same server.
pub trait Connector: Send + Sync {
    /// Opens a connection.
    fn connect(&self) -> BrokerFuture;
}

impl<F> Connector for F
where
    F: Fn() -> BrokerFuture + Send + Sync,
{
    fn connect(&self) -> BrokerFuture {
        self()
    }
}

/// The URL of a real broker for tests, from the environment variable `var`. Without it the test
/// should skip: this prints why and returns `None`. Under CI (`CI` set) a missing URL is a failure,
/// so tests against real brokers never skip silently there.
pub fn broker_url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(std::env::var_os("CI").is_none(), "CI must set {var}");
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Declares one `#[tokio::test]` per conformance check. `$connector` is an expression that
/// evaluates to an `Option` of a [`Connector`] (`None` skips, for a broker that is not
/// configured).
///
/// ```ignore
/// basidia_conformance::conformance_tests!(Some(my_connector()));
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($connector:expr) => {
        $crate::conformance_tests!($connector;
            rpc_round_trip,
            large_messages_round_trip,
            unknown_service_fails_fast,
            call_times_out,
            replies_keep_their_content_type,
            requests_compete_across_instances,
            requeue_redelivers_with_flag_and_count,
            dropped_delivery_is_redelivered,
            dead_lettered_delivery_is_not_redelivered,
            prefetch_bounds_unsettled_deliveries,
            service_pool_events_fan_out_across_services_and_compete_within,
            singleton_events_reach_one_handler,
            broadcast_events_reach_every_instance,
            events_wait_in_durable_queues_while_the_handler_is_down,
            close_fails_calls_in_flight,
            concurrent_calls_get_their_own_replies,
            concurrent_calls_to_an_unknown_service_fail_fast,
            close_fails_every_call_in_flight,
        );
    };
    ($connector:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(connector) = $connector else { return };
            $crate::$name(&connector).await;
        }
    )*};
}

/// How long the suite waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the suite waits to be satisfied that something does not happen.
const QUIET: Duration = Duration::from_millis(300);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn next(sub: &mut Subscription, what: &str) -> Delivery {
    match tokio::time::timeout(PATIENCE, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing delivered within {PATIENCE:?}"),
    }
}

async fn nothing(sub: &mut Subscription, what: &str) {
    if let Ok(Some(d)) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("{what}: unexpected delivery {d:?}");
    }
}

/// How long a broker may take to deliver again what a consumer that went away left unsettled:
/// RabbitMQ and the memory broker do it as the consumer closes; JetStream once `ack_wait` has
/// passed, which a NATS connector for this suite sets to one second.
const REDELIVERY: Duration = Duration::from_millis(2500);

/// That a settled delivery is really settled: the consumer and its connection go away, as a
/// crashed process would, and a new consumer of the same queue gets nothing. Looking at the
/// same consumer would not do: RabbitMQ redelivers nothing while the channel is open, nor
/// JetStream before `ack_wait`, settled or not.
async fn nothing_comes_back(
    c: &dyn Connector,
    broker: SharedBroker,
    sub: Subscription,
    b: &EventBinding,
    what: &str,
) {
    drop(sub);
    broker.close().await;
    let other = c.connect().await;
    let mut again = other.subscribe(b, opts(10)).await.expect("resubscribe");
    if let Ok(Some(d)) = tokio::time::timeout(REDELIVERY, again.next()).await {
        panic!("{what}: delivered again to the next consumer: {d:?}");
    }
    drop(again);
    other.close().await;
}

fn json(body: &str) -> Message {
    Message::new(body.as_bytes().to_vec(), "application/json")
}

fn binding(
    source: &str,
    event_type: &str,
    service: &str,
    handler_type: HandlerType,
) -> EventBinding {
    EventBinding {
        source: source.into(),
        event_type: event_type.into(),
        service: service.into(),
        method: "handle".into(),
        handler_type,
        broadcast_id: uuid::Uuid::new_v4().simple().to_string(),
    }
}

fn opts(prefetch: u16) -> ConsumeOptions {
    ConsumeOptions {
        prefetch,
        ..ConsumeOptions::default()
    }
}

/// Gives a freshly declared consumer time to be bound on brokers that bind asynchronously.
async fn settle_in() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Runs every check in the suite.
pub async fn run_all(c: &dyn Connector) {
    rpc_round_trip(c).await;
    large_messages_round_trip(c).await;
    unknown_service_fails_fast(c).await;
    call_times_out(c).await;
    replies_keep_their_content_type(c).await;
    requests_compete_across_instances(c).await;
    requeue_redelivers_with_flag_and_count(c).await;
    dropped_delivery_is_redelivered(c).await;
    dead_lettered_delivery_is_not_redelivered(c).await;
    prefetch_bounds_unsettled_deliveries(c).await;
    service_pool_events_fan_out_across_services_and_compete_within(c).await;
    singleton_events_reach_one_handler(c).await;
    broadcast_events_reach_every_instance(c).await;
    events_wait_in_durable_queues_while_the_handler_is_down(c).await;
    close_fails_calls_in_flight(c).await;
    concurrent_calls_get_their_own_replies(c).await;
    concurrent_calls_to_an_unknown_service_fail_fast(c).await;
    close_fails_every_call_in_flight(c).await;
}

/// A request reaches the service's consumer with its headers, and the reply reaches the caller.
pub async fn rpc_round_trip(c: &dyn Connector) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_echo");
    let mut sub = server.serve(&service, opts(10)).await.expect("serve");
    settle_in().await;
    let responder = tokio::spawn(async move {
        let d = next(&mut sub, "rpc request").await;
        assert_eq!(
            d.routing_key, "echo",
            "the method travels as the routing key"
        );
        // In the message's headers, or (where headers are dear) in the request envelope.
        let in_envelope = serde_json::from_slice::<serde_json::Value>(&d.message.body)
            .ok()
            .and_then(|v| v["context"]["auth_token"].as_str().map(String::from));
        assert!(
            d.message.headers.get("auth_token") == Some(&HeaderValue::from("secret"))
                || in_envelope.as_deref() == Some("secret"),
            "context headers travel with the request"
        );
        assert!(
            d.message.correlation_id.is_some(),
            "requests carry a correlation id"
        );
        let reply = Message::new(d.message.body.clone(), "application/json");
        d.reply(reply).await.expect("reply");
        d.ack().await.expect("ack");
    });
    let mut request = json(r#"{"args":["hi"],"kwargs":{}}"#);
    request.headers.insert("auth_token".into(), "secret".into());
    let reply = client
        .call(&service, "echo", request, PATIENCE)
        .await
        .expect("call");
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON reply");
    assert_eq!(
        echoed["args"],
        serde_json::json!(["hi"]),
        "the body arrives whole"
    );
    assert_eq!(
        echoed["kwargs"],
        serde_json::json!({}),
        "the body arrives whole"
    );
    responder.await.expect("responder");
    server.close().await;
    client.close().await;
}

/// A request and a reply of 512 KiB (many frames on AMQP, within NATS's default 1 MiB limit)
/// arrive whole.
pub async fn large_messages_round_trip(c: &dyn Connector) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_large");
    let mut sub = server.serve(&service, opts(10)).await.expect("serve");
    settle_in().await;
    let body: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let responder = tokio::spawn(async move {
        let d = next(&mut sub, "large request").await;
        assert_eq!(
            d.message.body.len(),
            expected.len(),
            "the request arrives whole"
        );
        assert!(
            d.message.body[..] == expected[..],
            "the request arrives intact"
        );
        let mut reversed = expected.clone();
        reversed.reverse();
        d.reply(Message::new(reversed, "application/x-msgpack"))
            .await
            .expect("reply");
        d.ack().await.expect("ack");
    });
    let reply = client
        .call(
            &service,
            "echo",
            Message::new(body.clone(), "application/x-msgpack"),
            PATIENCE,
        )
        .await
        .expect("call");
    let mut reversed = body;
    reversed.reverse();
    assert!(
        reply.body[..] == reversed[..],
        "the reply arrives whole and intact"
    );
    responder.await.expect("responder");
    server.close().await;
    client.close().await;
}

/// A call to a service nobody serves fails at once with `UnknownService`, not by timeout.
pub async fn unknown_service_fails_fast(c: &dyn Connector) {
    calls_to_an_unknown_service_fail_fast(c, 1).await;
}

/// A call whose reply never comes fails with `Timeout` at its deadline.
pub async fn call_times_out(c: &dyn Connector) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_silent");
    let mut sub = server.serve(&service, opts(10)).await.expect("serve");
    settle_in().await;
    let res = client
        .call(
            &service,
            "m",
            json(r#"{"args":[],"kwargs":{}}"#),
            Duration::from_millis(300),
        )
        .await;
    assert!(
        matches!(res, Err(BrokerError::Timeout(_))),
        "expected Timeout, got {res:?}"
    );
    // The request did arrive; acknowledge it so it does not linger.
    let d = next(&mut sub, "silent request").await;
    d.ack().await.expect("ack");
    server.close().await;
    client.close().await;
}

/// A reply keeps the content type the responder gave it.
pub async fn replies_keep_their_content_type(c: &dyn Connector) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_ct");
    let mut sub = server.serve(&service, opts(10)).await.expect("serve");
    settle_in().await;
    tokio::spawn(async move {
        let d = next(&mut sub, "request").await;
        let ct = d.message.content_type.clone().expect("content type");
        let mut reply = Message::new(b"\x80".to_vec(), "application/x-msgpack");
        if ct == "application/json" {
            reply = json("{}");
        }
        d.reply(reply).await.expect("reply");
        d.ack().await.expect("ack");
    });
    let mut req = Message::new(b"\x80".to_vec(), "application/x-msgpack");
    req.headers.insert("language".into(), "fr".into());
    let reply = client
        .call(&service, "m", req, PATIENCE)
        .await
        .expect("call");
    assert_eq!(reply.content_type.as_deref(), Some("application/x-msgpack"));
    server.close().await;
    client.close().await;
}

/// Two instances serving one service share its requests.
pub async fn requests_compete_across_instances(c: &dyn Connector) {
    let a = c.connect().await;
    let b = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_pool");
    let mut handles = Vec::new();
    for (tag, broker) in [("a", &a), ("b", &b)] {
        let mut sub = broker.serve(&service, opts(1)).await.expect("serve");
        handles.push(tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(d) = sub.next().await {
                n += 1;
                d.reply(json(&format!("\"{tag}\""))).await.expect("reply");
                d.ack().await.expect("ack");
            }
            n
        }));
    }
    settle_in().await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        let r = client
            .call(&service, "m", json(r#"{"args":[],"kwargs":{}}"#), PATIENCE)
            .await
            .expect("call");
        *seen.entry(r.body.to_vec()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "both instances should have served requests: {seen:?}"
    );
    a.close().await;
    b.close().await;
    client.close().await;
    for h in handles {
        let _ = tokio::time::timeout(PATIENCE, h).await;
    }
}

/// A requeued delivery comes back marked redelivered, with its delivery count raised.
pub async fn requeue_redelivers_with_flag_and_count(c: &dyn Connector) {
    let broker = c.connect().await;
    let source = unique("conf_src");
    let b = binding(
        &source,
        "happened",
        &unique("conf_h"),
        HandlerType::ServicePool,
    );
    let mut sub = broker.subscribe(&b, opts(10)).await.expect("subscribe");
    settle_in().await;
    broker
        .publish_event(&source, "happened", json("1"))
        .await
        .expect("publish");
    let first = next(&mut sub, "first delivery").await;
    assert!(
        !first.message.redelivered,
        "a first delivery is not redelivered"
    );
    assert_eq!(first.message.delivery_count, 1);
    assert_eq!(first.routing_key, "happened");
    first.requeue().await.expect("requeue");
    let second = next(&mut sub, "redelivery").await;
    assert!(
        second.message.redelivered,
        "a requeued message is redelivered"
    );
    assert_eq!(second.message.delivery_count, 2);
    assert_eq!(&second.message.body[..], b"1");
    second.ack().await.expect("ack");
    nothing_comes_back(c, broker, sub, &b, "after ack").await;
}

/// A delivery its consumer dropped without settling goes to the next consumer.
pub async fn dropped_delivery_is_redelivered(c: &dyn Connector) {
    let broker = c.connect().await;
    let source = unique("conf_src");
    let b = binding(
        &source,
        "crashy",
        &unique("conf_h"),
        HandlerType::ServicePool,
    );
    let mut sub = broker.subscribe(&b, opts(10)).await.expect("subscribe");
    settle_in().await;
    broker
        .publish_event(&source, "crashy", json("\"x\""))
        .await
        .expect("publish");
    let d = next(&mut sub, "delivery").await;
    drop(d);
    drop(sub);
    let other = c.connect().await;
    let mut sub2 = other.subscribe(&b, opts(10)).await.expect("resubscribe");
    let again = next(&mut sub2, "redelivery after a consumer crash").await;
    assert_eq!(
        &again.message.body[..],
        b"\"x\"",
        "the same event comes back"
    );
    // Whether the redelivery is flagged is up to the server: RabbitMQ and the memory broker flag
    // it; nats-server 2.9 reports a NAK'd message picked up by a new pull request as a first
    // delivery.
    again.ack().await.expect("ack");
    broker.close().await;
    other.close().await;
}

/// A dead-lettered delivery is not delivered again.
pub async fn dead_lettered_delivery_is_not_redelivered(c: &dyn Connector) {
    let broker = c.connect().await;
    let source = unique("conf_src");
    let b = binding(
        &source,
        "poison",
        &unique("conf_h"),
        HandlerType::ServicePool,
    );
    let mut sub = broker.subscribe(&b, opts(10)).await.expect("subscribe");
    settle_in().await;
    broker
        .publish_event(&source, "poison", json("0"))
        .await
        .expect("publish");
    let d = next(&mut sub, "delivery").await;
    d.dead_letter("test").await.expect("dead-letter");
    nothing_comes_back(c, broker, sub, &b, "after dead-lettering").await;
}

/// A consumer holds at most `prefetch` unsettled deliveries.
pub async fn prefetch_bounds_unsettled_deliveries(c: &dyn Connector) {
    let broker = c.connect().await;
    let source = unique("conf_src");
    let b = binding(&source, "many", &unique("conf_h"), HandlerType::ServicePool);
    let mut sub = broker.subscribe(&b, opts(2)).await.expect("subscribe");
    settle_in().await;
    for i in 0..4 {
        broker
            .publish_event(&source, "many", json(&i.to_string()))
            .await
            .expect("publish");
    }
    let d1 = next(&mut sub, "first").await;
    let d2 = next(&mut sub, "second").await;
    nothing(&mut sub, "a third delivery while two are unsettled").await;
    d1.ack().await.expect("ack");
    let d3 = next(&mut sub, "third after an ack").await;
    d2.ack().await.expect("ack");
    d3.ack().await.expect("ack");
    let d4 = next(&mut sub, "fourth").await;
    d4.ack().await.expect("ack");
    broker.close().await;
}

/// Each service with a service-pool handler gets every event once; its instances compete.
pub async fn service_pool_events_fan_out_across_services_and_compete_within(c: &dyn Connector) {
    let a1 = c.connect().await;
    let a2 = c.connect().await;
    let other = c.connect().await;
    let source = unique("conf_src");
    let svc_a = unique("conf_a");
    let svc_b = unique("conf_b");
    let ba = binding(&source, "created", &svc_a, HandlerType::ServicePool);
    let bb = binding(&source, "created", &svc_b, HandlerType::ServicePool);
    let mut s1 = a1.subscribe(&ba, opts(10)).await.expect("subscribe a1");
    let mut s2 = a2.subscribe(&ba, opts(10)).await.expect("subscribe a2");
    let mut sb = other.subscribe(&bb, opts(10)).await.expect("subscribe b");
    settle_in().await;
    other
        .publish_event(&source, "created", json("42"))
        .await
        .expect("publish");
    let d = next(&mut sb, "service b").await;
    d.ack().await.expect("ack");
    let got = tokio::select! {
        d = s1.next() => d,
        d = s2.next() => d,
        () = tokio::time::sleep(PATIENCE) => None,
    };
    got.expect("one instance of service a gets the event")
        .ack()
        .await
        .expect("ack");
    nothing(&mut s1, "instance 1 after the event was taken").await;
    nothing(&mut s2, "instance 2 after the event was taken").await;
    for b in [a1, a2, other] {
        b.close().await;
    }
}

/// A singleton handler's event goes to one handler across all services.
pub async fn singleton_events_reach_one_handler(c: &dyn Connector) {
    let x = c.connect().await;
    let y = c.connect().await;
    let source = unique("conf_src");
    let bx = binding(&source, "tick", &unique("conf_x"), HandlerType::Singleton);
    let by = binding(&source, "tick", &unique("conf_y"), HandlerType::Singleton);
    let mut sx = x.subscribe(&bx, opts(10)).await.expect("subscribe x");
    let mut sy = y.subscribe(&by, opts(10)).await.expect("subscribe y");
    settle_in().await;
    x.publish_event(&source, "tick", json("1"))
        .await
        .expect("publish");
    let got = tokio::select! {
        d = sx.next() => d,
        d = sy.next() => d,
        () = tokio::time::sleep(PATIENCE) => None,
    };
    got.expect("one singleton handler gets it")
        .ack()
        .await
        .expect("ack");
    nothing(&mut sx, "x after the singleton event was taken").await;
    nothing(&mut sy, "y after the singleton event was taken").await;
    x.close().await;
    y.close().await;
}

/// A broadcast event reaches every running instance.
pub async fn broadcast_events_reach_every_instance(c: &dyn Connector) {
    let i1 = c.connect().await;
    let i2 = c.connect().await;
    let source = unique("conf_src");
    let service = unique("conf_bc");
    let b1 = binding(&source, "reload", &service, HandlerType::Broadcast);
    let b2 = binding(&source, "reload", &service, HandlerType::Broadcast);
    let mut s1 = i1.subscribe(&b1, opts(10)).await.expect("subscribe 1");
    let mut s2 = i2.subscribe(&b2, opts(10)).await.expect("subscribe 2");
    settle_in().await;
    i1.publish_event(&source, "reload", json("true"))
        .await
        .expect("publish");
    next(&mut s1, "instance 1").await.ack().await.expect("ack");
    next(&mut s2, "instance 2").await.ack().await.expect("ack");
    i1.close().await;
    i2.close().await;
}

/// Service-pool events published while the handler's service is down wait for it.
pub async fn events_wait_in_durable_queues_while_the_handler_is_down(c: &dyn Connector) {
    let broker = c.connect().await;
    let source = unique("conf_src");
    let b = binding(
        &source,
        "queued",
        &unique("conf_h"),
        HandlerType::ServicePool,
    );
    let sub = broker.subscribe(&b, opts(10)).await.expect("subscribe");
    settle_in().await;
    drop(sub);
    settle_in().await;
    broker
        .publish_event(&source, "queued", json("7"))
        .await
        .expect("publish");
    let later = c.connect().await;
    let mut sub = later.subscribe(&b, opts(10)).await.expect("resubscribe");
    let d = next(&mut sub, "event dispatched while down").await;
    assert_eq!(&d.message.body[..], b"7");
    d.ack().await.expect("ack");
    broker.close().await;
    later.close().await;
}

/// Closing a connection fails its call in flight promptly, and it takes no new calls.
pub async fn close_fails_calls_in_flight(c: &dyn Connector) {
    closing_fails_calls_in_flight(c, 1).await;
}

/// How many calls the concurrency checks make at once from one connection.
const MANY: usize = 48;

/// Starts `n` calls at once on `client`, the `i`th with the body `[i]`.
fn many_calls(
    client: &SharedBroker,
    service: &str,
    n: usize,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<Result<Message, BrokerError>>> {
    (0..n)
        .map(|i| {
            let client = client.clone();
            let service = service.to_string();
            tokio::spawn(async move {
                client
                    .call(&service, "echo", json(&format!("[{i}]")), timeout)
                    .await
            })
        })
        .collect()
}

/// Many calls started at once on one connection each get the reply to their own request,
/// however the backend gathers them on the wire.
pub async fn concurrent_calls_get_their_own_replies(c: &dyn Connector) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_many");
    let mut sub = server.serve(&service, opts(64)).await.expect("serve");
    settle_in().await;
    let responder = tokio::spawn(async move {
        // Answer in the reverse order of arrival, so that no reply can be matched by order.
        let mut held = Vec::new();
        for _ in 0..MANY {
            held.push(next(&mut sub, "one of many requests").await);
        }
        while let Some(d) = held.pop() {
            let reply = Message::new(d.message.body.clone(), "application/json");
            d.reply(reply).await.expect("reply");
            d.ack().await.expect("ack");
        }
    });
    for (i, call) in many_calls(&client, &service, MANY, PATIENCE)
        .into_iter()
        .enumerate()
    {
        let reply = call.await.expect("caller task").expect("call");
        assert_eq!(
            &reply.body[..],
            format!("[{i}]").as_bytes(),
            "call {i} got another call's reply"
        );
    }
    responder.await.expect("responder");
    server.close().await;
    client.close().await;
}

/// Many calls started at once to a service nobody serves all fail at once with
/// `UnknownService`.
pub async fn concurrent_calls_to_an_unknown_service_fail_fast(c: &dyn Connector) {
    calls_to_an_unknown_service_fail_fast(c, MANY).await;
}

async fn calls_to_an_unknown_service_fail_fast(c: &dyn Connector, n: usize) {
    let client = c.connect().await;
    let service = unique("conf_nobody");
    let calls = many_calls(&client, &service, n, Duration::from_secs(120));
    for call in calls {
        let res = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("an unknown service must fail fast, not wait for the call's deadline")
            .expect("caller task");
        assert!(
            matches!(res, Err(BrokerError::UnknownService(ref s)) if *s == service),
            "expected UnknownService, got {res:?}"
        );
    }
    client.close().await;
}

/// Closing a connection fails every one of many calls in flight promptly.
pub async fn close_fails_every_call_in_flight(c: &dyn Connector) {
    closing_fails_calls_in_flight(c, MANY).await;
}

async fn closing_fails_calls_in_flight(c: &dyn Connector, n: usize) {
    let server = c.connect().await;
    let client = c.connect().await;
    let service = unique("conf_hang");
    let mut sub = server.serve(&service, opts(64)).await.expect("serve");
    settle_in().await;
    let calls = many_calls(&client, &service, n, Duration::from_secs(120));
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(next(&mut sub, "request").await);
    }
    client.close().await;
    for call in calls {
        let res = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("a call in flight must fail promptly when its connection closes")
            .expect("caller task");
        assert!(
            matches!(
                res,
                Err(BrokerError::ConnectionLost { .. } | BrokerError::Closed)
            ),
            "expected ConnectionLost, got {res:?}"
        );
    }
    let after = client
        .call(&service, "m", json("{}"), Duration::from_secs(1))
        .await;
    assert!(after.is_err(), "a closed connection takes no new calls");
    for d in held {
        d.ack().await.expect("ack");
    }
    server.close().await;
}
