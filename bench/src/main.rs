//! `cargo run --release -p basidia-bench -- [--quick] [--broker memory|amqp|nats|http|all]`
//!
//! Measures RPC round trips of `greeting_service.hello` through the typed client: sequential and
//! with 16 and 64 concurrent callers, with p50 and p99 latency from an HDR histogram. On AMQP and
//! NATS the raw client (lapin, async-nats) does the same round trip in the same run,
//! interleaved, so each Basidia figure has a ratio to raw beside it; events and resident memory
//! are measured too. Prints a markdown table and writes
//! `bench/results.json`.

/// The Basidia side of every comparison: `greeting_service.hello("World")` through the typed
/// client, its future not boxed (as the raw sides' are not). A macro, since a function cannot
/// name the closure's future type.
macro_rules! hello_call {
    ($client:expr) => {{
        let client: basidia_example_services::GreetingServiceClient = $client;
        // Shared as the raw clients are: one reference count per call.
        let client = std::sync::Arc::new(client);
        move || {
            let client = std::sync::Arc::clone(&client);
            async move {
                let r = client.hello("World".to_string()).await?;
                anyhow::ensure!(r == "Hello, World!", "unexpected reply {r:?}");
                anyhow::Ok(())
            }
        }
    }};
}

mod cpu;
mod events;
mod http;
mod raw_amqp;
mod rss;
mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use basidia::{Client, MemoryBroker, Runner, RunnerConfig, SharedBroker};
use basidia_example_services::{GreetingService, GreetingServiceClient};
use hdrhistogram::Histogram;

// As in the hosts `basidia run` builds; the raw clients measured here share it.
#[global_allocator]
static ALLOCATOR: basidia_alloc::Allocator = basidia_alloc::Allocator;

struct Measurement {
    broker: &'static str,
    workload: &'static str,
    concurrency: usize,
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    raw_per_s: Option<f64>,
}

/// Runs `calls` on `concurrency` tasks for `duration`; returns calls per second and latencies.
async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    call: F,
) -> anyhow::Result<(f64, Histogram<u64>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                call().await?;
                let us = u64::try_from(t.elapsed().as_nanos() / 1000).unwrap_or(u64::MAX);
                hist.record(us.max(1))?;
                n += 1;
            }
            anyhow::Ok((n, hist))
        }));
    }
    let mut total = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        let (n, h) = t.await??;
        total += n;
        hist.add(h)?;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), hist))
}

/// Measures Basidia and the raw client at 1, 16 and 64 callers, interleaved.
async fn compare<B, BF, R, RF>(
    broker: &'static str,
    server: &'static str,
    duration: Duration,
    basidia_call: B,
    raw_call: R,
) -> anyhow::Result<Vec<Measurement>>
where
    B: Fn() -> BF + Clone + Send + 'static,
    BF: std::future::Future<Output = anyhow::Result<()>> + Send,
    R: Fn() -> RF + Clone + Send + 'static,
    RF: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    compare_as(broker, "rpc", server, duration, basidia_call, raw_call).await
}

/// [`compare`] for a workload named `workload`; `server` is the broker process whose CPU time
/// is counted too (none if empty).
async fn compare_as<B, BF, R, RF>(
    broker: &'static str,
    workload: &'static str,
    server: &'static str,
    duration: Duration,
    basidia_call: B,
    raw_call: R,
) -> anyhow::Result<Vec<Measurement>>
where
    B: Fn() -> BF + Clone + Send + 'static,
    BF: std::future::Future<Output = anyhow::Result<()>> + Send,
    R: Fn() -> RF + Clone + Send + 'static,
    RF: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    drive(4, Duration::from_millis(300), basidia_call.clone()).await?;
    drive(4, Duration::from_millis(300), raw_call.clone()).await?;
    // For profiling one side alone: BASIDIA_BENCH_ONLY=basidia or =raw.
    let only = std::env::var("BASIDIA_BENCH_ONLY").unwrap_or_default();
    // The two sides alternate in short slices, so that drift in the machine's speed (other
    // processes, the broker's housekeeping) falls on both alike.
    let rounds = if duration >= Duration::from_secs(2) {
        8
    } else {
        2
    };
    let slice = duration / rounds;
    let mut out = Vec::new();
    // For profiling some levels alone: BASIDIA_BENCH_CONCURRENCY=64 (or 1,64).
    let levels: Vec<usize> = match std::env::var("BASIDIA_BENCH_CONCURRENCY") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .with_context(|| format!("BASIDIA_BENCH_CONCURRENCY={v:?}"))?,
        Err(_) => vec![1, 16, 64],
    };
    let server_pid = (!server.is_empty())
        .then(|| cpu::server_pid(server))
        .flatten();
    let server_pid = server_pid.as_deref();
    for concurrency in levels {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut calls, mut raw_calls) = (0.0, 0.0);
        let (mut cpu, mut raw_cpu) = (cpu::Usage::default(), cpu::Usage::default());
        for _ in 0..rounds {
            if only != "raw" {
                let before = cpu::Usage::now(server_pid);
                let (per_s, h) = drive(concurrency, slice, basidia_call.clone()).await?;
                cpu.add_since(&before, server_pid);
                calls += per_s * slice.as_secs_f64();
                hist.add(h)?;
            }
            if only != "basidia" {
                let before = cpu::Usage::now(server_pid);
                let (per_s, _) = drive(concurrency, slice, raw_call.clone()).await?;
                raw_cpu.add_since(&before, server_pid);
                raw_calls += per_s * slice.as_secs_f64();
            }
        }
        eprintln!(
            "{broker} {workload} x{concurrency}: CPU per call (us), this process / {server}: \
             Basidia {} | raw {}",
            cpu.per_call(calls),
            raw_cpu.per_call(raw_calls)
        );
        let total = duration.as_secs_f64();
        out.push(Measurement {
            broker,
            workload,
            concurrency,
            per_s: calls / total,
            p50_us: hist.value_at_quantile(0.50) as f64,
            p99_us: hist.value_at_quantile(0.99) as f64,
            raw_per_s: Some(raw_calls / total),
        });
    }
    Ok(out)
}

/// Whether chosen RPC levels alone are measured (`BASIDIA_BENCH_CONCURRENCY`), for profiling: the
/// event and RSS runs are then left out.
fn profiling_one_level() -> bool {
    std::env::var_os("BASIDIA_BENCH_CONCURRENCY").is_some()
}

/// Concurrent publishers in the event workload.
const EVENT_PUBLISHERS: usize = 16;

/// The msgpack request Basidia sends for `hello("World")`, which the raw clients echo: on a
/// broker that carries the deadline in the envelope (NATS), with one (an hour ahead, so that it
/// stays ahead while the raw requests go to the Basidia service: see BASIDIA_BENCH_RAW_TARGET).
fn hello_request(broker: &dyn basidia::Broker) -> anyhow::Result<Vec<u8>> {
    let metadata = basidia_core::envelope::RequestMetadata {
        deadline_ms: (broker.kind() == "nats")
            .then(|| basidia_core::context::epoch_ms_after(Duration::from_secs(3600))),
        ..Default::default()
    };
    Ok(basidia_core::envelope::encode_request_with(
        basidia::Format::MsgPack,
        &("World",),
        &basidia_core::envelope::NoKwargs,
        &metadata,
    )?)
}

/// How long each concurrency level runs on a networked broker.
fn networked_duration(quick: bool) -> Duration {
    if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(4)
    }
}

/// Event throughput of Basidia and of the raw client `raw_side` on the broker at `url`, the two
/// sides taking turns in rounds (as the RPC slices do) so that drift in the machine's speed falls
/// on both alike; prints the CPU each event cost. Basidia's handler and dispatcher have
/// connections of their own, as the raw side's consumer and publisher do.
async fn compare_events(
    broker: &'static str,
    server: &str,
    url: &str,
    raw_side: impl events::RawEvents,
    quick: bool,
) -> anyhow::Result<Measurement> {
    let basidia_side =
        events::BasidiaEvents::start(basidia::connect(url).await?, basidia::connect(url).await?)
            .await?;
    let compared = alternate_events(broker, server, &basidia_side, &raw_side, quick).await;
    basidia_side.stop().await;
    raw_side.stop().await;
    compared
}

/// The rounds of [`compare_events`]: four of 10,000 events per side (one of 1,000 with
/// `--quick`).
async fn alternate_events(
    broker: &'static str,
    server: &str,
    basidia_side: &events::BasidiaEvents,
    raw_side: &impl events::RawEvents,
    quick: bool,
) -> anyhow::Result<Measurement> {
    let rounds = if quick { 1 } else { 4 };
    let per_round = if quick { 1_000 } else { 10_000 };
    let server_pid = cpu::server_pid(server);
    let server_pid = server_pid.as_deref();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut elapsed, mut raw_elapsed) = (Duration::ZERO, Duration::ZERO);
    let (mut cpu, mut raw_cpu) = (cpu::Usage::default(), cpu::Usage::default());
    for _ in 0..rounds {
        let before = cpu::Usage::now(server_pid);
        let run = basidia_side.run(EVENT_PUBLISHERS, per_round).await?;
        cpu.add_since(&before, server_pid);
        elapsed += run.elapsed;
        hist.add(run.hist)?;
        let before = cpu::Usage::now(server_pid);
        let raw = raw_side.run(EVENT_PUBLISHERS, per_round).await?;
        raw_cpu.add_since(&before, server_pid);
        raw_elapsed += raw.elapsed;
    }
    let events = (per_round * rounds) as f64;
    eprintln!(
        "{broker} events x{EVENT_PUBLISHERS}: CPU per event (us), this process / {server}: \
         Basidia {} | raw {}",
        cpu.per_call(events),
        raw_cpu.per_call(events)
    );
    Ok(Measurement {
        broker,
        workload: "events",
        concurrency: EVENT_PUBLISHERS,
        per_s: events / elapsed.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.50) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        raw_per_s: Some(events / raw_elapsed.as_secs_f64()),
    })
}

/// The memory broker's event figures (there is no raw client to compare with).
fn event_measurement(broker: &'static str, run: events::EventRun) -> Measurement {
    Measurement {
        broker,
        workload: "events",
        concurrency: EVENT_PUBLISHERS,
        per_s: run.per_s(),
        p50_us: run.hist.value_at_quantile(0.50) as f64,
        p99_us: run.hist.value_at_quantile(0.99) as f64,
        raw_per_s: None,
    }
}

/// The typed call both broker benchmarks time.
async fn bench_amqp(url: &str, quick: bool) -> anyhow::Result<Vec<Measurement>> {
    let mut config = RunnerConfig::default();
    config.defaults.max_workers = 64;
    let server = basidia::connect(url)
        .await
        .context("connecting to RabbitMQ")?;
    let mut runner = Runner::new(server).with_config(config);
    runner.add::<GreetingService>();
    let running = runner.start().await?;
    let caller = basidia::RpcProxy::new(basidia::connect(url).await?);
    let client = GreetingServiceClient::connect(&caller);
    let topology = match std::env::var("BASIDIA_BENCH_RAW_TOPOLOGY").as_deref() {
        Ok("direct") => raw_amqp::Topology::Direct,
        _ => raw_amqp::Topology::Nameko,
    };
    let raw_server = raw_amqp::RawServer::start(url, topology).await?;
    let raw = raw_amqp::RawClient::connect(url, &raw_server, topology).await?;
    // The raw request carries what Basidia's does: a msgpack envelope of the same size.
    let body = hello_request(caller.broker().as_ref())?;
    let body = Arc::new(body);
    let duration = networked_duration(quick);
    let basidia_call = hello_call!(client.clone());
    // Shared, not cloned per call: the baseline does no more per call than a lean caller would.
    let raw_call = {
        let raw = Arc::new(raw);
        let body = body.clone();
        move || {
            let raw = Arc::clone(&raw);
            let body = body.clone();
            async move {
                let r = raw.echo(&body).await?;
                anyhow::ensure!(r.len() == body.len(), "unexpected raw reply");
                Ok(())
            }
        }
    };
    let mut out = compare("amqp", "beam.smp", duration, basidia_call, raw_call).await?;
    running.stop().await;
    if profiling_one_level() {
        return Ok(out);
    }
    let raw_side = events::RawAmqpEvents::start(url).await?;
    out.push(compare_events("amqp", "beam.smp", url, raw_side, quick).await?);
    Ok(out)
}

async fn bench_memory(quick: bool) -> anyhow::Result<Vec<Measurement>> {
    let broker: SharedBroker = Arc::new(MemoryBroker::new());
    let mut config = RunnerConfig::default();
    config.defaults.max_workers = 64;
    let mut runner = Runner::new(broker).with_config(config);
    runner.add::<GreetingService>();
    let running = runner.start().await.context("starting greeting_service")?;
    let client = GreetingServiceClient::connect(&running.rpc_proxy());
    let duration = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    // Warm up.
    drive(4, Duration::from_millis(200), hello_call!(client.clone())).await?;
    let mut out = Vec::new();
    for concurrency in [1, 16, 64] {
        let (per_s, hist) = drive(concurrency, duration, hello_call!(client.clone())).await?;
        out.push(Measurement {
            broker: "memory",
            workload: "rpc",
            concurrency,
            per_s,
            p50_us: hist.value_at_quantile(0.50) as f64,
            p99_us: hist.value_at_quantile(0.99) as f64,
            raw_per_s: None,
        });
    }
    running.stop().await;
    let memory = MemoryBroker::new();
    let side = events::BasidiaEvents::start(Arc::new(memory.clone()), Arc::new(memory)).await?;
    let run = side
        .run(EVENT_PUBLISHERS, if quick { 5_000 } else { 200_000 })
        .await;
    side.stop().await;
    out.push(event_measurement("memory", run?));
    Ok(out)
}

async fn bench_nats(url: &str, quick: bool) -> anyhow::Result<Vec<Measurement>> {
    let mut config = RunnerConfig::default();
    config.defaults.max_workers = 64;
    let server = basidia::connect(url).await.context("connecting to NATS")?;
    let mut runner = Runner::new(server).with_config(config);
    runner.add::<GreetingService>();
    let running = runner.start().await?;
    let caller = basidia::RpcProxy::new(basidia::connect(url).await?);
    let client = GreetingServiceClient::connect(&caller);
    // The raw baseline: a queue-group echo server and a plain request, each on its own
    // connection, with a body the size of Basidia's request. BASIDIA_BENCH_RAW_HEADERS=1 makes
    // its requests carry a `Basidia-Deadline` header, to show what one header costs (Basidia's
    // requests carry their deadline in the envelope, and neither they nor replies have
    // headers). BASIDIA_BENCH_RAW_TARGET=service sends the raw requests to the Basidia service
    // instead of the echo server: Basidia's caller against a raw caller, both calling the same
    // service, which shows the caller's share of the cost.
    let raw_server = async_nats::connect(url).await?;
    let subject = format!("bench.raw.echo.{}", std::process::id());
    let mut sub = raw_server
        .queue_subscribe(subject.clone(), "bench".into())
        .await?;
    let responder = raw_server.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let raw_client = async_nats::connect(url).await?;
    let body = hello_request(caller.broker().as_ref())?;
    let body = bytes_of(body);
    let duration = networked_duration(quick);
    let basidia_call = hello_call!(client.clone());
    let to_service = std::env::var("BASIDIA_BENCH_RAW_TARGET").as_deref() == Ok("service");
    let subject = if to_service {
        basidia_nats::rpc_subject(GreetingServiceClient::SERVICE, "hello")
    } else {
        subject
    };
    // Shared, not cloned per call (a client clone allocates), and the subject built once: the
    // baseline does no more per call than a lean caller would.
    let raw_call = {
        let raw = Arc::new(raw_client);
        let subject = async_nats::Subject::from(subject.as_str());
        move || {
            let raw = Arc::clone(&raw);
            let subject = subject.clone();
            let body = body.clone();
            async move {
                let r = if std::env::var_os("BASIDIA_BENCH_RAW_HEADERS").is_some() {
                    let mut h = async_nats::HeaderMap::new();
                    let in_a_minute =
                        basidia_core::context::epoch_ms_after(Duration::from_secs(60));
                    h.insert("Basidia-Deadline", in_a_minute.to_string());
                    raw.request_with_headers(subject, h, body.clone()).await?
                } else {
                    raw.request(subject, body.clone()).await?
                };
                if to_service {
                    let h = r.headers.as_ref();
                    anyhow::ensure!(
                        h.and_then(|h| h.get("Nats-Service-Error")).is_none(),
                        "the service answered with an error"
                    );
                } else {
                    anyhow::ensure!(r.payload.len() == body.len(), "unexpected raw reply");
                }
                Ok(())
            }
        }
    };
    let mut out = compare("nats", "nats-server", duration, basidia_call, raw_call).await?;
    running.stop().await;
    if profiling_one_level() {
        return Ok(out);
    }
    let raw_side = events::RawNatsEvents::start(url).await?;
    out.push(compare_events("nats", "nats-server", url, raw_side, quick).await?);
    Ok(out)
}

fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut broker = "memory".to_string();
    let mut traced: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--broker" => broker = args.next().context("--broker needs a value")?,
            "--telemetry" => {
                let ratio = args.next().context("--telemetry needs a sampling ratio")?;
                traced = Some(ratio.parse().context("--telemetry takes a ratio, 0 to 1")?);
            }
            "--serve-examples" => {
                let url = args.next().context("--serve-examples needs a URL")?;
                return rss::serve_examples(&url, args.next().as_deref() == Some("basic"));
            }
            other => bail!(
                "unknown argument {other:?}; usage: basidia-bench [--quick] [--broker memory|amqp|nats|http|all] [--telemetry RATIO]"
            ),
        }
    }
    if !["memory", "amqp", "nats", "http", "all"].contains(&broker.as_str()) {
        bail!("unknown broker {broker:?}: use memory, amqp, nats, http or all");
    }
    let nats_url = std::env::var("BASIDIA_BENCH_NATS_URL")
        .or_else(|_| std::env::var("BASIDIA_TEST_NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let amqp_url = std::env::var("BASIDIA_BENCH_AMQP_URL")
        .or_else(|_| std::env::var("BASIDIA_TEST_AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sink = match traced {
        Some(ratio) => Some(rt.block_on(telemetry::start(ratio))?),
        None => None,
    };
    let mut results = Vec::new();
    if broker == "memory" || broker == "all" {
        results.extend(rt.block_on(bench_memory(quick))?);
    }
    if broker == "amqp" || broker == "all" {
        results.extend(rt.block_on(bench_amqp(&amqp_url, quick))?);
    }
    if broker == "nats" || broker == "all" {
        results.extend(rt.block_on(bench_nats(&nats_url, quick))?);
    }
    if broker == "http" || broker == "all" {
        results.extend(rt.block_on(http::bench_http(Some(nats_url.as_str()), quick))?);
    }
    let load = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut rss = Vec::new();
    let rss_brokers = if profiling_one_level() || traced.is_some() {
        vec![]
    } else {
        vec![
            ("memory", "memory://"),
            ("amqp", amqp_url.as_str()),
            ("nats", nats_url.as_str()),
        ]
    };
    for (name, url) in rss_brokers {
        if broker == name || broker == "all" {
            for basic in [true, false] {
                rss.push(rt.block_on(rss::measure(name, url, load, basic))?);
            }
        }
    }
    println!("| broker | workload | callers | Basidia /s | raw /s | ratio | p50 (us) | p99 (us) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for m in &results {
        let (raw, ratio) = match m.raw_per_s {
            Some(r) => (format!("{r:.0}"), format!("{:.2}", m.per_s / r)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {:.0} | {raw} | {ratio} | {:.1} | {:.1} |",
            m.broker, m.workload, m.concurrency, m.per_s, m.p50_us, m.p99_us
        );
    }
    println!("\n| broker | process | RSS idle (MB) | RSS under load (MB) |");
    println!("|---|---|---:|---:|");
    for r in &rss {
        println!(
            "| {} | {} | {:.1} | {:.1} |",
            r.broker,
            r.process,
            r.idle_kb as f64 / 1024.0,
            r.load_kb as f64 / 1024.0
        );
    }
    let measurements: Vec<serde_json::Value> = results
        .iter()
        .map(|m| {
            serde_json::json!({
                "broker": m.broker,
                "workload": m.workload,
                "concurrency": m.concurrency,
                "basidia_per_s": m.per_s.round(),
                "raw_per_s": m.raw_per_s.map(f64::round),
                "ratio": m.raw_per_s.map(|r| (m.per_s / r * 100.0).round() / 100.0),
                "p50_us": m.p50_us,
                "p99_us": m.p99_us,
            })
        })
        .collect();
    // BASIDIA_BENCH_RESULTS puts them elsewhere (the smoke test keeps the tree untouched).
    let path = std::env::var_os("BASIDIA_BENCH_RESULTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let name = if traced.is_some() {
                "results-traced.json"
            } else {
                "results.json"
            };
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
        });
    let rss: Vec<serde_json::Value> = rss
        .iter()
        .map(|r| {
            serde_json::json!({
                "broker": r.broker,
                "process": if r.process == "basic" {
                    "greeting_service alone"
                } else {
                    "examples/services: greeting, database, user, notification"
                },
                "idle_mb": (r.idle_kb as f64 / 102.4).round() / 10.0,
                "load_mb": (r.load_kb as f64 / 102.4).round() / 10.0,
            })
        })
        .collect();
    if let Some(sink) = &sink {
        let (posts, bytes) = sink.received();
        println!(
            "\ntraces sampled at {}: {posts} exports, {bytes} bytes received",
            traced.unwrap_or_default()
        );
    }
    let json = serde_json::json!({
        "quick": quick,
        "telemetry_sample_ratio": traced,
        "measurements": measurements,
        "rss": rss,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
