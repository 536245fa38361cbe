//! CPU time spent per call, by this process and by the broker's server process, read from
//! `/proc` (Linux; elsewhere the figures are absent). On a small machine shared by the client,
//! the service and the broker, throughput follows the CPU each call costs, and this figure
//! moves far less between runs than calls per second do.

use std::fmt;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds of this process and of the server, as read at one moment or summed over
/// measured slices.
#[derive(Default, Clone, Copy)]
pub struct Usage {
    own: Option<f64>,
    server: Option<f64>,
}

impl Usage {
    /// Reads the CPU time so far of this process and of the server process `server` (a pid
    /// from [`server_pid`]).
    pub fn now(server: Option<&str>) -> Self {
        Usage {
            own: cpu_seconds("self"),
            server: server.and_then(cpu_seconds),
        }
    }

    /// Adds the CPU time spent since `before`.
    pub fn add_since(&mut self, before: &Usage, server: Option<&str>) {
        let after = Usage::now(server);
        let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        self.own = sum(self.own, delta(after.own, before.own));
        self.server = sum(self.server, delta(after.server, before.server));
    }

    /// The usage divided over `calls`, for printing.
    pub fn per_call(&self, calls: f64) -> PerCall {
        PerCall {
            usage: *self,
            calls,
        }
    }
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Microseconds of CPU per call, printed as `own / server`.
pub struct PerCall {
    usage: Usage,
    calls: f64,
}

impl fmt::Display for PerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |f: &mut fmt::Formatter<'_>, v: Option<f64>| match v {
            Some(s) if self.calls > 0.0 => write!(f, "{:.1}", s * 1e6 / self.calls),
            _ => f.write_str("?"),
        };
        show(f, self.usage.own)?;
        f.write_str(" / ")?;
        show(f, self.usage.server)
    }
}

/// User plus system CPU seconds of `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// The pid of the first process whose command name is `name`.
pub fn server_pid(name: &str) -> Option<String> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim_end() == name).then_some(pid)
        })
}
