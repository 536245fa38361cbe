//! The sample services served over a real broker and called from another connection; shared by
//! the RabbitMQ and NATS tests.

use std::time::Duration;

use basidia::{Client, ErrorKind, RpcProxy, Runner};
use basidia_example_services::*;

/// Serves every sample service on the broker at `url` and calls them from another connection.
pub async fn exercise(url: &str) {
    let url = url.to_string();
    let server = basidia::connect(&url).await.expect("the broker answers");
    let mut runner = Runner::new(server);
    register(&mut runner);
    let running = runner.start().await.unwrap();

    let caller = RpcProxy::new(basidia::connect(&url).await.unwrap());
    let greeting = GreetingServiceClient::connect(&caller);
    assert_eq!(
        greeting.hello("World".into()).await.unwrap(),
        "Hello, World!"
    );
    assert_eq!(
        greeting.goodbye("World".into()).await.unwrap(),
        "Goodbye, World!"
    );
    let users = UserServiceClient::connect(&caller);
    assert_eq!(
        users.get_user_greeting(42).await.unwrap(),
        "Hello, User 42!"
    );
    let err = users.get_user_greeting(-5).await.unwrap_err();
    assert_eq!(
        err.decode_remote::<UserNotFound>(),
        Some(UserNotFound { user_id: -5 })
    );
    // JSON requests get JSON replies.
    let json = caller.clone().with_format(basidia::Format::Json);
    let v = json
        .call_json(
            "database_service",
            "get_user",
            serde_json::json!({"user_id": 3}),
        )
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"id": 3, "name": "User 3"}));

    let notifications = NotificationServiceClient::connect(&caller);
    let before = notifications.sent().await.unwrap().len();
    users
        .create_user("Ada".into(), "ada@example.com".into())
        .await
        .unwrap();
    let mut sent = Vec::new();
    for _ in 0..100 {
        sent = notifications.sent().await.unwrap();
        if sent.len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sent.contains(&"to ada@example.com: Welcome, Ada!".to_string()),
        "{sent:?}"
    );

    let err = caller
        .call_json("no_such_service", "m", serde_json::json!([]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownService);
    let err = caller
        .call_json("greeting_service", "nope", serde_json::json!([]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MethodNotFound);
    let d = caller.describe("user_service").await.unwrap();
    assert!(d.method("get_user_greeting").is_some());
    running.stop().await;
}
