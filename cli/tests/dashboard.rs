//! `/dashboard` in a real browser: headless Chromium loads the page from `basidia run
//! examples/services`, its script fetches the data and draws it, and the test reads the DOM the
//! browser ends with; a screenshot is kept as an artefact of the run
//! (`target/test-artefacts/dashboard.png`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Debian's Chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Chromium without a sandbox (the tests run as root), a GPU or any traffic of its own, with a
/// fresh profile; the page's timers run on virtual time, so its refreshes happen at once.
fn browser(chromium: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=6000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[test]
fn the_dashboard_shows_the_services_their_figures_and_errors_in_a_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium: .ci/run installs Debian's chromium package"
        );
        eprintln!("skipped: Debian's chromium is not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut services = Background::start(
        basidia(tmp.path())
            .arg("run")
            .arg(examples())
            .arg("-q")
            .env("BASIDIA_HTTP__DASHBOARD", "true"),
    );
    services.wait_for("serving", BUILD_TIMEOUT);
    let base = services.http_base();
    for _ in 0..3 {
        assert_eq!(curl(&[&format!("{base}/users/7")]).0, 200);
    }
    assert_eq!(curl(&[&format!("{base}/users/-1")]).0, 404);

    let out = output(
        browser(&chromium, &tmp.path().join("profile"))
            .arg("--dump-dom")
            .arg(format!("{base}/dashboard")),
    );
    let (dom, stderr) = text(&out);
    assert!(out.status.success(), "chromium: {stderr}");
    assert!(
        dom.contains(r#"data-loaded="true""#),
        "the script did not draw: {dom}"
    );
    for service in [
        "greeting_service",
        "user_service",
        "database_service",
        "notification_service",
        "api_service",
    ] {
        assert!(
            dom.contains(&format!("<td>{service}</td>")),
            "{service} not listed: {dom}"
        );
    }
    // The instances table: every service of the process, with this process's id.
    let pid_cells = dom.matches(&format!("<td>{}</td>", services.pid())).count();
    assert!(
        pid_cells >= 5,
        "{pid_cells} instances with the host's pid: {dom}"
    );
    // Readiness, the entrypoints' figures and the failed request.
    assert!(dom.contains(r#"<span class="badge UP">UP</span>"#), "{dom}");
    assert!(dom.contains("<td>get_user_greeting</td>"), "{dom}");
    assert!(dom.contains("<code>UserNotFound</code>"), "{dom}");

    // Off unless asked for.
    let mut plain = Background::start(basidia(tmp.path()).arg("run").arg(examples()).arg("-q"));
    plain.wait_for("serving", BUILD_TIMEOUT);
    let (status, _) = curl(&[&format!("{}/dashboard", plain.http_base())]);
    assert_eq!(
        status, 404,
        "the dashboard is served without being asked for"
    );
    drop(plain);

    let shots = target_dir().join("test-artefacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = output(
        browser(&chromium, &tmp.path().join("profile-shot"))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1280,1700")
            .arg(format!("{base}/dashboard")),
    );
    assert!(out.status.success(), "chromium: {:?}", text(&out));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 20_000, "a blank page? {} bytes", png.len());
    assert!(services.interrupt(Duration::from_secs(30)).success());
}
