//! Bad input gets a prompt, clear error; the worker slot is released and the service keeps
//! serving.

use std::time::Duration;

use basidia::prelude::*;
use basidia::{Broker, ErrorKind, Format, Message, RunnerConfig, ServiceOverrides};
use basidia_core::envelope::{decode_reply, encode_request, NoKwargs};
use basidia_testing::ServiceHarness;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A point.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Shape {
    Dot,
    Circle { r: u32 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Refused {
    code: u16,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused with code {}", self.code)
    }
}

#[service]
struct Calc;

#[service(name = "calc")]
impl Calc {
    #[rpc]
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[rpc]
    async fn norm(&self, p: Point, scale: Option<i32>) -> i32 {
        (p.x.abs() + p.y.abs()) * scale.unwrap_or(1)
    }

    #[rpc]
    async fn shape(&self, s: Shape) -> Shape {
        s
    }

    #[rpc]
    async fn refuse(&self, code: u16) -> Result<(), Refused> {
        Err(Refused { code })
    }

    #[rpc]
    async fn boom(&self) -> String {
        panic!("kaboom")
    }

    #[rpc]
    async fn nothing(&self) {}
}

async fn harness() -> ServiceHarness {
    let mut config = RunnerConfig::default();
    config.services.insert(
        "calc".into(),
        ServiceOverrides {
            max_workers: Some(1),
            ..ServiceOverrides::default()
        },
    );
    ServiceHarness::builder()
        .config(config)
        .service::<Calc>()
        .start()
        .await
        .unwrap()
}

async fn still_serving(h: &ServiceHarness) {
    let v = h.call_json("calc", "add", json!([2, 3])).await.unwrap();
    assert_eq!(v, json!(5));
}

async fn raw_call(h: &ServiceHarness, method: &str, message: Message) -> Message {
    let broker = h.broker().connect();
    tokio::time::timeout(
        Duration::from_secs(5),
        broker.call("calc", method, message, Duration::from_secs(5)),
    )
    .await
    .expect("a prompt reply")
    .expect("a reply")
}

#[tokio::test]
async fn typed_values_travel_in_both_formats() {
    let h = harness().await;
    for format in Format::ALL {
        let p = h.proxy().with_format(format);
        let n: i32 = p
            .call("calc", "norm", &(Point { x: 3, y: -4 },), &NoKwargs)
            .await
            .unwrap();
        assert_eq!(n, 7);
        let s: Shape = p
            .call("calc", "shape", &(Shape::Circle { r: 2 },), &NoKwargs)
            .await
            .unwrap();
        assert_eq!(s, Shape::Circle { r: 2 });
        let s: Shape = p
            .call("calc", "shape", &(Shape::Dot,), &NoKwargs)
            .await
            .unwrap();
        assert_eq!(s, Shape::Dot);
        let unit: () = p
            .call("calc", "nothing", &[(); 0], &NoKwargs)
            .await
            .unwrap();
        assert_eq!(unit, ());
    }
    // Optional parameters may be left out or given by keyword.
    assert_eq!(
        h.call_json("calc", "norm", json!({"p": {"x": 1, "y": 1}, "scale": 10}))
            .await
            .unwrap(),
        json!(20)
    );
    h.stop().await;
}

#[tokio::test]
async fn wrong_argument_count_names_and_types_are_incorrect_signature() {
    let h = harness().await;
    for (args, needle) in [
        (json!([1]), "missing required argument \"b\""),
        (
            json!([1, 2, 3]),
            "takes 2 positional argument(s) but 3 were given",
        ),
        (json!({"a": 1, "c": 2}), "unexpected keyword argument \"c\""),
        (json!(["one", 2]), "argument \"a\""),
    ] {
        let err = h.call_json("calc", "add", args.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncorrectSignature, "{args}: {err}");
        assert!(err.to_string().contains(needle), "{args}: {err}");
        still_serving(&h).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn unknown_methods_and_services_fail_fast() {
    let h = harness().await;
    let err = h
        .call_json("calc", "divide", json!([1, 2]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MethodNotFound);
    assert_eq!(
        err.remote().unwrap().exc_path,
        "nameko.exceptions.MethodNotFound"
    );
    let err = h
        .call_json("abacus", "add", json!([1, 2]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::UnknownService(ref s) if s == "abacus"),
        "{err:?}"
    );
    still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn payloads_that_are_neither_msgpack_nor_json_are_malformed_requests() {
    let h = harness().await;
    // A content type Basidia does not speak: the error comes back as JSON.
    let reply = raw_call(&h, "add", Message::new(b"a=1&b=2".to_vec(), "text/plain")).await;
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let err = decode_reply::<i64>(Format::Json, &reply.body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    // No content type at all.
    let mut m = Message::new(b"{}".to_vec(), "application/json");
    m.content_type = None;
    let reply = raw_call(&h, "add", m).await;
    let err = decode_reply::<i64>(Format::Json, &reply.body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    // Claims msgpack, is garbage; claims JSON, is msgpack; lacks kwargs.
    for (body, ct) in [
        (b"\xc1\xff\x00".to_vec(), "application/x-msgpack"),
        (
            encode_request(Format::MsgPack, &[1, 2], &NoKwargs).unwrap(),
            "application/json",
        ),
        (br#"{"args": [1, 2]}"#.to_vec(), "application/json"),
    ] {
        let reply = raw_call(&h, "add", Message::new(body, ct)).await;
        let format = Format::from_content_type(reply.content_type.as_deref().unwrap()).unwrap();
        let err = decode_reply::<i64>(format, &reply.body).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{ct}: {err}");
    }
    still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_request_without_reply_to_is_dropped_unrun_and_not_stored() {
    let h = harness().await;
    for _ in 0..50 {
        let body = encode_request(Format::Json, &[1, 2], &NoKwargs).unwrap();
        h.broker()
            .publish_to_queue("rpc-calc", "add", Message::new(body, "application/json"))
            .unwrap();
    }
    // With nowhere to send a reply the requests are settled without running, and not kept:
    // anyone able to publish could fill the dead letters with them.
    for _ in 0..100 {
        if h.broker().queue_depth("rpc-calc") == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.broker().queue_depth("rpc-calc"), Some(0));
    assert!(h.broker().dead_letters().is_empty());
    still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn handler_errors_and_panics_reach_the_caller_and_free_the_worker() {
    let h = harness().await;
    let err = h
        .call_json("calc", "refuse", json!([451]))
        .await
        .unwrap_err();
    let remote = err.remote().unwrap();
    assert_eq!(remote.exc_type, "Refused");
    assert_eq!(remote.value, "refused with code 451");
    assert_eq!(remote.exc_args, vec![json!({"code": 451})]);
    still_serving(&h).await;
    // With max_workers = 1, a panic that kept its slot would stall the next call.
    for _ in 0..3 {
        let err = h.call_json("calc", "boom", json!([])).await.unwrap_err();
        let remote = err.remote().unwrap();
        assert_eq!(remote.exc_type, "HandlerPanicked");
        assert_eq!(remote.value, "kaboom");
        still_serving(&h).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn replies_use_the_request_format() {
    let h = harness().await;
    for format in Format::ALL {
        let body = encode_request(format, &[20, 22], &NoKwargs).unwrap();
        let reply = raw_call(&h, "add", Message::new(body, format.content_type())).await;
        assert_eq!(reply.content_type.as_deref(), Some(format.content_type()));
        assert_eq!(decode_reply::<i64>(format, &reply.body).unwrap(), 42);
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn calls_time_out_at_their_deadline() {
    #[service]
    struct Slow;
    #[service(name = "slow")]
    impl Slow {
        #[rpc]
        async fn wait(&self, secs: u64) -> u64 {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            secs
        }
    }
    let h = ServiceHarness::start::<Slow>().await.unwrap();
    let client = h.client::<SlowClient>();
    assert_eq!(client.wait(5).await.unwrap(), 5);
    let err = client
        .with_timeout(Duration::from_secs(2))
        .wait(10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Timeout { ref service, ref method, after } if service == "slow" && method == "wait" && after == Duration::from_secs(2)),
        "{err:?}"
    );
    // The default deadline is finite too.
    let err = client.wait(3600).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    h.stop().await;
}
