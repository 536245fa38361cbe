//! The NATS services API (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`), so that standard NATS tooling
//! (`nats micro ls`, `nats micro stats`) lists Basidia services with per-endpoint figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use basidia_core::internal::{backend, lock};
use basidia_core::BrokerError;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Figures of one endpoint (an RPC method).
#[derive(Debug, Default, Clone)]
struct EndpointStats {
    requests: u64,
    errors: u64,
    last_error: String,
    processing: Duration,
}

/// The figures of a declared endpoint, counted without a lock (every request records one), on
/// cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_ns: AtomicU64,
    last_error: Mutex<String>,
}

/// Which figures a request counts towards, found once when the request arrives.
#[derive(Debug)]
pub enum Slot {
    /// A declared endpoint, by its place in the instance's list.
    Declared(usize),
    /// The introspection call, or (all in one bucket) methods the service does not have.
    Other(&'static str),
}

/// The bucket every request to a method the service does not have is counted in. Not a name a
/// method can have (`#` is refused in method names), and one bucket however many names peers
/// try: figures per unknown name would grow with whatever peers send.
pub const UNKNOWN_METHODS: &str = "#unknown";

/// One running service instance as the services API describes it.
#[derive(Debug)]
pub struct SrvInstance {
    pub name: String,
    pub id: String,
    pub version: String,
    pub started: String,
    started_ms: i64,
    pub queue_group: String,
    /// The declared endpoints, sorted by name.
    declared: Vec<(String, Counters)>,
    /// The introspection call and [`UNKNOWN_METHODS`]: at most two entries.
    others: Mutex<BTreeMap<&'static str, EndpointStats>>,
}

#[derive(Serialize)]
struct Ping<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct EndpointInfo<'a> {
    name: &'a str,
    subject: String,
    queue_group: &'a str,
    metadata: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    description: String,
    metadata: BTreeMap<String, String>,
    endpoints: Vec<EndpointInfo<'a>>,
}

#[derive(Serialize)]
struct EndpointStatsOut<'a> {
    name: &'a str,
    subject: String,
    queue_group: &'a str,
    num_requests: u64,
    num_errors: u64,
    last_error: &'a str,
    processing_time: u128,
    average_processing_time: u128,
}

#[derive(Serialize)]
struct Stats<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<String, String>,
    started: &'a str,
    endpoints: Vec<EndpointStatsOut<'a>>,
}

impl SrvInstance {
    pub fn new(name: &str, endpoints: &[String], queue_group: String) -> Self {
        let started_ms = basidia_core::context::now_epoch_ms();
        let started =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(started_ms) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
        SrvInstance {
            name: name.to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started,
            started_ms,
            queue_group,
            declared: {
                let mut names = endpoints.to_vec();
                names.sort();
                names.dedup();
                names
                    .into_iter()
                    .map(|e| (e, Counters::default()))
                    .collect()
            },
            others: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where a request to `endpoint` is counted.
    pub fn slot(&self, endpoint: &str) -> Slot {
        match self
            .declared
            .binary_search_by(|(name, _)| name.as_str().cmp(endpoint))
        {
            Ok(at) => Slot::Declared(at),
            Err(_) if endpoint == basidia_core::DESCRIBE_METHOD => {
                Slot::Other(basidia_core::DESCRIBE_METHOD)
            }
            Err(_) => Slot::Other(UNKNOWN_METHODS),
        }
    }

    /// Records one handled request.
    pub fn record(&self, slot: &Slot, elapsed: Duration, error: Option<&str>) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        match slot {
            Slot::Declared(at) => {
                let Some((_, c)) = self.declared.get(*at) else {
                    return;
                };
                c.requests.fetch_add(1, Ordering::Relaxed);
                c.processing_ns.fetch_add(nanos, Ordering::Relaxed);
                if let Some(e) = error {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    *lock(&c.last_error) = e.to_string();
                }
            }
            Slot::Other(endpoint) => {
                let mut others = lock(&self.others);
                let s = others.entry(endpoint).or_default();
                s.requests += 1;
                s.processing += elapsed;
                if let Some(e) = error {
                    s.errors += 1;
                    s.last_error = e.to_string();
                }
            }
        }
    }

    /// The figures of every endpoint, declared or met, by name.
    fn snapshot(&self) -> BTreeMap<String, EndpointStats> {
        let mut all: BTreeMap<String, EndpointStats> = lock(&self.others)
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        for (name, c) in &self.declared {
            all.insert(
                name.clone(),
                EndpointStats {
                    requests: c.requests.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    last_error: lock(&c.last_error).clone(),
                    processing: Duration::from_nanos(c.processing_ns.load(Ordering::Relaxed)),
                },
            );
        }
        all
    }

    fn subject(&self, endpoint: &str) -> String {
        super::rpc_subject(&self.name, endpoint)
    }

    /// The answer to a `$SRV.<verb>` request, as JSON.
    pub fn answer(&self, verb: &str) -> Vec<u8> {
        let stats = self.snapshot();
        let out = match verb {
            "PING" => serde_json::to_vec(&Ping {
                kind: "io.nats.micro.v1.ping_response",
                name: &self.name,
                id: &self.id,
                version: &self.version,
                metadata: framework_metadata(),
            }),
            "INFO" => serde_json::to_vec(&Info {
                kind: "io.nats.micro.v1.info_response",
                name: &self.name,
                id: &self.id,
                version: &self.version,
                description: format!("Basidia service {}", self.name),
                metadata: instance_metadata(self.started_ms),
                endpoints: stats
                    .keys()
                    .map(|e| EndpointInfo {
                        name: e,
                        subject: self.subject(e),
                        queue_group: &self.queue_group,
                        metadata: BTreeMap::new(),
                    })
                    .collect(),
            }),
            _ => serde_json::to_vec(&Stats {
                kind: "io.nats.micro.v1.stats_response",
                name: &self.name,
                id: &self.id,
                version: &self.version,
                metadata: BTreeMap::new(),
                started: &self.started,
                endpoints: stats
                    .iter()
                    .map(|(e, s)| EndpointStatsOut {
                        name: e,
                        subject: self.subject(e),
                        queue_group: &self.queue_group,
                        num_requests: s.requests,
                        num_errors: s.errors,
                        last_error: &s.last_error,
                        processing_time: s.processing.as_nanos(),
                        average_processing_time: s
                            .processing
                            .as_nanos()
                            .checked_div(u128::from(s.requests))
                            .unwrap_or(0),
                    })
                    .collect(),
            }),
        };
        out.unwrap_or_default()
    }
}

/// The metadata key that marks a services-API answer as coming from a Basidia service.
pub const FRAMEWORK_KEY: &str = "framework";

fn framework_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([(FRAMEWORK_KEY.to_string(), "basidia".to_string())])
}

/// The metadata of an INFO answer: the framework's mark, and where and since when the instance
/// runs, for `basidia status`.
fn instance_metadata(started_ms: i64) -> BTreeMap<String, String> {
    let mut m = framework_metadata();
    m.insert("host".into(), basidia_core::broker::host_name());
    m.insert("pid".into(), std::process::id().to_string());
    m.insert("started_ms".into(), started_ms.to_string());
    m
}

/// An INFO answer as a [`basidia_core::InstanceInfo`], if a Basidia service gave it.
fn instance_of(answer: &[u8]) -> Option<basidia_core::InstanceInfo> {
    #[derive(serde::Deserialize)]
    struct EndpointIn {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct InfoIn {
        name: String,
        id: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
        #[serde(default)]
        endpoints: Vec<EndpointIn>,
    }
    let info: InfoIn = serde_json::from_slice(answer).ok()?;
    if info.metadata.get(FRAMEWORK_KEY).map(String::as_str) != Some("basidia") {
        return None;
    }
    let field = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
    Some(basidia_core::InstanceInfo {
        service: info.name,
        id: info.id,
        host: field("host"),
        pid: field("pid").parse().unwrap_or(0),
        version: info.version,
        started_ms: field("started_ms").parse().unwrap_or(0),
        entrypoints: info
            .endpoints
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != basidia_core::DESCRIBE_METHOD && n != UNKNOWN_METHODS)
            .collect(),
    })
}

/// The service name in a `$SRV.PING` answer, if a Basidia service gave it.
pub fn basidia_ping_name(answer: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct PingIn {
        name: String,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    }
    let ping: PingIn = serde_json::from_slice(answer).ok()?;
    (ping.metadata.get(FRAMEWORK_KEY).map(String::as_str) == Some("basidia")).then_some(ping.name)
}

impl crate::NatsBroker {
    pub(crate) async fn serve_srv_api(
        &self,
        instance: Arc<SrvInstance>,
        cancel: CancellationToken,
    ) -> Result<(), BrokerError> {
        let mut subs = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{}", instance.name),
                format!("$SRV.{verb}.{}.{}", instance.name, instance.id),
            ] {
                let sub = self
                    .inner
                    .client
                    .subscribe(subject)
                    .await
                    .map_err(backend)?;
                subs.push((verb, sub));
            }
        }
        for (verb, mut sub) in subs {
            let client = self.inner.client.clone();
            let instance = Arc::clone(&instance);
            let cancel = cancel.clone();
            tokio::spawn(async move {
                loop {
                    let msg = tokio::select! {
                        () = cancel.cancelled() => break,
                        m = sub.next() => match m { Some(m) => m, None => break },
                    };
                    if let Some(reply) = msg.reply {
                        let _ = client.publish(reply, instance.answer(verb).into()).await;
                    }
                }
                let _ = sub.unsubscribe().await;
            });
        }
        Ok(())
    }

    /// Every Basidia instance that answers `$SRV.INFO` within the discovery window.
    pub(crate) async fn discover_instances(
        &self,
    ) -> Result<Option<Vec<basidia_core::InstanceInfo>>, BrokerError> {
        let answers = self.ask_all("$SRV.INFO").await?;
        let mut all: Vec<basidia_core::InstanceInfo> =
            answers.iter().filter_map(|a| instance_of(a)).collect();
        basidia_core::InstanceInfo::sort(&mut all);
        Ok(Some(all))
    }

    /// The answers to a request every instance takes: collected until they pause (100 ms
    /// after the last, 300 ms for the first), for a second at most.
    async fn ask_all(&self, subject: &'static str) -> Result<Vec<bytes::Bytes>, BrokerError> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.map_err(backend)?;
        client
            .publish_with_reply(subject, inbox, bytes::Bytes::new())
            .await
            .map_err(backend)?;
        client.flush().await.map_err(backend)?;
        let mut answers = Vec::new();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut quiet = Duration::from_millis(300);
        loop {
            let wait = quiet.min(give_up.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, sub.next()).await {
                Ok(Some(msg)) => {
                    answers.push(msg.payload);
                    quiet = Duration::from_millis(100);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(answers)
    }

    pub(crate) async fn discover_services(&self) -> Result<Option<Vec<String>>, BrokerError> {
        let names: std::collections::BTreeSet<String> = self
            .ask_all("$SRV.PING")
            .await?
            .iter()
            .filter_map(|a| basidia_ping_name(a))
            .collect();
        Ok(Some(names.into_iter().collect()))
    }
}
