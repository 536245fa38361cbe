//! The registry in Prometheus' text exposition format (version 0.0.4), as `/metrics` serves it.

use std::fmt::Write as _;

use super::series::{HistogramValues, SeriesKind, SeriesWriter};
use super::Registry;

impl Registry {
    /// Every series, in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = Text(String::new());
        self.write_series(&mut text);
        text.0
    }
}

/// The text being written.
struct Text(String);

impl Text {
    fn series(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>) {
        let out = &mut self.0;
        out.push_str(name);
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            out.push('{');
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape(v));
            }
            out.push('}');
        }
    }
}

impl SeriesWriter for Text {
    fn family(&mut self, name: &str, kind: SeriesKind, help: &str) {
        let kind = match kind {
            SeriesKind::Counter => "counter",
            SeriesKind::Gauge => "gauge",
            SeriesKind::Histogram => "histogram",
        };
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels, None);
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], values: &HistogramValues) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in values.bounds.iter().zip(&values.counts) {
            cumulative += n;
            let le = bound.to_string();
            self.series(&bucket, labels, Some(("le", &le)));
            let _ = writeln!(self.0, " {cumulative}");
        }
        self.series(&bucket, labels, Some(("le", "+Inf")));
        let _ = writeln!(self.0, " {}", values.count);
        self.series(&format!("{name}_sum"), labels, None);
        let _ = writeln!(self.0, " {}", values.sum);
        self.series(&format!("{name}_count"), labels, None);
        let _ = writeln!(self.0, " {}", values.count);
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
