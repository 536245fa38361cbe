//! `basidia status`: the running service instances the broker can see, as a table or JSON.

use basidia::{InstanceInfo, SharedBroker};

/// The instances `broker` can see, or why it cannot list them.
pub async fn instances(broker: &SharedBroker) -> Result<Vec<InstanceInfo>, String> {
    if broker.kind() == "memory" {
        return Err(
            "the memory broker is private to each process: no other process's services can be \
             seen from here (use NATS, or `basidia run --shell` in the process itself)"
                .into(),
        );
    }
    match broker.instances().await {
        Ok(Some(all)) => Ok(all),
        Ok(None) => Err(format!(
            "the {} broker cannot list running instances",
            broker.kind()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A table of `instances`, one line each, their uptime counted to `now_ms`.
pub fn table(instances: &[InstanceInfo], now_ms: i64) -> String {
    if instances.is_empty() {
        return "no running service instances".into();
    }
    let rows: Vec<[String; 7]> = instances
        .iter()
        .map(|i| {
            [
                i.service.clone(),
                i.id.chars().take(8).collect(),
                i.host.clone(),
                i.pid.to_string(),
                i.version.clone(),
                uptime(now_ms.saturating_sub(i.started_ms)),
                i.entrypoints.join(","),
            ]
        })
        .collect();
    let head = [
        "SERVICE",
        "INSTANCE",
        "HOST",
        "PID",
        "VERSION",
        "UPTIME",
        "ENTRYPOINTS",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(head.to_vec())];
    for r in &rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    basidia_shell::printable(&out.join("\n"))
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn uptime(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_read_as_a_table() {
        let i = InstanceInfo {
            service: "greeting_service".into(),
            id: "0123456789abcdef".into(),
            host: "box".into(),
            pid: 42,
            version: "0.1.0".into(),
            started_ms: 1_000,
            entrypoints: vec!["hello".into(), "goodbye".into()],
        };
        let t = table(&[i], 1_000 + 3_725_000);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{t}");
        assert!(lines[1].contains("greeting_service  01234567"), "{t}");
        assert!(
            lines[1].contains("1h 2m") && lines[1].ends_with("hello,goodbye"),
            "{t}"
        );
        assert_eq!(table(&[], 0), "no running service instances");
        assert_eq!(uptime(59_999), "59s");
        assert_eq!(uptime(90_061_000), "1d 1h");
    }
}
