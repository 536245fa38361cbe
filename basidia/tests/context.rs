//! The worker context (call ids, context data, deadline) flows through calls and events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use basidia::prelude::*;
use basidia_testing::ServiceHarness;
use serde::{Deserialize, Serialize};

/// What the back service saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    auth_token: Option<String>,
    user_id: Option<String>,
    call_id_stack: Vec<String>,
    deadline_ms: Option<u64>,
}

#[service]
struct Back;

#[service(name = "back")]
impl Back {
    #[rpc]
    async fn whoami(&self) -> Seen {
        let ctx = Context::current().expect("workers run with a context");
        Seen {
            auth_token: ctx.auth_token().map(String::from),
            user_id: ctx.user_id().map(String::from),
            call_id_stack: ctx.call_id_stack.clone(),
            deadline_ms: ctx.deadline.map(|d| {
                d.saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64
            }),
        }
    }
}

#[service]
struct Front {
    back: Dependency<BackClient>,
    events: EventDispatcher,
}

#[service(name = "front")]
impl Front {
    #[rpc]
    async fn relay(&self) -> Result<Seen, RpcError> {
        self.events.dispatch("relayed", &"payload").await?;
        self.back.whoami().await
    }
}

static TOKENS: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

#[service]
struct Listener;

#[service(name = "listener")]
impl Listener {
    #[event_handler("front", "relayed")]
    async fn on_relayed(&self, _payload: String) {
        let ctx = Context::current().unwrap();
        TOKENS
            .lock()
            .unwrap()
            .push(ctx.auth_token().map(String::from));
        assert_eq!(ctx.call_id_stack.len(), 2, "{:?}", ctx.call_id_stack);
    }
}

#[tokio::test]
async fn context_data_and_call_ids_flow_through_calls_and_events() {
    let h = ServiceHarness::builder()
        .service::<Front>()
        .service::<Back>()
        .service::<Listener>()
        .start()
        .await
        .unwrap();
    let waiter = h.waiter("listener", "on_relayed");
    let ctx = Arc::new(
        Context::new()
            .with("auth_token", "tok-123")
            .with("user_id", "42")
            .with_timeout(Duration::from_secs(5)),
    );
    let front = h.client::<FrontClient>();
    let seen = Context::scope(ctx, async { front.relay().await })
        .await
        .unwrap();
    assert_eq!(seen.auth_token.as_deref(), Some("tok-123"));
    assert_eq!(seen.user_id.as_deref(), Some("42"));
    assert_eq!(seen.call_id_stack.len(), 2, "{:?}", seen.call_id_stack);
    assert!(seen.call_id_stack[0].starts_with("front.relay."));
    assert!(seen.call_id_stack[1].starts_with("back.whoami."));
    let remaining = seen.deadline_ms.expect("the caller's deadline travels");
    assert!(remaining <= 5_000 && remaining > 0, "{remaining}");

    let run = waiter.wait(Duration::from_secs(5)).await.unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(*TOKENS.lock().unwrap(), vec![Some("tok-123".to_string())]);
    h.stop().await;
}

#[tokio::test]
async fn a_call_without_context_gets_a_fresh_stack_and_the_default_deadline() {
    let h = ServiceHarness::start::<Back>().await.unwrap();
    let seen = h.client::<BackClient>().whoami().await.unwrap();
    assert_eq!(seen.auth_token, None);
    assert_eq!(seen.call_id_stack.len(), 1);
    let remaining = seen.deadline_ms.unwrap();
    assert!(remaining > 25_000 && remaining <= 30_000, "{remaining}");
    h.stop().await;
}
