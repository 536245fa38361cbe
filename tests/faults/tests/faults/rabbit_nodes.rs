//! RabbitMQ nodes of a test's own: `rabbitmq-server` processes on free loopback ports, each
//! with a data directory, configuration and Erlang cookie of its own, so that a test can
//! cluster, configure and kill them without touching the shared broker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::free_port;

/// Where the Debian package puts the server's own scripts (the ones in `/usr/sbin` switch to
/// the `rabbitmq` user and lose the environment that places a node).
const BIN: &str = "/usr/lib/rabbitmq/bin";

/// Whether private nodes can be started here. Outside CI a missing server skips the test with
/// a message; in CI it fails it.
pub fn available() -> bool {
    if Path::new(BIN).join("rabbitmq-server").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs {BIN}/rabbitmq-server for private RabbitMQ nodes"
    );
    eprintln!("skipped: no {BIN}/rabbitmq-server for private RabbitMQ nodes");
    false
}

/// One private node. Dropping it kills it and removes its files.
pub struct RabbitNode {
    /// The Erlang node name, `<name>@localhost`.
    pub name: String,
    /// The AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    home: PathBuf,
    shell: Option<Child>,
}

impl RabbitNode {
    /// Starts a node whose `rabbitmq.conf` has `conf` added and whose `advanced.config` is
    /// `advanced`; `home` holds the Erlang cookie its cluster shares.
    fn spawn(name: String, home: &Path, conf: &str, advanced: &str) -> RabbitNode {
        let dir = std::env::temp_dir().join(format!("basidia-rabbit-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n{conf}\n"),
        )
        .unwrap();
        std::fs::write(dir.join("advanced.config"), advanced).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let mut node = RabbitNode {
            name: format!("{name}@localhost"),
            port,
            dist_port: free_port(),
            dir,
            home: home.to_path_buf(),
            shell: None,
        };
        node.launch();
        node
    }

    /// Starts the node's server process, on the ports and data it had.
    fn launch(&mut self) {
        let dir = &self.dir;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("out.log"))
            .unwrap();
        let shell = Command::new(Path::new(BIN).join("rabbitmq-server"))
            .env("HOME", &self.home)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            // Not the machine's rabbitmq-env.conf: it names the shared node.
            .env("RABBITMQ_CONF_ENV_FILE", "/dev/null")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("rabbitmq-server starts");
        self.shell = Some(shell);
    }

    /// Starts a killed node again, with its name, ports and data, and waits until it serves.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
        self.wait_ready();
    }

    /// The node's AMQP URL as guest.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl` against this node; whether it succeeded, and its output.
    pub fn try_ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(Path::new(BIN).join("rabbitmqctl"))
            .env("HOME", &self.home)
            .env("RABBITMQ_CONF_ENV_FILE", "/dev/null")
            .args(["-q", "-n", &self.name])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs `rabbitmqctl` against this node, failing the test if it fails; its output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let (ok, text) = self.try_ctl(args);
        assert!(ok, "rabbitmqctl -n {} {args:?}: {text}", self.name);
        text
    }

    /// Waits until the node has booted and takes connections.
    fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if self.try_ctl(&["await_startup", "--timeout", "5"]).0 {
                return;
            }
            assert!(
                Instant::now() < end,
                "node {} did not start: {}",
                self.name,
                std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the node as a crashed machine goes: no goodbye to its peers or clients.
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(self.dir.join("pid"));
        }
        if let Some(mut shell) = self.shell.take() {
            let _ = shell.kill();
            let _ = shell.wait();
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Nodes sharing one Erlang cookie; dropping them kills them all.
pub struct RabbitNodes {
    /// The nodes, the first the one the others joined.
    pub nodes: Vec<RabbitNode>,
    home: PathBuf,
}

impl RabbitNodes {
    /// Starts `count` nodes with `conf` and `advanced` (see [`RabbitNode`]); with more than one,
    /// the others join the first as one cluster.
    pub fn start(count: usize, conf: &str, advanced: &str) -> RabbitNodes {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let tag = &tag[..8];
        let home = std::env::temp_dir().join(format!("basidia-rabbit-home-{tag}"));
        std::fs::create_dir_all(&home).unwrap();
        let cookie = home.join(".erlang.cookie");
        std::fs::write(&cookie, format!("BASIDIA{tag}COOKIE").to_uppercase()).unwrap();
        set_owner_only(&cookie);
        let nodes: Vec<RabbitNode> = (0..count)
            .map(|i| RabbitNode::spawn(format!("basidia{tag}n{i}"), &home, conf, advanced))
            .collect();
        for node in &nodes {
            node.wait_ready();
        }
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &nodes[0].name]);
            node.ctl(&["start_app"]);
            node.wait_ready();
        }
        RabbitNodes { nodes, home }
    }
}

impl Drop for RabbitNodes {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Erlang refuses a cookie file others can read.
fn set_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
}
