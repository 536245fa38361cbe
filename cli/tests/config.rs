//! Configuration layering as `basidia show-config` reports it: defaults < file < environment <
//! flags, secrets masked, and bad configuration named by key and origin.

mod common;

use common::*;

const FILE: &str = r#"
broker = "amqp://app:s3cret@rabbit:5672/%2f"
max_workers = 20
rpc_timeout = "5s"
serializer = "json"

[services.user_service]
max_workers = 4

[database]
url = "postgres://app:hunter2@db/app"
password = "hunter2"
pool = 5
"#;

fn show(cmd: &mut std::process::Command) -> String {
    let out = output(cmd.arg("show-config"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn defaults_then_file_then_environment_then_flags() {
    let tmp = tempfile::tempdir().unwrap();
    // Defaults only.
    let out = show(&mut basidia(tmp.path()));
    assert!(out.contains("broker = \"memory://\"  # default"), "{out}");
    assert!(out.contains("max_workers = 10  # default"), "{out}");
    assert!(out.contains("rpc_timeout = \"30s\"  # default"), "{out}");

    std::fs::write(tmp.path().join("basidia.toml"), FILE).unwrap();
    let out = show(&mut basidia(tmp.path()));
    assert!(
        out.contains("max_workers = 20  # set in basidia.toml"),
        "{out}"
    );
    assert!(
        out.contains("serializer = \"json\"  # set in basidia.toml"),
        "{out}"
    );
    assert!(out.contains("[services.user_service]"), "{out}");
    assert!(out.contains("max_workers = 4"), "{out}");
    assert!(out.contains("pool = 5  # set in basidia.toml"), "{out}");

    let out = show(
        basidia(tmp.path())
            .env("BASIDIA_MAX_WORKERS", "30")
            .env("BASIDIA_RPC_TIMEOUT", "1500ms")
            .env("BASIDIA_DATABASE__POOL", "7")
            .env("BASIDIA_SERVICES__USER_SERVICE__MAX_WORKERS", "2"),
    );
    assert!(
        out.contains("max_workers = 30  # set by BASIDIA_MAX_WORKERS"),
        "{out}"
    );
    assert!(
        out.contains("rpc_timeout = \"1500ms\"  # set by BASIDIA_RPC_TIMEOUT"),
        "{out}"
    );
    assert!(
        out.contains("pool = 7  # set by BASIDIA_DATABASE__POOL"),
        "{out}"
    );
    assert!(out.contains("max_workers = 2\n"), "{out}");

    let out = show(
        basidia(tmp.path())
            .env("BASIDIA_MAX_WORKERS", "30")
            .env("BASIDIA_BROKER", "nats://127.0.0.1:4222")
            .args(["--max-workers", "40", "--timeout", "2s"]),
    );
    assert!(out.contains("max_workers = 40  # command line"), "{out}");
    assert!(
        out.contains("rpc_timeout = \"2s\"  # command line"),
        "{out}"
    );
    assert!(
        out.contains("broker = \"nats://127.0.0.1:4222\"  # set by BASIDIA_BROKER"),
        "{out}"
    );

    // Variables of other tools that share the prefix are not configuration.
    let out = show(basidia(tmp.path()).env("BASIDIA_SOMETHING_ELSE", "x"));
    assert!(!out.contains("something_else"), "{out}");
}

#[test]
fn secrets_are_masked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("basidia.toml"), FILE).unwrap();
    let out = show(basidia(tmp.path()).env("BASIDIA_DATABASE__API_TOKEN", "tok123"));
    assert!(
        !out.contains("s3cret") && !out.contains("hunter2") && !out.contains("tok123"),
        "{out}"
    );
    assert!(
        out.contains("broker = \"amqp://app:***@rabbit:5672/%2f\""),
        "{out}"
    );
    assert!(out.contains("url = \"postgres://app:***@db/app\""), "{out}");
    assert!(out.contains("password = \"***\""), "{out}");
    assert!(out.contains("api_token = \"***\""), "{out}");

    // Trace export headers carry collector credentials: their names only.
    std::fs::write(
        tmp.path().join("basidia.toml"),
        "[telemetry]\nenabled = true\nheaders = { \"x-api-key\" = \"k-77be1\" }\n",
    )
    .unwrap();
    let out = show(&mut basidia(tmp.path()));
    assert!(!out.contains("k-77be1"), "{out}");
    assert!(out.contains("[telemetry]  # set in basidia.toml"), "{out}");
    assert!(out.contains("\"x-api-key\" = \"***\""), "{out}");
}

#[test]
fn another_file_by_flag_or_variable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("basidia.toml"), "max_workers = 1\n").unwrap();
    std::fs::write(tmp.path().join("other.toml"), "max_workers = 7\n").unwrap();
    let out = show(basidia(tmp.path()).args(["--config", "other.toml"]));
    assert!(
        out.contains("max_workers = 7  # set in other.toml"),
        "{out}"
    );
    let out = show(basidia(tmp.path()).env("BASIDIA_CONFIG", "other.toml"));
    assert!(out.contains("max_workers = 7"), "{out}");
}

fn fails(cmd: &mut std::process::Command) -> String {
    let out = output(cmd.arg("show-config"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    stderr
}

#[test]
fn bad_configuration_names_the_key_and_where_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let err = fails(basidia(dir).env("BASIDIA_MAX_WORKERS", "lots"));
    assert!(
        err.contains("key `max_workers` (set by BASIDIA_MAX_WORKERS)"),
        "{err}"
    );

    std::fs::write(dir.join("basidia.toml"), "rpc_timeout = \"soon\"\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(
        err.contains("key `rpc_timeout` (set in basidia.toml)"),
        "{err}"
    );
    assert!(err.contains("invalid duration"), "{err}");

    std::fs::write(dir.join("basidia.toml"), "max_worker = 3\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(
        err.contains("key `max_worker` (set in basidia.toml): unknown key"),
        "{err}"
    );

    std::fs::write(dir.join("basidia.toml"), "[services.a]\nmax_wrkers = 3\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(err.contains("services.a.max_wrkers"), "{err}");

    std::fs::write(dir.join("basidia.toml"), "broker = \"redis://x\"\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(err.contains("key `broker` (set in basidia.toml)"), "{err}");

    std::fs::write(dir.join("basidia.toml"), "max_workers = 0\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(err.contains("must be at least 1"), "{err}");

    std::fs::write(dir.join("basidia.toml"), "this is not toml\n").unwrap();
    let err = fails(&mut basidia(dir));
    assert!(err.contains("basidia.toml"), "{err}");

    std::fs::remove_file(dir.join("basidia.toml")).unwrap();
    let err = fails(basidia(dir).args(["--config", "missing.toml"]));
    assert!(err.contains("missing.toml does not exist"), "{err}");

    // Flags are checked by the command line itself.
    let out = output(basidia(dir).args(["--timeout", "soon", "show-config"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--timeout"), "{:?}", text(&out));
}
