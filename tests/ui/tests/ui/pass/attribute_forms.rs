//! Every attribute form the macros accept, and what each one puts in the description.

use basidia::prelude::*;
use basidia::HandlerType;

#[service]
pub struct Injected {
    #[inject(timeout = "1.5s", format = "json")]
    #[inject(section = "other")]
    rpc: RpcProxy,
    #[inject(format = "msgpack")]
    more: RpcProxy,
    #[inject(default)]
    count: u64,
}

#[service(crate = "basidia", name = "injected")]
impl Injected {
    #[rpc]
    async fn count(&self) -> u64 {
        let _ = (&self.rpc, &self.more);
        self.count
    }
}

#[service]
pub struct Forms;

#[service("forms")]
impl Forms {
    /// Renamed on the wire.
    #[rpc(name = "wire_name")]
    async fn rust_name(&self) -> u8 {
        1
    }

    #[basidia::rpc]
    async fn by_path(&self, r#type: String) -> String {
        r#type
    }

    #[timer(interval = "30sec", eager)]
    async fn every_thirty(&self) {}

    #[timer("1m30s")]
    async fn positional(&self) {}

    #[timer(interval = "1.5ms")]
    async fn rounded(&self) {}

    #[timer(interval = "2")]
    async fn bare_seconds(&self) {}

    #[event_handler("users", "created", handler_type = "broadcast", timeout = "1.5s")]
    async fn created(&self, id: u64) {
        let _ = id;
    }

    #[event_handler(source = "users", event_type = "deleted", handler_type = "singleton")]
    async fn deleted(&self, id: u64) {
        let _ = id;
    }

    #[event_handler(event_type = "renamed", "people")]
    async fn renamed(&self) {}

    #[on_start]
    async fn begin(&self) {}

    #[on_stop]
    async fn end(&self) {}
}

fn main() {
    let d = Forms.describe();
    assert_eq!(d.name, "forms");
    let rpc: Vec<(&str, &str)> = d
        .rpc
        .iter()
        .map(|m| (m.name.as_str(), m.doc.as_str()))
        .collect();
    assert_eq!(
        rpc,
        [("wire_name", "Renamed on the wire."), ("by_path", "")]
    );
    assert_eq!(d.rpc[1].params[0].name, "type");

    let timers: Vec<(&str, u64, bool)> = d
        .timers
        .iter()
        .map(|t| (t.name.as_str(), t.interval_ms, t.eager))
        .collect();
    assert_eq!(
        timers,
        [
            ("every_thirty", 30_000, true),
            ("positional", 90_000, false),
            ("rounded", 2, false),
            ("bare_seconds", 2_000, false),
        ]
    );

    let events: Vec<(&str, &str, &str, HandlerType, Option<u64>)> = d
        .events
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.source.as_str(),
                e.event_type.as_str(),
                e.handler_type,
                e.timeout_ms,
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                "created",
                "users",
                "created",
                HandlerType::Broadcast,
                Some(1_500)
            ),
            ("deleted", "users", "deleted", HandlerType::Singleton, None),
            (
                "renamed",
                "people",
                "renamed",
                HandlerType::ServicePool,
                None
            ),
        ]
    );
    assert_eq!(d.events[0].payload, "u64");
    assert_eq!(d.events[2].payload, "()");
    assert_eq!(<Injected as basidia::NamedService>::NAME, "injected");
}
