//! `basidia build`: a standalone program of the sample services that runs from an empty
//! directory, with no cargo on the `PATH` and no sources beside it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_built_program_runs_the_services_from_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = tmp.path().join("dist");
    let out = output(basidia(tmp.path()).arg("build").arg(examples()).args([
        "--quiet",
        "--out",
        dist.to_str().unwrap(),
        "--name",
        "services",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let program = dist.join("services");
    assert!(
        stdout.contains(&format!("built {}", program.display())),
        "{stdout}"
    );

    // Somewhere else, with only the program and a configuration file of the operator's.
    let run_dir = tmp.path().join("elsewhere");
    std::fs::create_dir(&run_dir).unwrap();
    let installed = run_dir.join("services");
    std::fs::copy(&program, &installed).unwrap();
    std::fs::write(
        run_dir.join("production.toml"),
        "broker = \"memory://\"\n[http]\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(&installed);
    cmd.current_dir(&run_dir)
        .args(["--config", "production.toml"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUST_LOG", "info");
    let mut services = Background::start(&mut cmd);
    services.wait_for("serving", Duration::from_secs(30));
    let base = services.http_base();
    let (status, body) = curl(&[&format!("{base}/users/7")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"message":"Hello, User 7!"}"#);
    let status = services.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");

    // A build of something that is no service crate says why, with the usage error status.
    let out = output(
        basidia(tmp.path())
            .arg("build")
            .arg(&run_dir)
            .args(["--out", dist.to_str().unwrap()]),
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("no service crate"),
        "{:?}",
        text(&out)
    );
}
