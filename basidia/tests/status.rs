//! What `basidia status` lists, in process on the memory broker: every running instance with
//! its entrypoints, host, process id and start; none once stopped.

use basidia::prelude::*;
use basidia::Broker;

#[service]
struct Counter;

#[service(name = "t_counter")]
impl Counter {
    #[rpc]
    async fn count(&self) -> u32 {
        1
    }

    #[event_handler("t_source", "tick")]
    async fn on_tick(&self, _n: u32) {}
}

#[tokio::test]
async fn running_instances_are_listed_and_stopped_ones_are_not() {
    let broker = MemoryBroker::new();
    assert_eq!(broker.instances().await.unwrap(), Some(Vec::new()));
    let mut runner = Runner::new(std::sync::Arc::new(broker.clone()));
    runner.add::<Counter>();
    let first = runner.start().await.unwrap();
    let mut runner = Runner::new(std::sync::Arc::new(broker.clone()));
    runner.add::<Counter>();
    let second = runner.start().await.unwrap();

    let all = broker.instances().await.unwrap().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_ne!(all[0].id, all[1].id);
    for i in &all {
        assert_eq!(i.service, "t_counter");
        assert_eq!(i.pid, std::process::id());
        assert!(!i.host.is_empty());
        assert!(i.started_ms > 0);
        assert_eq!(i.entrypoints, vec!["count", "on_tick"]);
    }

    first.stop().await;
    let left = broker.instances().await.unwrap().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    second.stop().await;
    assert_eq!(broker.instances().await.unwrap(), Some(Vec::new()));
}
