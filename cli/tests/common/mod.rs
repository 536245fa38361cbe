//! Helpers for tests that run the real `basidia` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a first `basidia run` may take: it builds the host program.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

/// The sample services crate.
pub fn examples() -> PathBuf {
    workspace().join("examples/services")
}

/// The workspace's target directory, which scaffolded projects share in tests.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

/// `basidia` with no Basidia settings inherited from the environment, in `cwd`.
pub fn basidia(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_basidia"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BASIDIA_") && !k.starts_with("BASIDIA_TEST_") {
            cmd.env_remove(k);
        }
    }
    // Tests run side by side: each host listens on a port of its own, not on 8000.
    cmd.current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0");
    cmd
}

/// Runs to completion and returns the output.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("basidia runs")
}

/// Standard output and error as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `basidia` process in the background whose standard error is collected.
pub struct Background {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Background {
    /// Starts `cmd` with standard error captured.
    pub fn start(cmd: &mut Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("basidia starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[background] {line}");
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Background {
            child: Some(child),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The base URL of the host's HTTP edge, as `basidia run` printed it.
    pub fn http_base(&self) -> String {
        self.stderr()
            .lines()
            .find_map(|l| l.strip_prefix("basidia: HTTP on "))
            .expect("the HTTP address is printed")
            .trim()
            .to_string()
    }

    /// Waits until standard error contains `needle` `times` times; panics after `timeout` or if
    /// the process exits first.
    pub fn wait_for_count(&mut self, needle: &str, times: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.stderr().matches(needle).count() >= times {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "basidia exited ({status}) before printing {needle:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until standard error contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_count(needle, 1, timeout);
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    pub fn interrupt(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!("no exit within {timeout:?} of SIGINT:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads everything a reader yields into a shared string, on a thread.
pub fn collect<R: Read + Send + 'static>(mut reader: R) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&out);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    out
}

/// An empty directory at a fixed place under the target directory, so that what builds there
/// (host programs, test binaries) keeps the same names from run to run instead of piling up.
pub fn fixed_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Scaffolds a project with `basidia new project` in `parent`, seeded with the workspace's lock
/// file so it builds the same dependency versions in the shared target directory.
pub fn scaffold(parent: &Path, name: &str) -> PathBuf {
    let out = output(basidia(parent).args(["new", "project", name]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let dir = parent.join(name);
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir
}

/// `curl` with `args`; the status and the body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl {args:?}: {text}")),
        body.to_string(),
    )
}

/// `curl -X POST` of `body` as JSON to `url`; the status and the body.
pub fn post_json(url: &str, body: &str) -> (u16, String) {
    curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        body,
        url,
    ])
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The test virtualenv (`BASIDIA_NAMEKO_VENV`), which `.ci/run` makes, for `what` (the foreign
/// peer or tool a test needs from it); `None` after saying so outside CI, a failure in CI.
pub fn test_venv(what: &str) -> Option<PathBuf> {
    let Some(venv) = std::env::var_os("BASIDIA_NAMEKO_VENV") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BASIDIA_NAMEKO_VENV is not set: CI has {what} from it"
        );
        eprintln!("skipped {what}: BASIDIA_NAMEKO_VENV is not set");
        return None;
    };
    Some(PathBuf::from(venv))
}

/// Runs the Python `script` (a path from the workspace root) with `args` in the test
/// virtualenv `venv`; what it printed, as JSON. Panics with its standard error if it fails.
pub fn python_json(venv: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(venv.join("bin/python"))
        .arg(workspace().join(script))
        .args(args)
        .output()
        .expect("the virtualenv's python runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

/// Validates an OpenAPI document with the `openapi-spec-validator` package of the test
/// virtualenv (`BASIDIA_NAMEKO_VENV`); skips with a message without it, outside CI.
pub fn validate_openapi(dir: &std::path::Path, document: &str) {
    let Some(venv) = test_venv("openapi-spec-validator") else {
        return;
    };
    let file = dir.join("openapi.json");
    std::fs::write(&file, document).unwrap();
    let out = Command::new(std::path::Path::new(&venv).join("bin/python"))
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(&file)
        .output()
        .expect("the virtualenv's python runs");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The HS256 secret of the `[auth]` section [`AUTH_CONFIG`] gives.
pub const JWT_SECRET: &str = "the example identity provider's secret";

/// An `[auth]` section verifying [`jwt`]'s tokens.
pub const AUTH_CONFIG: &str =
    "[auth]\nalgorithm = \"HS256\"\nsecret = \"the example identity provider's secret\"\n";

/// A token for `ada` granting `roles`, valid for ten minutes, signed with [`JWT_SECRET`].
pub fn jwt(roles: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "ada", "exp": exp, "roles": roles}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// What every broker's edge must do, from curl, for a host of the example services started
/// with [`AUTH_CONFIG`] and a body limit of 64 KiB at `base`: a 400 for a body that is not
/// JSON, a 413 over the limit, and `/admin/me` refusing a missing token (401 with
/// `WWW-Authenticate`) and a token without the role (403) and answering an admin's.
pub fn check_edge_protections(base: &str, scratch: &Path) {
    let (status, body) = post_json(&format!("{base}/users"), "{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"status\":400"), "problem details: {body}");
    let big = scratch.join("big.json");
    std::fs::write(&big, format!("\"{}\"", "x".repeat(70_000))).unwrap();
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{base}/users"),
    ]);
    assert_eq!(status, 413, "{body}");

    let admin = format!("{base}/admin/me");
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-i", &admin])
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let bearer = |roles: &[&str]| format!("authorization: Bearer {}", jwt(roles));
    let (status, body) = curl(&["-H", &bearer(&["user"]), &admin]);
    assert_eq!(status, 403, "{body}");
    let (status, body) = curl(&["-H", &bearer(&["admin"]), &admin]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"user_id": "ada"}));
}
