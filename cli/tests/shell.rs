//! The shell, driven by a script on standard input and through a pseudo-terminal.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_script_on_stdin_runs_line_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = basidia(tmp.path())
        .arg("run")
        .arg(examples())
        .args(["-q", "--shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = r#"greeting_service.hello("World")
# a comment, then a blank line

database_service.get_user(-1)
greeting_service.hello(name=
services
help greeting_service
help greeting_service.hello
emit user_service user.created {"id": 5, "name": "Zed", "email": "zed@example.com"}
greeting_service.goodbye(name='Ann')
exit
greeting_service.hello("never run")
"#;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    // A line failed, so a script's exit status says so; every other line still ran.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("Hello, World!\n"), "{stdout}");
    assert!(
        stderr.contains("error: UserNotFound: no user with id -1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("greeting_service.hello(name=\n"),
        "{stderr}"
    );
    assert!(stderr.contains("^ expected a value"), "{stderr}");
    assert!(
        stdout.contains("database_service\ngreeting_service\nnotification_service\nuser_service\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("greeting_service.hello(name: String) -> String"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dispatched user_service user.created"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("Goodbye, Ann!"), "{stdout}");
    assert!(!stdout.contains("never run"), "{stdout}");
}

/// A child on a pseudo-terminal, and what it has written so far.
struct Pty {
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    child: std::process::Child,
}

impl Pty {
    fn write(&mut self, bytes: &str) {
        self.master.write_all(bytes.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    fn seen(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output after `from` contains `needle`; returns the new end.
    fn expect(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let seen = self.seen();
            if let Some(i) = seen.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the shell exited ({status}) before {needle:?}:\n{seen}");
            }
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} within {timeout:?}; the terminal shows:\n{seen:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_terminal_shell_completes_reports_errors_and_keeps_history() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let child = basidia(tmp.path())
        .arg("run")
        .arg(examples())
        .args(["-q", "--shell"])
        .env("TERM", "xterm")
        .env("BASIDIA_HISTORY", &history)
        .env("RUST_LOG", "warn")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let master = std::fs::File::from(pty.master);
    let output = collect(master.try_clone().unwrap());
    let mut t = Pty {
        master,
        output,
        child,
    };
    let short = Duration::from_secs(20);
    let mut at = t.expect(0, "hosting greeting_service", BUILD_TIMEOUT);
    at = t.expect(at, ">>> ", short);

    // A method name completes from the service's own description.
    t.write("greeting_service.he\t");
    at = t.expect(at, "greeting_service.hello(", short);
    t.write("\"World\")\r");
    at = t.expect(at, "Hello, World!", short);

    // Parameter names complete inside the parentheses (two choices: a second Tab lists them).
    t.write("user_service.create_user(\t\t");
    at = t.expect(at, "email=", short);
    assert!(t.seen()[..at].contains("name="), "{}", t.seen());

    // A remote error is shown, and the shell carries on.
    t.write("\u{15}database_service.get_user(-1)\r");
    at = t.expect(at, "UserNotFound: no user with id -1", short);
    t.write("greeting_service.hello(\r");
    at = t.expect(at, "unclosed", short);
    t.write("greeting_service.goodbye(\"Bo\")\r");
    t.expect(at, "Goodbye, Bo!", short);

    t.write("exit\r");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = t.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < short, "the shell did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(
        saved.contains(r#"greeting_service.hello("World")"#),
        "{saved}"
    );
}
