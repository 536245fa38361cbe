//! `basidia new`: the scaffold builds, passes its tests and runs under `basidia run` as it is;
//! `basidia run --watch` rebuilds and restarts it as it changes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn cargo(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir).env("CARGO_TARGET_DIR", target_dir());
    cmd
}

#[test]
fn a_new_project_builds_passes_its_tests_and_runs() {
    let project = scaffold(&fixed_dir("new-project"), "shop");
    let out = output(basidia(&project).args(["new", "service", "billing"]));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(project.join("services/src/billing.rs").is_file());
    let out = output(basidia(&project).args(["new", "service", "storefront", "--http"]));
    assert!(out.status.success(), "{:?}", text(&out));

    // Its own tests, one per service, on basidia-testing.
    let out = output(cargo(&project).args(["test", "--quiet"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("test result: ok. 1 passed").count(),
        3,
        "{stdout}"
    );

    // And it runs, with the configuration file it came with.
    let out = output(
        basidia(&project)
            .env("CARGO_TARGET_DIR", target_dir())
            .args([
                "run",
                ".",
                "-q",
                "--exec",
                r#"hello_service.hello("World")"#,
            ])
            .args(["--exec", "billing_service.ping()", "--exec", "services"])
            .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0"),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "Hello, World!",
            "pong from billing_service",
            "billing_service",
            "hello_service",
            "storefront_service"
        ],
        "{stderr}"
    );

    // Bad names are refused.
    let out = output(basidia(&project).args(["new", "service", "Bad Name"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("invalid name"), "{:?}", text(&out));
}

#[test]
fn a_new_project_comes_with_deploy_files_that_check() {
    let tmp = tempfile::tempdir().unwrap();
    let project = scaffold(tmp.path(), "shop_front");
    let dockerfile = std::fs::read_to_string(project.join("Dockerfile")).unwrap();
    let unit = std::fs::read_to_string(project.join("deploy/shop_front.service")).unwrap();
    let manifest = project.join("deploy/kubernetes.yaml");
    // `@word@`, as the templates write their placeholders.
    let placeholder = |text: &str| {
        let parts: Vec<&str> = text.split('@').collect();
        parts.len() > 2
            && parts[1..parts.len() - 1]
                .iter()
                .any(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    for text in [
        &dockerfile,
        &unit,
        &std::fs::read_to_string(&manifest).unwrap(),
    ] {
        assert!(!placeholder(text), "a placeholder is left: {text}");
    }
    assert!(dockerfile.contains("basidia build --release"));
    assert!(dockerfile.contains("USER 10001"));
    assert!(unit.contains("ExecStart=/opt/shop_front/shop_front --config"));
    assert!(project.join(".dockerignore").is_file());
    let Some(venv) = test_venv("hadolint") else {
        return;
    };
    let venv = venv.as_path();
    // hadolint, from the test virtualenv: no warning at all.
    let out = output(Command::new(venv.join("bin/hadolint")).arg(project.join("Dockerfile")));
    assert!(out.status.success(), "hadolint: {:?}", text(&out));
    // The manifest parses as YAML, and its probes are the health endpoints.
    let check = r#"
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
deployment, service = docs
assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
assert deployment["metadata"]["name"] == "shop-front", deployment["metadata"]
spec = deployment["spec"]["template"]["spec"]
container = spec["containers"][0]
assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
env = {e["name"]: e for e in container["env"]}
assert env["BASIDIA_HTTP__HEALTH"]["value"] == "true"
assert env["BASIDIA_HTTP__ADDRESS"]["value"] == "0.0.0.0:8000"
assert "secretKeyRef" in env["BASIDIA_BROKER"]["valueFrom"]
assert spec["securityContext"]["runAsNonRoot"] is True
print("ok")
"#;
    let out = output(
        Command::new(venv.join("bin/python"))
            .args(["-c", check])
            .arg(&manifest),
    );
    assert_eq!(text(&out).0.trim(), "ok", "{:?}", text(&out));
}

#[test]
fn a_build_error_is_shown_as_cargo_shows_it() {
    let project = scaffold(&fixed_dir("build-error"), "broken");
    std::fs::write(
        project.join("services/src/hello.rs"),
        "pub struct HelloService;\nfn oops() -> u32 { \"not a number\" }\n",
    )
    .unwrap();
    let out = output(
        basidia(&project)
            .env("CARGO_TARGET_DIR", target_dir())
            .args(["run", ".", "--exec", "services"]),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error[E0308]: mismatched types"),
        "{stderr}"
    );
    assert!(stderr.contains("services/src/hello.rs:2"), "{stderr}");
    assert!(stderr.contains("the build failed"), "{stderr}");
}

#[test]
fn watch_rebuilds_and_restarts_on_change() {
    let project = scaffold(&fixed_dir("watch"), "watched");
    let mut run = Background::start(
        basidia(&project)
            .env("CARGO_TARGET_DIR", target_dir())
            .args(["run", ".", "--watch", "-q"]),
    );
    run.wait_for("serving hello_service on memory://", BUILD_TIMEOUT);

    // A new service appears after the rebuild.
    let out = output(basidia(&project).args(["new", "service", "billing"]));
    assert!(out.status.success(), "{:?}", text(&out));
    run.wait_for("serving hello_service, billing_service", BUILD_TIMEOUT);
    assert!(run.stderr().contains("restarting"), "{}", run.stderr());

    // A broken edit keeps the running services, and says so.
    let billing = project.join("services/src/billing.rs");
    let good = std::fs::read_to_string(&billing).unwrap();
    std::fs::write(&billing, format!("{good}\nfn broken( {{\n")).unwrap();
    run.wait_for("watching for the next change", BUILD_TIMEOUT);
    std::fs::write(&billing, &good).unwrap();
    run.wait_for_count("serving hello_service, billing_service", 2, BUILD_TIMEOUT);

    let status = run.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", run_stderr_hint());
}

fn run_stderr_hint() -> &'static str {
    "see [background] lines above"
}
