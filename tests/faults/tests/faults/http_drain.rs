//! A deploy stopping a host in the middle of HTTP requests: the host (this test binary started
//! again, hosting a slow route through `basidia_runtime::Hosted` as `basidia run` does) gets
//! SIGTERM while a plain TCP client waits on a request. The request finishes with its answer,
//! new connections are refused from the signal on, the work ran once, and the process exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use basidia::prelude::*;

const LOG_VAR: &str = "BASIDIA_FAULT_HTTP_CHILD_LOG";

/// How long the slow route works.
const WORK: Duration = Duration::from_secs(3);

fn record(what: &str, id: &str) {
    let Some(path) = std::env::var_os(LOG_VAR) else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the run log opens");
    writeln!(f, "{what} {id}").expect("the run log takes a line");
}

/// A slow HTTP route, counted.
#[service]
pub struct HttpDrainProbe;

#[service(name = "http_drain_probe")]
impl HttpDrainProbe {
    #[http(GET, "/slow/{id}")]
    async fn slow(&self, id: String) -> String {
        record("start", &id);
        tokio::time::sleep(WORK).await;
        record("done", &id);
        id
    }
}

fn register(runner: &mut Runner) {
    runner.add::<HttpDrainProbe>();
}

/// The child's side: hosts the probe on the memory broker with its HTTP server, until SIGTERM.
#[test]
#[ignore = "run by the HTTP drain test in a process of its own"]
fn http_child() {
    if std::env::var_os(LOG_VAR).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(async {
        let args = match basidia_runtime::HostArgs::parse(["--broker", "memory://"]) {
            Ok(basidia_runtime::Parsed::Run(a)) => a,
            other => panic!("{other:?}"),
        };
        let registrations = [basidia_runtime::Registration {
            crate_name: "faults",
            register,
        }];
        let hosted = basidia_runtime::Hosted::start(&args, &registrations)
            .await
            .expect("the probe starts");
        hosted.serve().await
    });
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

fn runs(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(what))
        .count()
}

#[test]
fn a_stop_lets_http_requests_in_flight_finish_and_takes_no_new_ones() {
    let dir = tempfile_dir();
    let log = dir.join("runs.log");
    let stderr = dir.join("child.stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "http_drain::http_child",
            "--nocapture",
        ])
        .env(LOG_VAR, &log)
        .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0")
        .env("BASIDIA_SHUTDOWN_GRACE", "10s")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let addr = loop {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .find_map(|l| l.strip_prefix("basidia: HTTP on http://"))
        {
            break a.trim().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never listened:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let in_flight = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET /slow/a HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer
        })
    };
    let started = Instant::now();
    while runs(&log, "start") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the request never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());

    // From the signal on, nothing new is taken.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "a new connection was accepted after SIGTERM"
    );

    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status}:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(runs(&log, "start"), 1, "the request ran once");
    assert_eq!(runs(&log, "done"), 1, "and finished");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "basidia-http-drain-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
