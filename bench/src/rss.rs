//! Resident set size of a process hosting the four sample services (and of one hosting
//! greeting_service alone, the budget's basic service), idle and under load.
//!
//! The bench runs itself as that process (`--serve-examples URL`): a multi-threaded runtime with
//! the services registered, as `basidia run` hosts them. Idle is read a second after start; under
//! load is the largest reading while 64 callers call `greeting_service.hello` for a few seconds
//! (from this process over the broker; on the memory broker the callers have to live inside the
//! measured process, so its figure includes them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use basidia::{Client, Runner, RunnerConfig};
use basidia_example_services::GreetingServiceClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// RSS figures of one process on one broker, in kilobytes.
pub struct RssFigure {
    pub broker: &'static str,
    /// `examples` (the four sample services) or `basic` (greeting_service alone).
    pub process: &'static str,
    pub idle_kb: u64,
    pub load_kb: u64,
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The child's side: host the sample services on `url` until standard input closes. A line
/// `load <ms>` makes it call itself for that long (for the memory broker) and answer `done`.
pub fn serve_examples(url: &str, basic: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let broker = basidia::connect(url).await?;
        let mut config = RunnerConfig::default();
        config.defaults.max_workers = 64;
        let mut runner = Runner::new(broker).with_config(config);
        if basic {
            runner.add::<basidia_example_services::GreetingService>();
        } else {
            basidia_example_services::register(&mut runner);
        }
        let running = runner.start().await?;
        let client = GreetingServiceClient::connect(&running.rpc_proxy());
        let mut stdout = tokio::io::stdout();
        stdout.write_all(b"ready\n").await?;
        stdout.flush().await?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(ms) = line.strip_prefix("load ") {
                let ms: u64 = ms.trim().parse()?;
                crate::drive(64, Duration::from_millis(ms), hello_call!(client.clone())).await?;
                stdout.write_all(b"done\n").await?;
                stdout.flush().await?;
            }
        }
        running.stop().await;
        anyhow::Ok(())
    })
}

/// Starts the child on `url`, and reads its RSS idle and under `load` of calls.
pub async fn measure(
    broker: &'static str,
    url: &str,
    load: Duration,
    basic: bool,
) -> anyhow::Result<RssFigure> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--serve-examples", url]);
    if basic {
        cmd.arg("basic");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the child has a pid")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
    anyhow::ensure!(
        first.as_deref() == Some("ready"),
        "the child said {first:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kb = vm_rss_kb(pid).context("reading VmRSS")?;

    let peak = Arc::new(AtomicU64::new(idle_kb));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kb) = vm_rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    if url.starts_with("memory:") {
        stdin
            .write_all(format!("load {}\n", load.as_millis()).as_bytes())
            .await?;
        let done =
            tokio::time::timeout(load + Duration::from_secs(30), lines.next_line()).await??;
        anyhow::ensure!(done.as_deref() == Some("done"), "the child said {done:?}");
    } else {
        let caller = basidia::RpcProxy::new(basidia::connect(url).await?);
        let client = GreetingServiceClient::connect(&caller);
        crate::drive(64, load, hello_call!(client)).await?;
        caller.broker().close().await;
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    Ok(RssFigure {
        broker,
        process: if basic { "basic" } else { "examples" },
        idle_kb,
        load_kb: peak.load(Ordering::Relaxed),
    })
}
