//! Event throughput: `concurrency` publishers dispatch events that one handler service counts;
//! the figure is events per second from the first dispatch to the last event handled (and
//! acknowledged). The raw baselines do the same with the bare clients and the same guarantees:
//! on RabbitMQ persistent messages, publisher confirms, a durable queue and manual acks; on NATS
//! JetStream publishes with acks and a durable pull consumer with explicit acks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use basidia::prelude::*;
use basidia::{Format, RunnerConfig, SharedBroker};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Events handled in the current run.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// The current run's id; events of earlier runs left in a durable queue are not counted.
static RUN: AtomicU64 = AtomicU64::new(0);

/// The event the benchmark dispatches.
#[derive(Serialize, Deserialize)]
pub struct Tick {
    run: u64,
    seq: u64,
}

/// Counts the ticks of the current run.
#[service]
pub struct BenchSink;

#[service(name = "bench_sink")]
impl BenchSink {
    /// Counts one tick.
    #[event_handler("bench_source", "tick")]
    pub async fn on_tick(&self, tick: Tick) {
        if tick.run == RUN.load(Ordering::Relaxed) {
            HANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The result of one event run: how long its events took from the first dispatch to the last
/// handled, and the dispatch latencies.
pub struct EventRun {
    pub events: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
}

impl EventRun {
    /// Events per second.
    pub fn per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

async fn wait_until(counter: impl Fn() -> u64, target: u64, limit: Duration) -> anyhow::Result<()> {
    let give_up = Instant::now() + limit;
    while counter() < target {
        anyhow::ensure!(
            Instant::now() < give_up,
            "only {} of {target} events handled within {limit:?}",
            counter()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

/// Publishes `total` events from `concurrency` tasks, then waits until `handled` reaches `total`:
/// events per second from the first dispatch to the last handled, and the dispatch latencies.
async fn run_events<F, Fut>(
    concurrency: usize,
    total: u64,
    publish: F,
    handled: impl Fn() -> u64,
) -> anyhow::Result<EventRun>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let hist = publish_all(concurrency, total, publish).await?;
    wait_until(handled, total, Duration::from_secs(120)).await?;
    Ok(EventRun {
        events: total,
        elapsed: started.elapsed(),
        hist,
    })
}

/// Runs `publish` from `concurrency` tasks until `total` events are out; returns the latencies.
async fn publish_all<F, Fut>(
    concurrency: usize,
    total: u64,
    publish: F,
) -> anyhow::Result<Histogram<u64>>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let publish = publish.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                let t = Instant::now();
                publish(seq).await?;
                hist.record((t.elapsed().as_micros() as u64).max(1))?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    Ok(hist)
}

/// Basidia's side: `BenchSink` running on one broker connection, an `EventDispatcher` on another.
pub struct BasidiaEvents {
    running: basidia::RunningServices,
    dispatcher: EventDispatcher,
}

impl BasidiaEvents {
    /// Starts `BenchSink` on `server` and a dispatcher for `bench_source` on `dispatch_broker`.
    pub async fn start(
        server: SharedBroker,
        dispatch_broker: SharedBroker,
    ) -> anyhow::Result<Self> {
        let mut config = RunnerConfig::default();
        config.defaults.max_workers = 64;
        let mut runner = basidia::Runner::new(server).with_config(config);
        runner.add::<BenchSink>();
        let running = runner.start().await.context("starting bench_sink")?;
        let dispatcher = EventDispatcher::new(dispatch_broker, "bench_source", Format::MsgPack);
        Ok(BasidiaEvents {
            running,
            dispatcher,
        })
    }

    /// Dispatches `total` events from `concurrency` tasks and waits until all are handled.
    pub async fn run(&self, concurrency: usize, total: u64) -> anyhow::Result<EventRun> {
        let run = RUN.fetch_add(1, Ordering::Relaxed) + 1;
        HANDLED.store(0, Ordering::Relaxed);
        let dispatcher = self.dispatcher.clone();
        run_events(
            concurrency,
            total,
            move |seq| {
                let dispatcher = dispatcher.clone();
                async move {
                    dispatcher.dispatch("tick", &Tick { run, seq }).await?;
                    Ok(())
                }
            },
            || HANDLED.load(Ordering::Relaxed),
        )
        .await
    }

    /// Stops the handler service.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A raw client's side of the event comparison.
pub trait RawEvents {
    /// Publishes `total` messages from `concurrency` tasks and waits until all are consumed.
    async fn run(&self, concurrency: usize, total: u64) -> anyhow::Result<EventRun>;

    /// Stops consuming and removes what the side declared.
    async fn stop(self);
}

/// Raw lapin: persistent messages with confirms through a topic exchange into a durable queue,
/// consumed with manual acks and a prefetch of 64.
pub struct RawAmqpEvents {
    channel: lapin::Channel,
    publisher: lapin::Channel,
    handled: Arc<AtomicU64>,
    consuming: tokio::task::JoinHandle<()>,
    // Kept open for as long as the run lasts.
    _connections: (lapin::Connection, lapin::Connection),
}

const RAW_AMQP_EXCHANGE: &str = "basidia-bench-raw-events";
const RAW_AMQP_QUEUE: &str = "basidia-bench-raw-events";

impl RawAmqpEvents {
    /// Declares the exchange and queue, and starts the consumer.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        use lapin::options::*;
        use lapin::types::FieldTable;
        use lapin::{Connection, ConnectionProperties, ExchangeKind};

        let consumer_conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = consumer_conn.create_channel().await?;
        channel
            .exchange_declare(
                RAW_AMQP_EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                RAW_AMQP_QUEUE.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_purge(RAW_AMQP_QUEUE.into(), QueuePurgeOptions::default())
            .await?;
        channel
            .queue_bind(
                RAW_AMQP_QUEUE.into(),
                RAW_AMQP_EXCHANGE.into(),
                "tick".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.basic_qos(64, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                RAW_AMQP_QUEUE.into(),
                "basidia-bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&handled);
        let consuming = tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    break;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let publisher_conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let publisher = publisher_conn.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(RawAmqpEvents {
            channel,
            publisher,
            handled,
            consuming,
            _connections: (consumer_conn, publisher_conn),
        })
    }
}

impl RawEvents for RawAmqpEvents {
    async fn run(&self, concurrency: usize, total: u64) -> anyhow::Result<EventRun> {
        use lapin::options::BasicPublishOptions;
        use lapin::BasicProperties;

        let body = Arc::new(basidia::Format::MsgPack.encode(&Tick { run: 0, seq: 0 })?);
        let publisher = self.publisher.clone();
        let start = self.handled.load(Ordering::Relaxed);
        let handled = Arc::clone(&self.handled);
        run_events(
            concurrency,
            total,
            move |_| {
                let publisher = publisher.clone();
                let body = Arc::clone(&body);
                async move {
                    publisher
                        .basic_publish(
                            RAW_AMQP_EXCHANGE.into(),
                            "tick".into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default()
                                .with_delivery_mode(2)
                                .with_content_type("application/x-msgpack".into()),
                        )
                        .await?
                        .await?;
                    Ok(())
                }
            },
            move || handled.load(Ordering::Relaxed) - start,
        )
        .await
    }

    async fn stop(self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

        self.consuming.abort();
        let _ = self
            .channel
            .queue_delete(RAW_AMQP_QUEUE.into(), QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(RAW_AMQP_EXCHANGE.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// Raw async-nats: JetStream publishes awaiting their acks into a file-backed stream, and a
/// durable pull consumer with explicit acks and at most 64 unacknowledged.
pub struct RawNatsEvents {
    js: async_nats::jetstream::Context,
    publisher: async_nats::jetstream::Context,
    handled: Arc<AtomicU64>,
    consuming: tokio::task::JoinHandle<()>,
}

const RAW_NATS_STREAM: &str = "BASIDIA_BENCH_RAW_EVENTS";
const RAW_NATS_SUBJECT: &str = "basidia.bench.raw.events";

impl RawNatsEvents {
    /// Creates the stream and the consumer, and starts consuming.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};

        let consumer_client = async_nats::connect(url).await?;
        let js = jetstream::new(consumer_client.clone());
        let _ = js.delete_stream(RAW_NATS_STREAM).await;
        let stream = js
            .create_stream(stream::Config {
                name: RAW_NATS_STREAM.into(),
                subjects: vec![RAW_NATS_SUBJECT.into()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                ..Default::default()
            })
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 64,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&handled);
        let consuming = tokio::spawn(async move {
            while let Some(Ok(m)) = messages.next().await {
                if m.ack().await.is_err() {
                    break;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let publisher = jetstream::new(async_nats::connect(url).await?);
        Ok(RawNatsEvents {
            js,
            publisher,
            handled,
            consuming,
        })
    }
}

impl RawEvents for RawNatsEvents {
    async fn run(&self, concurrency: usize, total: u64) -> anyhow::Result<EventRun> {
        let body = bytes::Bytes::from(basidia::Format::MsgPack.encode(&Tick { run: 0, seq: 0 })?);
        let publisher = self.publisher.clone();
        let start = self.handled.load(Ordering::Relaxed);
        let handled = Arc::clone(&self.handled);
        run_events(
            concurrency,
            total,
            move |_| {
                let publisher = publisher.clone();
                let body = body.clone();
                async move {
                    publisher.publish(RAW_NATS_SUBJECT, body).await?.await?;
                    Ok(())
                }
            },
            move || handled.load(Ordering::Relaxed) - start,
        )
        .await
    }

    async fn stop(self) {
        self.consuming.abort();
        let _ = self.js.delete_stream(RAW_NATS_STREAM).await;
    }
}
