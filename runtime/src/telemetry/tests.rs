use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    move |name| map.get(name).map(|v| v.to_string())
}

#[test]
fn off_unless_asked_for() {
    let c = TelemetryConfig::default();
    assert_eq!(resolve(&c, with_env(&[])).unwrap(), None);
    let on = TelemetryConfig {
        enabled: Some(true),
        ..TelemetryConfig::default()
    };
    let e = resolve(&on, with_env(&[])).unwrap().unwrap();
    assert_eq!(e.traces_url, "http://127.0.0.1:4318/v1/traces");
    assert_eq!((e.sampling, e.parent_based), (Sampling::Always, true));
    assert_eq!(e.timeout, Duration::from_secs(10));
    let sdk_off = [("OTEL_SDK_DISABLED", "true")];
    assert_eq!(resolve(&on, with_env(&sdk_off)).unwrap(), None);
    let off = TelemetryConfig {
        enabled: Some(false),
        ..TelemetryConfig::default()
    };
    let endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
    assert_eq!(resolve(&off, with_env(&endpoint)).unwrap(), None);
    let e = resolve(&c, with_env(&endpoint)).unwrap().unwrap();
    assert_eq!(e.traces_url, "http://collector:4318/v1/traces");
}

#[test]
fn the_standard_variables_win_over_the_file() {
    let c = TelemetryConfig {
        enabled: Some(true),
        endpoint: Some("http://file:4318/".into()),
        service_name: Some("from_file".into()),
        sample_ratio: Some(0.5),
        headers: [("x-api-key".to_string(), "file".to_string())].into(),
        timeout: Duration::from_secs(3),
        metrics: true,
        metrics_interval: Duration::from_secs(15),
    };
    let e = resolve(&c, with_env(&[])).unwrap().unwrap();
    assert_eq!(e.traces_url, "http://file:4318/v1/traces");
    assert_eq!(e.sampling, Sampling::Ratio(0.5));
    assert_eq!(e.service_name.as_deref(), Some("from_file"));
    assert_eq!(
        e.metrics_url.as_deref(),
        Some("http://file:4318/v1/metrics")
    );
    assert_eq!(e.metrics_interval, Duration::from_secs(15));
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://signal:9999/custom",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=env%20key, other=1"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces=t"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-metrics=m"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_SERVICE_NAME", "from_env"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
    ];
    let e = resolve(&c, with_env(&env)).unwrap().unwrap();
    assert_eq!(
        e.traces_url, "http://signal:9999/custom",
        "the signal's URL as given"
    );
    assert_eq!(e.headers["x-api-key"], "env key");
    assert_eq!(e.headers["other"], "1");
    assert_eq!(e.metrics_headers["x-api-key"], "env key");
    assert_eq!(
        e.headers.get("x-metrics"),
        None,
        "a signal's headers go to it alone"
    );
    assert_eq!(e.metrics_headers.get("x-traces"), None);
    assert_eq!(e.metrics_headers["x-metrics"], "m");
    let shown = format!("{e:?} {c:?}");
    assert!(
        !shown.contains("env key") && !shown.contains("\"file\""),
        "{shown}"
    );
    assert_eq!(e.timeout, Duration::from_millis(2500));
    assert_eq!(e.service_name.as_deref(), Some("from_env"));
    assert_eq!((e.sampling, e.parent_based), (Sampling::Ratio(0.01), false));
    assert_eq!(
        e.metrics_url.as_deref(),
        Some("http://base:4318/v1/metrics")
    );
    let metrics_env = [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:1/in"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ];
    let e = resolve(&c, with_env(&metrics_env)).unwrap().unwrap();
    assert_eq!(e.metrics_url.as_deref(), Some("http://m:1/in"));
    assert_eq!(e.metrics_interval, Duration::from_millis(500));
    let none = [("OTEL_METRICS_EXPORTER", "none")];
    assert_eq!(
        resolve(&c, with_env(&none)).unwrap().unwrap().metrics_url,
        None
    );
    let off = TelemetryConfig {
        metrics: false,
        ..c.clone()
    };
    assert_eq!(
        resolve(&off, with_env(&[])).unwrap().unwrap().metrics_url,
        None
    );
    let empty = [("OTEL_SERVICE_NAME", " ")];
    let e = resolve(&c, with_env(&empty)).unwrap().unwrap();
    assert_eq!(
        e.service_name.as_deref(),
        Some("from_file"),
        "empty is unset"
    );
}

#[test]
fn what_cannot_be_used_is_refused_with_its_name() {
    let on = TelemetryConfig {
        enabled: Some(true),
        ..TelemetryConfig::default()
    };
    let refused = |vars: &[(&str, &str)], config: &TelemetryConfig| {
        resolve(config, with_env(vars)).unwrap_err().to_string()
    };
    let e = refused(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], &on);
    assert!(
        e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("http/protobuf"),
        "{e}"
    );
    let e = refused(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")], &on);
    assert!(e.contains("plain HTTP"), "{e}");
    let e = refused(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")], &on);
    assert!(e.contains("not an http:// URL"), "{e}");
    let e = refused(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://u:pw-9@c:4318")],
        &on,
    );
    assert!(!e.contains("pw-9"), "{e}");
    let e = refused(&[("OTEL_TRACES_SAMPLER", "sometimes")], &on);
    assert!(
        e.contains("OTEL_TRACES_SAMPLER") && e.contains("sometimes"),
        "{e}"
    );
    let e = refused(
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ],
        &on,
    );
    assert!(e.contains("not between 0 and 1"), "{e}");
    let e = refused(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")], &on);
    assert!(e.contains("key=value"), "{e}");
    let e = refused(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")], &on);
    assert!(e.contains("milliseconds"), "{e}");
    let ratio = TelemetryConfig {
        sample_ratio: Some(-0.1),
        ..on.clone()
    };
    assert!(refused(&[], &ratio).contains("telemetry.sample_ratio"));
    let e = refused(&[("OTEL_METRIC_EXPORT_INTERVAL", "5")], &on);
    assert!(e.contains("metrics_interval"), "{e}");
}

#[test]
fn the_section_reads_from_toml() {
    let c: TelemetryConfig = toml::from_str(
        "enabled = true\nendpoint = \"http://c:4318\"\nsample_ratio = 0.25\ntimeout = \"3s\"\n\
         headers = { \"x-api-key\" = \"k\" }\n",
    )
    .unwrap();
    assert_eq!(c.enabled, Some(true));
    assert_eq!(c.timeout, Duration::from_secs(3));
    assert_eq!(c.headers["x-api-key"], "k");
    assert!(toml::from_str::<TelemetryConfig>("endpiont = \"x\"").is_err());
}
