//! Hostile peers on NATS.
//!
//! - A peer that sees one request from a caller learns the caller's inbox. It answers the
//!   caller's next calls ahead of their services, on every reply subject it can guess. The
//!   caller must get the real answer. Before, reply subjects counted up from 1 and the first
//!   message on one was taken as the reply, so the forged answer won.
//! - A request whose reply subject is a JetStream API subject
//!   (`$JS.API.STREAM.PURGE.<stream>`) must not make the service purge the stream with its
//!   reply. Before, the reply went there, and the stream was purged.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use basidia::prelude::*;
use basidia::Broker;
use basidia::NatsBroker;
use basidia_conformance::broker_url_from_env;
use futures_util::StreamExt;

use crate::child::{serial, NO_ARGS, NO_KWARGS};

#[service]
struct Real;

#[service(name = "t_nats_real")]
impl Real {
    #[rpc]
    async fn hello(&self) -> String {
        // Long enough for a forger to get in first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        "real".into()
    }
}

#[service]
struct Peek;

#[service(name = "t_nats_peek")]
impl Peek {
    #[rpc]
    async fn look(&self) -> String {
        "looked".into()
    }
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_do_not_reach_callers() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let server = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<Real>().add::<Peek>();
    let running = runner.start().await.unwrap();

    // The hostile peer listens to every request of t_nats_peek, as any client allowed to
    // subscribe there can, beside the service's own queue group.
    let hostile = async_nats::connect(&url).await.unwrap();
    let mut seen = hostile
        .subscribe("basidia.rpc.t_nats_peek.*")
        .await
        .unwrap();
    hostile.flush().await.unwrap();

    let caller = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let proxy = RpcProxy::new(caller.clone()).with_timeout(Duration::from_secs(5));
    // Calls made side by side, as a busy service makes them.
    let side_by_side = |service: &'static str, method: &'static str, n: usize| {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    proxy
                        .call::<String, _, _>(service, method, &NO_ARGS, &NO_KWARGS)
                        .await
                })
            })
            .collect();
        async move {
            let mut answers = Vec::new();
            for c in calls {
                answers.push(c.await.unwrap().expect("the caller gets an answer"));
            }
            answers
        }
    };
    assert!(side_by_side("t_nats_peek", "look", 4)
        .await
        .iter()
        .all(|a| a == "looked"));
    let mut seen_subjects = Vec::new();
    while let Ok(Some(request)) =
        tokio::time::timeout(Duration::from_millis(500), seen.next()).await
    {
        seen_subjects.push(
            request
                .reply
                .expect("a request names its inbox")
                .to_string(),
        );
    }
    assert!(!seen_subjects.is_empty());

    // While the caller's next calls wait for t_nats_real, answer them on every subject a
    // counter would give them, and on those just seen.
    let forged = br#"{"result": "forged", "error": null}"#;
    let forger = tokio::spawn(async move {
        for _ in 0..10 {
            for seen in &seen_subjects {
                let (prefix, last) = seen.rsplit_once('.').unwrap();
                let start = last.parse::<u64>().unwrap_or(0);
                for n in start..start + 100 {
                    let _ = hostile
                        .publish_with_headers(
                            format!("{prefix}.{n}"),
                            json_headers(),
                            forged.as_slice().into(),
                        )
                        .await;
                }
                let _ = hostile
                    .publish_with_headers(seen.clone(), json_headers(), forged.as_slice().into())
                    .await;
            }
            let _ = hostile.flush().await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let answers = side_by_side("t_nats_real", "hello", 8).await;
    forger.await.unwrap();
    assert!(
        answers.iter().all(|a| a == "real"),
        "a forged reply was taken: {answers:?}"
    );
    caller.close().await;
    running.stop().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_never_sent_to_the_servers_api() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let server = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<Real>();
    let running = runner.start().await.unwrap();

    let raw = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(raw.clone());
    let name = format!("T_PURGE_{}", uuid::Uuid::new_v4().simple());
    let subject = format!("t_purge.{name}");
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..3 {
        js.publish(subject.clone(), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for api in [
        format!("$JS.API.STREAM.PURGE.{name}"),
        format!("$JS.API.STREAM.DELETE.{name}"),
    ] {
        raw.publish_with_reply_and_headers(
            "basidia.rpc.t_nats_real.hello".to_string(),
            api,
            json_headers(),
            br#"{"args": [], "kwargs": {}}"#.as_slice().into(),
        )
        .await
        .unwrap();
    }
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let info = stream.info().await.expect("the stream is still there");
    assert_eq!(info.state.messages, 3, "the stream kept its messages");

    // And the service goes on answering real callers.
    let proxy = RpcProxy::new(server.clone());
    let answer: String = proxy
        .call("t_nats_real", "hello", &NO_ARGS, &NO_KWARGS)
        .await
        .unwrap();
    assert_eq!(answer, "real");
    js.delete_stream(&name).await.unwrap();
    running.stop().await;
    server.close().await;
}

static DOOMED_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[service]
struct NatsDoomed;

#[service(name = "t_nats_doomed")]
impl NatsDoomed {
    #[event_handler("t_nats_doomed_src", "boom")]
    async fn on_boom(&self, marker: String) -> Result<(), String> {
        DOOMED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(format!("cannot handle {marker}"))
    }
}

/// On NATS: the dead-letter stream has limits; requests without a reply subject are
/// not written to it; what is kept has its secrets masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_bounded_masked_and_not_free_to_fill() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let server = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let mut config = basidia::RunnerConfig::default();
    config.defaults.event_max_deliveries = 1;
    let mut runner = Runner::new(server.clone()).with_config(config);
    runner.add::<Real>().add::<NatsDoomed>();
    let running = runner.start().await.unwrap();

    let raw = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(raw.clone());
    let mut stream = js
        .get_stream(basidia_nats::DEAD_LETTER_STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_messages, 100_000);
    assert_eq!(info.config.max_bytes, 256 * 1024 * 1024);
    assert_eq!(
        info.config.discard,
        async_nats::jetstream::stream::DiscardPolicy::Old
    );
    let before = info.state.messages;

    // Requests nobody can answer cost the service a count, not a durable write each.
    for _ in 0..50 {
        raw.publish_with_headers(
            "basidia.rpc.t_nats_real.hello",
            json_headers(),
            br#"{"args": [], "kwargs": {}}"#.as_slice().into(),
        )
        .await
        .unwrap();
    }
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(stream.info().await.unwrap().state.messages, before);

    let marker = format!("boom-{}", uuid::Uuid::new_v4().simple());
    let dispatcher =
        basidia::EventDispatcher::new(server.clone(), "t_nats_doomed_src", basidia::Format::Json);
    let ctx = Arc::new(
        basidia::Context::new()
            .with("auth_token", "eyJ-a-real-looking-token")
            .with("user_id", "42"),
    );
    basidia::Context::scope(ctx, dispatcher.dispatch("boom", &marker))
        .await
        .unwrap();
    let subject = format!(
        "basidia.deadletter.events.{}",
        basidia_nats::js_name("evt-t_nats_doomed_src-boom--t_nats_doomed.on_boom")
    );
    let mut kept = None;
    for _ in 0..100 {
        if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
            if m.payload.as_ref() == serde_json::to_vec(&marker).unwrap().as_slice() {
                kept = Some(m);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = kept.expect("the event was dead-lettered");
    let headers = format!("{:?}", kept.headers);
    assert!(!headers.contains("eyJ-a-real-looking-token"), "{headers}");
    assert!(
        headers.contains("***") && headers.contains("42"),
        "{headers}"
    );
    running.stop().await;
    server.close().await;
}

static HEARD: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

#[service]
struct NatsListener;

#[service(name = "t_nats_listener")]
impl NatsListener {
    #[event_handler("t_nats_listener_src", "ping")]
    async fn on_ping(&self, n: u32) {
        HEARD.lock().unwrap().push(n);
    }
}

/// Publishes event `n` until the handler has it, at most `limit`.
async fn heard_within(caller: &NatsBroker, n: u32, limit: Duration) {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        let body = serde_json::to_vec(&n).unwrap();
        let _ = caller
            .publish_event(
                "t_nats_listener_src",
                "ping",
                basidia::Message::new(body, "application/json"),
            )
            .await;
        for _ in 0..10 {
            if HEARD.lock().unwrap().contains(&n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("event {n} was not handled within {limit:?}");
}

/// On NATS: an operator deletes the handler's durable consumer, then its whole stream;
/// each time the service notices, creates what is missing, and hears events again, including
/// one published while its consumer was missing. Before, the pull loop retried against a
/// consumer that no longer existed, and the handler heard nothing more; a stream created again
/// at once lost its files to the server's removal of the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_or_stream_is_created_again() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let server = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<NatsListener>();
    let running = runner.start().await.unwrap();
    let caller = NatsBroker::connect(&url).await.unwrap();
    heard_within(&caller, 1, Duration::from_secs(5)).await;

    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let stream_name = basidia_nats::event_stream("t_nats_listener_src");
    let consumer = basidia_nats::js_name("evt-t_nats_listener_src-ping--t_nats_listener.on_ping");
    js.get_stream(&stream_name)
        .await
        .unwrap()
        .delete_consumer(&consumer)
        .await
        .expect("the operator deletes the consumer");
    // Published once, while no consumer exists: the one created again must still be given it.
    js.publish_with_headers(
        "basidia.events.t_nats_listener_src.ping",
        json_headers(),
        "2".into(),
    )
    .await
    .unwrap()
    .await
    .expect("the stream stores the event");
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !HEARD.lock().unwrap().contains(&2) {
        assert!(
            tokio::time::Instant::now() < end,
            "the event published while the consumer was missing was not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    heard_within(&caller, 5, Duration::from_secs(5)).await;

    js.delete_stream(&stream_name)
        .await
        .expect("the operator deletes the stream");
    heard_within(&caller, 3, Duration::from_secs(20)).await;
    heard_within(&caller, 4, Duration::from_secs(5)).await;

    running.stop().await;
    caller.close().await;
    server.close().await;
}

/// On NATS: the headers and envelope fields Basidia reads from a request, at their
/// extremes and beyond, from a raw client. Every request gets an answer (a result or an error),
/// and the service goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metadata_at_its_extremes_is_answered() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let server = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let mut runner = Runner::new(server.clone());
    runner.add::<Peek>();
    let running = runner.start().await.unwrap();
    let raw = async_nats::connect(&url).await.unwrap();

    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let long_stack = serde_json::json!({
        "call_id_stack": (0..3000).map(|i| format!("s.m.{i}")).collect::<Vec<_>>()
    })
    .to_string();
    let header_cases: Vec<(&str, String)> = vec![
        ("Basidia-Deadline", i64::MAX.to_string()),
        ("Basidia-Deadline", i64::MIN.to_string()),
        ("Basidia-Deadline", "99999999999999999999999999".into()),
        ("Basidia-Deadline", "soon".into()),
        ("Basidia-Deadline", String::new()),
        ("Basidia-Context", "not json".into()),
        ("Basidia-Context", "[1, 2, 3]".into()),
        ("Basidia-Context", deep.clone()),
        ("Basidia-Context", long_stack),
        (
            "Basidia-Context",
            r#"{"deadline": 9223372036854775807}"#.into(),
        ),
        (
            "Content-Type",
            "application/x-msgpack; charset=bogus".into(),
        ),
    ];
    let envelope_cases = [
        format!(
            r#"{{"args": [], "kwargs": {{}}, "deadline": {}}}"#,
            i64::MAX
        ),
        format!(
            r#"{{"args": [], "kwargs": {{}}, "deadline": {}}}"#,
            i64::MIN
        ),
        format!(
            r#"{{"args": [], "kwargs": {{}}, "deadline": {}}}"#,
            u64::MAX
        ),
        r#"{"args": [], "kwargs": {}, "deadline": 1e308}"#.to_string(),
        r#"{"args": [], "kwargs": {}, "context": 7}"#.to_string(),
        format!(r#"{{"args": [], "kwargs": {{}}, "context": {{"a": {deep}}}}}"#),
    ];
    let ask = |headers: HeaderMap, body: String| {
        let raw = raw.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                raw.request_with_headers("basidia.rpc.t_nats_peek.look", headers, body.into()),
            )
            .await
        }
    };
    for (name, value) in header_cases {
        let mut headers = json_headers();
        headers.insert(name, value.as_str());
        let answered = ask(headers, r#"{"args": [], "kwargs": {}}"#.into()).await;
        assert!(
            matches!(answered, Ok(Ok(_))),
            "{name}: {:.60}... got no answer: {answered:?}",
            value
        );
    }
    for body in envelope_cases {
        let answered = ask(json_headers(), body.clone()).await;
        assert!(matches!(answered, Ok(Ok(_))), "{body:.60}... got no answer");
    }
    let looked: String = RpcProxy::new(server.clone())
        .call("t_nats_peek", "look", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("the service still answers");
    assert_eq!(looked, "looked");
    running.stop().await;
    server.close().await;
}
