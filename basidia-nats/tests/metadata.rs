//! On NATS a request's deadline and context travel in the envelope, not in headers: a nested call
//! between services leaves with no header block and still carries both, and requests from other
//! implementations that use the `Basidia-Deadline` and `Basidia-Context` headers are honoured.
//! Needs `BASIDIA_TEST_NATS_URL`.

use std::time::Duration;

use basidia::prelude::*;
use basidia::{ErrorKind, Format};
use basidia_core::envelope::{
    decode_reply, encode_request, encode_request_with, NoKwargs, RequestMetadata,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

fn url() -> Option<String> {
    basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL")
}

/// What the back service saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    user_id: Option<String>,
    call_id_stack: Vec<String>,
    remaining_ms: Option<u64>,
}

#[service]
struct Back;

#[service(name = "t_meta_back")]
impl Back {
    #[rpc]
    async fn whoami(&self) -> Seen {
        let ctx = Context::current().expect("workers run with a context");
        Seen {
            user_id: ctx.user_id().map(String::from),
            call_id_stack: ctx.call_id_stack.clone(),
            remaining_ms: ctx.deadline.map(|d| {
                d.saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64
            }),
        }
    }
}

#[service]
struct Front {
    back: Dependency<BackClient>,
}

#[service(name = "t_meta_front")]
impl Front {
    #[rpc]
    async fn relay(&self) -> Result<Seen, RpcError> {
        self.back.whoami().await
    }
}

fn epoch_ms(offset_ms: i64) -> i64 {
    basidia_core::context::epoch_ms_after(Duration::ZERO) + offset_ms
}

/// Sends `body` with `headers` to `t_meta_back.whoami` as a plain NATS request.
async fn raw_whoami(
    raw: &async_nats::Client,
    headers: async_nats::HeaderMap,
    body: Vec<u8>,
) -> Result<Seen, RpcError> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        raw.request_with_headers("basidia.rpc.t_meta_back.whoami", headers, body.into()),
    )
    .await
    .expect("the service answers within 5 s")
    .expect("a reply");
    decode_reply::<Seen>(Format::MsgPack, &reply.payload)
}

#[tokio::test]
async fn the_deadline_and_context_travel_in_the_envelope() {
    let Some(url) = url() else { return };
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap());
    runner.add::<Back>();
    runner.add::<Front>();
    let running = runner.start().await.unwrap();

    // A plain subscriber sees a copy of every request to the back service.
    let raw = async_nats::connect(url.as_str()).await.unwrap();
    let mut watch = raw.subscribe("basidia.rpc.t_meta_back.*").await.unwrap();
    raw.flush().await.unwrap();

    let front = FrontClient::connect(&RpcProxy::new(basidia::connect(&url).await.unwrap()));
    let ctx = std::sync::Arc::new(
        Context::new()
            .with("user_id", "42")
            .with_timeout(Duration::from_secs(5)),
    );
    let seen = Context::scope(ctx, async { front.relay().await })
        .await
        .unwrap();
    assert_eq!(seen.user_id.as_deref(), Some("42"));
    assert_eq!(seen.call_id_stack.len(), 2, "{:?}", seen.call_id_stack);
    assert!(seen.call_id_stack[0].starts_with("t_meta_front.relay."));
    let remaining = seen.remaining_ms.expect("the caller's deadline travels");
    assert!(remaining > 0 && remaining <= 5_000, "{remaining}");

    // The nested request went out without a header block; its envelope held both.
    let request = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the nested request is seen")
        .unwrap();
    assert!(request.headers.is_none(), "{:?}", request.headers);
    let envelope: serde_json::Value = Format::MsgPack.decode(&request.payload).unwrap();
    let deadline = envelope["deadline"]
        .as_i64()
        .expect("a deadline in the envelope");
    let ahead = deadline - epoch_ms(0);
    assert!(ahead > 0 && ahead <= 5_000, "{ahead}");
    assert_eq!(envelope["context"]["user_id"], "42");
    assert_eq!(
        envelope["context"]["call_id_stack"][0].as_str(),
        Some(seen.call_id_stack[0].as_str())
    );

    // Another implementation's headers count as before.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Basidia-Deadline", epoch_ms(10_000).to_string().as_str());
    headers.insert("Basidia-Context", r#"{"user_id": "9"}"#);
    let body = encode_request(Format::MsgPack, &[(); 0], &NoKwargs).unwrap();
    let seen = raw_whoami(&raw, headers, body.clone()).await.unwrap();
    assert_eq!(seen.user_id.as_deref(), Some("9"));
    let remaining = seen.remaining_ms.expect("the header's deadline counts");
    assert!(remaining > 5_000 && remaining <= 10_000, "{remaining}");

    // A deadline already past, in a header or in the envelope, is refused without running.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Basidia-Deadline", epoch_ms(-1_000).to_string().as_str());
    let err = raw_whoami(&raw, headers, body).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote(e) if e.kind() == ErrorKind::Timeout),
        "{err:?}"
    );
    let past = RequestMetadata {
        deadline_ms: Some(epoch_ms(-1_000)),
        ..Default::default()
    };
    let body = encode_request_with(Format::MsgPack, &[(); 0], &NoKwargs, &past).unwrap();
    let err = raw_whoami(&raw, async_nats::HeaderMap::new(), body)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote(e) if e.kind() == ErrorKind::Timeout),
        "{err:?}"
    );

    // Of a header's and the envelope's deadline, the earlier stands.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Basidia-Deadline", epoch_ms(3_000).to_string().as_str());
    let later = RequestMetadata {
        deadline_ms: Some(epoch_ms(60_000)),
        ..Default::default()
    };
    let body = encode_request_with(Format::MsgPack, &[(); 0], &NoKwargs, &later).unwrap();
    let seen = raw_whoami(&raw, headers, body).await.unwrap();
    let remaining = seen.remaining_ms.unwrap();
    assert!(remaining <= 3_000, "{remaining}");

    // A deadline that is not a number is a malformed request.
    let body = br#"{"args": [], "kwargs": {}, "deadline": "soon"}"#.to_vec();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let reply = raw
        .request_with_headers("basidia.rpc.t_meta_back.whoami", headers, body.into())
        .await
        .unwrap();
    let err = decode_reply::<Seen>(Format::Json, &reply.payload).unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote(e) if e.kind() == ErrorKind::MalformedRequest),
        "{err:?}"
    );
    running.stop().await;
}
