//! The sample services, through the in-process harness.

use std::time::Duration;

use basidia::{Dependency, ErrorKind, RpcError, ServiceOptions};
use basidia_example_services::*;
use basidia_testing::{worker_factory, FakeService, ServiceHarness};
use serde_json::json;

async fn all_services() -> ServiceHarness {
    ServiceHarness::builder()
        .service::<GreetingService>()
        .service::<DatabaseService>()
        .service::<UserService>()
        .service::<NotificationService>()
        .service::<ApiService>()
        .start()
        .await
        .expect("services start")
}

#[tokio::test]
async fn greeting_service_says_hello_and_goodbye() {
    let h = ServiceHarness::start::<GreetingService>().await.unwrap();
    let greeting = h.client::<GreetingServiceClient>();
    assert_eq!(
        greeting.hello("World".into()).await.unwrap(),
        "Hello, World!"
    );
    assert_eq!(
        greeting.goodbye("World".into()).await.unwrap(),
        "Goodbye, World!"
    );
    // Dynamically, positional and keyword.
    assert_eq!(
        h.call_json("greeting_service", "hello", json!(["Ann"]))
            .await
            .unwrap(),
        json!("Hello, Ann!")
    );
    assert_eq!(
        h.call_json("greeting_service", "goodbye", json!({"name": "Bob"}))
            .await
            .unwrap(),
        json!("Goodbye, Bob!")
    );
    h.stop().await;
}

#[tokio::test]
async fn greeting_service_reads_its_salutation_from_configuration() {
    let h = ServiceHarness::builder()
        .service::<GreetingService>()
        .section("greeting", json!({"salutation": "Hi"}))
        .start()
        .await
        .unwrap();
    let greeting = h.client::<GreetingServiceClient>();
    assert_eq!(greeting.hello("Ann".into()).await.unwrap(), "Hi, Ann!");
    h.stop().await;

    // A misspelt key is an error at start, not a silent default.
    let err = ServiceHarness::builder()
        .service::<GreetingService>()
        .section("greeting", json!({"salutaton": "Hi"}))
        .start()
        .await
        .expect_err("unknown key");
    assert!(err.to_string().contains("salutaton"), "{err}");
}

#[tokio::test]
async fn database_service_returns_users_and_typed_errors() {
    let h = ServiceHarness::start::<DatabaseService>().await.unwrap();
    let db = h.client::<DatabaseServiceClient>();
    assert_eq!(
        db.get_user(7).await.unwrap(),
        User {
            id: 7,
            name: "User 7".into()
        }
    );
    assert_eq!(
        h.call_json("database_service", "get_user", json!([3]))
            .await
            .unwrap(),
        json!({"id": 3, "name": "User 3"})
    );
    let err = db.get_user(-1).await.unwrap_err();
    let remote = err.remote().expect("a remote error");
    assert_eq!(remote.exc_type, "UserNotFound");
    assert_eq!(remote.value, "no user with id -1");
    assert_eq!(
        err.decode_remote::<UserNotFound>(),
        Some(UserNotFound { user_id: -1 })
    );
    h.stop().await;
}

#[tokio::test]
async fn user_service_greets_through_the_database_dependency() {
    let h = all_services().await;
    let users = h.client::<UserServiceClient>();
    assert_eq!(
        users.get_user_greeting(42).await.unwrap(),
        "Hello, User 42!"
    );
    // A downstream user error passes through unchanged.
    let err = users.get_user_greeting(0).await.unwrap_err();
    assert_eq!(
        err.decode_remote::<UserNotFound>(),
        Some(UserNotFound { user_id: 0 })
    );
    h.stop().await;
}

#[tokio::test]
async fn user_service_without_database_fails_fast_with_unknown_service() {
    let h = ServiceHarness::start::<UserService>().await.unwrap();
    let err = h
        .client::<UserServiceClient>()
        .get_user_greeting(1)
        .await
        .unwrap_err();
    let remote = err.remote().expect("the handler's error travels back");
    assert_eq!(remote.exc_type, "UnknownService");
    h.stop().await;
}

#[tokio::test]
async fn created_users_are_welcomed_by_the_notification_service() {
    let h = all_services().await;
    let waiter = h.waiter("notification_service", "on_user_created");
    let user = h
        .client::<UserServiceClient>()
        .create_user("Ada".into(), "ada@example.com".into())
        .await
        .unwrap();
    assert_eq!(user.name, "Ada");
    let run = waiter.wait(Duration::from_secs(5)).await.unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    let sent = h
        .client::<NotificationServiceClient>()
        .sent()
        .await
        .unwrap();
    assert_eq!(sent, vec!["to ada@example.com: Welcome, Ada!".to_string()]);
    h.stop().await;
}

#[tokio::test]
async fn notification_service_sends_notifications() {
    let h = ServiceHarness::start::<NotificationService>()
        .await
        .unwrap();
    let n = h.client::<NotificationServiceClient>();
    assert!(n
        .send_notification("hi".into(), "bob".into())
        .await
        .unwrap());
    assert_eq!(
        h.call_json(
            "notification_service",
            "send_notification",
            json!({"message": "yo", "recipient": "amy"})
        )
        .await
        .unwrap(),
        json!(true)
    );
    assert_eq!(n.sent().await.unwrap(), vec!["to bob: hi", "to amy: yo"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_digest_timer_runs_every_minute_on_the_paused_clock() {
    let h = ServiceHarness::start::<NotificationService>()
        .await
        .unwrap();
    let n = h.client::<NotificationServiceClient>();
    n.send_notification("a".into(), "b".into()).await.unwrap();
    for _ in 0..3 {
        let waiter = h.waiter("notification_service", "digest");
        waiter.wait(Duration::from_secs(61)).await.unwrap();
    }
    assert_eq!(n.digests().await.unwrap(), vec![1, 1, 1]);
    h.stop().await;
}

#[tokio::test]
async fn the_database_can_be_replaced_with_a_fake() {
    let fake = FakeService::of::<DatabaseServiceClient>()
        .returning("get_user", json!({"id": 5, "name": "Fake Five"}))
        .serve()
        .await
        .unwrap();
    let h = ServiceHarness::builder()
        .service_with::<UserService>(ServiceOptions::new().replace(
            "db",
            Dependency::new(fake.client::<DatabaseServiceClient>()),
        ))
        .start()
        .await
        .unwrap();
    let greeting = h
        .client::<UserServiceClient>()
        .get_user_greeting(5)
        .await
        .unwrap();
    assert_eq!(greeting, "Hello, Fake Five!");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "get_user");
    assert_eq!(calls[0].args, vec![json!(5)]);
    h.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn worker_factory_builds_one_service_to_call_directly() {
    let fake = FakeService::of::<DatabaseServiceClient>()
        .returning("get_user", json!({"id": 9, "name": "Nine"}))
        .serve()
        .await
        .unwrap();
    let service = worker_factory::<UserService>()
        .replace(
            "db",
            Dependency::new(fake.client::<DatabaseServiceClient>()),
        )
        .build()
        .await
        .unwrap();
    assert_eq!(service.get_user_greeting(9).await.unwrap(), "Hello, Nine!");
    // Dependencies that were not replaced reach nothing: they fail fast.
    let err = service
        .create_user("x".into(), "x@example.com".into())
        .await;
    assert!(
        err.is_ok(),
        "dispatching with no handler bound is not an error: {err:?}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn worker_factory_builds_an_http_service_to_call_directly() {
    let fake = FakeService::of::<UserServiceClient>()
        .returning("get_user_greeting", json!("Hello, Nine!"))
        .serve()
        .await
        .unwrap();
    let api = worker_factory::<ApiService>()
        .replace("users", Dependency::new(fake.client::<UserServiceClient>()))
        .build()
        .await
        .unwrap();
    let basidia::http::Json(greeting) = api.get_user(9).await.unwrap();
    assert_eq!(greeting.message, "Hello, Nine!");
    fake.stop().await;
}

#[tokio::test]
async fn worker_factory_dependencies_that_are_not_replaced_fail_fast() {
    let service = worker_factory::<UserService>().build().await.unwrap();
    let err = service.get_user_greeting(1).await.unwrap_err();
    assert!(
        matches!(err, RpcError::UnknownService(ref s) if s == "database_service"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::UnknownService);
}

#[tokio::test]
async fn restricted_entrypoints_leave_the_others_unreachable() {
    let h = ServiceHarness::builder()
        .service_with::<GreetingService>(ServiceOptions::new().only_entrypoints(["hello"]))
        .start()
        .await
        .unwrap();
    let g = h.client::<GreetingServiceClient>();
    assert_eq!(g.hello("A".into()).await.unwrap(), "Hello, A!");
    let err = g.goodbye("A".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MethodNotFound);
    h.stop().await;
}

#[tokio::test]
async fn every_service_describes_itself() {
    let h = all_services().await;
    let d = h.proxy().describe("user_service").await.unwrap();
    assert_eq!(d.name, "user_service");
    let m = d.method("create_user").unwrap();
    let params: Vec<(&str, &str)> = m
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.ty.as_str()))
        .collect();
    assert_eq!(params, vec![("name", "String"), ("email", "String")]);
    assert_eq!(m.returns, "User");
    assert_eq!(m.doc, "Creates a user and dispatches `user.created`.");
    // User derives schemars::JsonSchema, String has a schema of its own.
    let schema = m.returns_schema.as_ref().expect("a schema for User");
    assert_eq!(schema["properties"]["id"]["type"], "integer", "{schema}");
    assert_eq!(m.params[0].schema.as_ref().unwrap()["type"], "string");
    let n = h.proxy().describe("notification_service").await.unwrap();
    assert_eq!(n.events.len(), 1);
    assert_eq!(n.events[0].source, "user_service");
    assert_eq!(n.events[0].event_type, "user.created");
    assert_eq!(n.events[0].payload, "UserCreated");
    assert_eq!(n.timers[0].name, "digest");
    assert_eq!(n.timers[0].interval_ms, 60_000);
    h.stop().await;
}

#[tokio::test]
async fn api_service_greets_and_creates_users_over_http() {
    let h = all_services().await;
    let http = h.http(&basidia::http::HttpConfig::default()).unwrap();
    let r = http.get("/users/7").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body, json!({"message": "Hello, User 7!"}));
    let r = http.get("/users/0").await;
    assert_eq!(r.status(), 404, "UserNotFound is mapped");

    let welcomed = h.waiter("notification_service", "on_user_created");
    let r = http
        .json(
            "POST",
            "/users",
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let user: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(user["name"], "Ada");
    welcomed.wait(Duration::from_secs(5)).await.unwrap();
    let r = http
        .json("POST", "/users", &json!({"name": "no email"}))
        .await;
    assert_eq!(r.status(), 400);
    h.stop().await;
}
