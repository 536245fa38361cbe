//! `basidia run` on the in-memory broker: expressions, service selection, configuration reaching
//! services, misuse, and Ctrl-C.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn run_exec_prints_results_on_the_memory_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args([
        "-q",
        "--exec",
        r#"greeting_service.hello("World")"#,
        "--exec",
        r#"greeting_service.goodbye(name="Ann")"#,
        "--exec",
        r#"user_service.create_user("Zed", email="zed@example.com")"#,
        "--exec",
        "user_service.get_user_greeting(7)",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "Hello, World!", "{stdout}");
    assert_eq!(lines[1], "Goodbye, Ann!", "{stdout}");
    // A structured result is printed as JSON.
    let json_end = stdout.find("\n}\n").expect("a JSON object") + 2;
    let user: serde_json::Value =
        serde_json::from_str(&stdout[stdout.find('{').unwrap()..json_end]).unwrap();
    assert_eq!(user["name"], "Zed");
    assert_eq!(lines.last().unwrap(), &"Hello, User 7!", "{stdout}");
}

#[test]
fn a_failing_expression_is_reported_and_the_exit_status_is_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args([
        "-q",
        "--exec",
        "database_service.get_user(-1)",
        "--exec",
        "greeting_service.hello(",
        "--exec",
        "greeting_service.hello(1, 2)",
        "--exec",
        "no_such_service.x()",
        "--exec",
        r#"greeting_service.hello("still here")"#,
    ]));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Every expression ran; the errors name what went wrong.
    assert_eq!(stdout.trim(), "Hello, still here!", "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: UserNotFound: no user with id -1"),
        "{stderr}"
    );
    assert!(stderr.contains("unclosed `(`"), "{stderr}");
    assert!(stderr.contains("error: IncorrectSignature"), "{stderr}");
    assert!(
        stderr.contains(r#"unknown service "no_such_service""#),
        "{stderr}"
    );
}

#[test]
fn service_restricts_what_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args([
        "-q",
        "--service",
        "greeting_service",
        "--exec",
        "services",
        "--exec",
        r#"database_service.get_user(1)"#,
    ]));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "greeting_service");
    assert!(
        stderr.contains(r#"unknown service "database_service""#),
        "{stderr}"
    );

    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args([
        "-q",
        "--service",
        "nosuch",
        "--exec",
        "services",
    ]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(r#"no service named "nosuch""#), "{stderr}");
    assert!(stderr.contains("greeting_service"), "{stderr}");
}

#[test]
fn configuration_reaches_the_services_in_precedence_order() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("basidia.toml"),
        "[greeting]\nsalutation = \"Hi\"\n",
    )
    .unwrap();
    let hello = ["-q", "--exec", r#"greeting_service.hello("World")"#];
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args(hello));
    assert_eq!(text(&out).0.trim(), "Hi, World!", "{:?}", text(&out));

    // The environment overrides the file.
    let out = output(
        basidia(tmp.path())
            .env("BASIDIA_GREETING__SALUTATION", "Howdy")
            .arg("run")
            .arg(examples())
            .args(hello),
    );
    assert_eq!(text(&out).0.trim(), "Howdy, World!", "{:?}", text(&out));

    // A section the service cannot read stops it from starting, with the key named.
    std::fs::write(
        tmp.path().join("basidia.toml"),
        "[greeting]\nsalutaton = \"Hi\"\n",
    )
    .unwrap();
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args(hello));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("salutaton"), "{stderr}");

    // Invalid configuration is reported before anything is built.
    std::fs::write(tmp.path().join("basidia.toml"), "max_workers = \"many\"\n").unwrap();
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args(hello));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("max_workers") && stderr.contains("basidia.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains("Compiling"), "{stderr}");
}

#[test]
fn a_path_without_service_crates_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(basidia(tmp.path()).args(["run", "does/not/exist"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does/not/exist does not exist"), "{stderr}");

    // The cli crate depends on basidia and has a library, but is not marked as a service crate.
    let out = output(basidia(tmp.path()).arg("run").arg(workspace().join("cli")));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no service crate"), "{stderr}");
    assert!(
        stderr.contains("basidia-cli is not marked as a service crate"),
        "{stderr}"
    );

    // An empty directory.
    let out = output(basidia(tmp.path()).args(["run", "."]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ctrl_c_stops_the_services_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let mut services = Background::start(basidia(tmp.path()).arg("run").arg(examples()).arg("-q"));
    services.wait_for("serving", BUILD_TIMEOUT);
    let status = services.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// The crates a package of the generated host links with `features`, one name per line.
fn host_crates(manifest: &std::path::Path, features: &[&str]) -> Vec<String> {
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    cmd.args([
        "tree",
        "--offline",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--manifest-path",
    ])
    .arg(manifest);
    for f in features {
        cmd.args(["--features", f]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn a_service_process_links_neither_the_shell_nor_an_argument_parser() {
    let tmp = tempfile::tempdir().unwrap();
    // Writes (and builds) the host of the sample services.
    let out = output(basidia(tmp.path()).arg("run").arg(examples()).args([
        "-q",
        "--exec",
        r#"greeting_service.hello("World")"#,
    ]));
    assert!(out.status.success(), "{}", text(&out).1);
    let hosts = target_dir().join("basidia-run");
    let host = std::fs::read_dir(&hosts)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("basidia-host-basidia-example-services-"))
        })
        .expect("the sample services' host");
    let manifest = host.join("Cargo.toml");

    let plain = host_crates(&manifest, &[]);
    assert!(plain.iter().any(|c| c == "basidia-runtime"), "{plain:?}");
    for unwanted in [
        "clap",
        "rustyline",
        "basidia-shell",
        "basidia-cli",
        "notify",
    ] {
        assert!(
            !plain.iter().any(|c| c == unwanted),
            "the plain host links {unwanted}: {plain:?}"
        );
    }
    // The binary for --exec and --shell has the shell, and still no argument parser.
    let with_shell = host_crates(&manifest, &["shell"]);
    assert!(
        with_shell.iter().any(|c| c == "rustyline"),
        "{with_shell:?}"
    );
    assert!(!with_shell.iter().any(|c| c == "clap"), "{with_shell:?}");

    // Its hand-read command line still explains itself and names a mistake.
    let name = host.file_name().unwrap().to_str().unwrap();
    let binary = target_dir().join("debug").join(format!("{name}-shell"));
    let help = output(std::process::Command::new(&binary).arg("--help"));
    assert!(help.status.success());
    assert!(
        text(&help).0.contains("--service NAME"),
        "{}",
        text(&help).0
    );
    let wrong = output(std::process::Command::new(&binary).args(["--brokr", "memory://"]));
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong).1.contains(r#"unknown argument "--brokr""#),
        "{}",
        text(&wrong).1
    );
}
