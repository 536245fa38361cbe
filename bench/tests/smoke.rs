//! The benchmark, once, quickly, on every broker: it must run to the end and write its results
//! (the figures are not checked; speed is judged from release runs, never from tests). Needs
//! `BASIDIA_TEST_AMQP_URL` and `BASIDIA_TEST_NATS_URL`; outside CI it skips without them.

use std::process::Command;

#[test]
fn the_benchmark_runs_on_every_broker() {
    let ci = std::env::var_os("CI").is_some();
    for var in ["BASIDIA_TEST_AMQP_URL", "BASIDIA_TEST_NATS_URL"] {
        if std::env::var_os(var).is_none() {
            assert!(
                !ci,
                "{var} is not set: CI runs the benchmark smoke test on every broker"
            );
            eprintln!("skipping the benchmark smoke run: {var} is not set");
            return;
        }
    }
    let results =
        std::env::temp_dir().join(format!("basidia-bench-smoke-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_basidia-bench"))
        .args(["--quick", "--broker", "all"])
        .env("BASIDIA_BENCH_RESULTS", &results)
        .output()
        .expect("the benchmark starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&results).expect("the results are written");
    let _ = std::fs::remove_file(&results);
    assert!(written.contains("\"measurements\""), "{written}");
    for row in [
        "| memory | rpc | 64 |",
        "| amqp | rpc | 64 |",
        "| nats | rpc | 64 |",
        "| http | route | 64 |",
    ] {
        assert!(stdout.contains(row), "no {row} row:\n{stdout}");
    }
}
