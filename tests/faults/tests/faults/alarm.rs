//! A RabbitMQ memory alarm (set with `rabbitmqctl`, as an operator or a full disk
//! would) blocks publishing connections. Calls and event publishes still end by their deadline
//! with a clear error, and work resumes once the alarm clears. Before, a call with a 3 s timeout
//! and an event dispatch both waited for as long as the alarm lasted.
//!
//! The test puts the broker's watermark back as it found it, also when it fails.

use std::sync::Arc;
use std::time::Duration;

use basidia::prelude::*;
use basidia::{AmqpBroker, AmqpOptions};
use basidia::{Broker, BrokerError, Message};

use crate::amqp_wire::{start, url};
use crate::child::{rabbitmqctl, NO_ARGS, NO_KWARGS};
use crate::headers::Forged;

/// A memory alarm while it lives: the watermark set so low that RabbitMQ raises the alarm at
/// once, and the one found before put back on drop.
struct MemoryAlarm {
    found: String,
}

impl MemoryAlarm {
    fn raise() -> MemoryAlarm {
        let found = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
            .trim()
            .to_string();
        assert!(
            found.parse::<f64>().is_ok(),
            "a relative watermark to put back, found {found:?}"
        );
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]);
        MemoryAlarm { found }
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        rabbitmqctl(&["set_vm_memory_high_watermark", &self.found]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_ends_calls_and_publishes_by_their_deadline() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    let running = start::<Forged>(&url, None, 4).await;
    let mut options = AmqpOptions::new(&url);
    options.publish_timeout = Duration::from_secs(2);
    let caller = Arc::new(AmqpBroker::connect_with(options).await.unwrap());
    let proxy = RpcProxy::new(caller.clone()).with_timeout(Duration::from_secs(3));
    let hello: String = proxy
        .call("t_forged", "hello", &NO_ARGS, &NO_KWARGS)
        .await
        .expect("the service answers before the alarm");
    assert_eq!(hello, "hello");

    let alarm = MemoryAlarm::raise();
    // RabbitMQ blocks a connection when it next publishes; give the alarm a moment to be up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let began = tokio::time::Instant::now();
    let called = tokio::time::timeout(
        Duration::from_secs(15),
        proxy.call::<String, _, _>("t_forged", "hello", &NO_ARGS, &NO_KWARGS),
    )
    .await
    .expect("a call under an alarm ends by its deadline, not when the alarm clears");
    assert!(called.is_err(), "no answer under the alarm: {called:?}");
    eprintln!(
        "call under the alarm: {:?} after {:?}",
        called,
        began.elapsed()
    );

    let body = serde_json::to_vec(&7).unwrap();
    let published = tokio::time::timeout(
        Duration::from_secs(15),
        caller.publish_event(
            "t_forged_src",
            "ping",
            Message::new(body, "application/json"),
        ),
    )
    .await
    .expect("an event publish under an alarm ends by its publish timeout");
    assert!(
        matches!(published, Err(BrokerError::Blocked { .. })),
        "the publisher learns the broker is blocked: {published:?}"
    );

    drop(alarm);
    let mut resumed = None;
    for _ in 0..60 {
        match proxy
            .call::<String, _, _>("t_forged", "hello", &NO_ARGS, &NO_KWARGS)
            .await
        {
            Ok(answer) => {
                resumed = Some(answer);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    assert_eq!(
        resumed.as_deref(),
        Some("hello"),
        "calls work again once the alarm clears"
    );
    caller.close().await;
    running.stop().await;
}
