//! The processes a scenario runs against: `switchboard` nodes (the binary,
//! started with `--port 0` and found by the port their log names), one
//! `redis-server` of their own and a real nginx in front, all on loopback
//! and all stopped when the [`Cluster`] is dropped, also on a panic.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_testkit::RedisServer;
use switchboard_testkit::nginx::Nginx;

use crate::http;

/// The longest a node may take to start.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Log lines kept per node, for a failure's report.
const LOG_LINES: usize = 200;

/// One `switchboard` process; killed when dropped.
#[derive(Debug)]
pub struct Node {
    child: Child,
    /// The port it listens on (from its log).
    pub port: u16,
    /// Its node id (from `/health`): the prefix of its connection ids.
    pub id: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Node {
    /// Starts `binary` with `args` and waits for the log line that names
    /// its port, then reads its id from `/health`.
    pub async fn start(binary: &Path, args: &[String]) -> Result<Node, String> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let keep = |log: Arc<Mutex<VecDeque<String>>>, line: String| {
            let mut log = log.lock().expect("log lock");
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        };
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(digits.parse::<u16>().unwrap_or(0));
                }
                keep(out_log.clone(), line);
            }
        });
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep(err_log.clone(), line);
            }
        });
        let port = tokio::task::spawn_blocking(move || port_rx.recv_timeout(START_DEADLINE))
            .await
            .map_err(|e| e.to_string())?;
        let mut node = Node {
            child,
            port: 0,
            id: String::new(),
            log,
        };
        match port {
            Ok(port) if port != 0 => node.port = port,
            _ => {
                return Err(format!(
                    "switchboard {args:?} did not start:\n{}",
                    node.log_text()
                ));
            }
        }
        let health = node.health().await?;
        node.id = health["node"].as_str().unwrap_or_default().to_string();
        Ok(node)
    }

    /// The node's `/health` document.
    pub async fn health(&self) -> Result<serde_json::Value, String> {
        let (status, body) = http::get(self.port, "/health")
            .await
            .map_err(|e| format!("GET /health on {}: {e}", self.port))?;
        if status != 200 {
            return Err(format!("GET /health on {}: {status} {body}", self.port));
        }
        serde_json::from_str(&body).map_err(|e| format!("/health: {e}: {body}"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL: its clients get no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM: a graceful shutdown.
    pub fn sigterm(&self) {
        signal(self.child.id(), "-TERM");
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Its resident memory, in KiB (0 once it is gone).
    pub fn rss_kib(&self) -> u64 {
        proc_rss_kib(self.child.id())
    }

    /// The CPU time it used so far (user and system).
    pub fn cpu_time(&self) -> Duration {
        proc_cpu_time(self.child.id())
    }

    /// The last lines it logged.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` (`-TERM`, `-KILL`, ...) to a process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// `VmRSS` of a process, in KiB; 0 when it is gone.
pub fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a process; zero when it is gone.
pub fn proc_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The fields after the command name, which ends with the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // Linux reports in USER_HZ, 100 per second on every common build.
    Duration::from_millis(ticks * 10)
}

/// A fresh directory for one cluster's files.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-chaos-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the cluster's temp dir");
    dir
}

/// Redis, the nodes and nginx. Dropping it stops nginx, then the nodes,
/// then Redis, and removes the files.
#[derive(Debug)]
pub struct Cluster {
    /// nginx in front of every node.
    pub nginx: Option<Nginx>,
    /// The nodes, in start order; a slot is `None` once a scenario took
    /// its node away.
    pub nodes: Vec<Option<Node>>,
    /// The Redis every node uses.
    pub redis: RedisServer,
    dir: PathBuf,
}

impl Cluster {
    /// `n` nodes of `binary` on one new Redis, each with the multi-node
    /// flags and `extra` ones, behind nginx sized for `connections`
    /// client connections.
    pub async fn start(
        binary: &Path,
        n: usize,
        extra: &[&str],
        connections: usize,
    ) -> Result<Cluster, String> {
        let dir = temp_dir();
        let redis = RedisServer::start();
        let mut cluster = Cluster {
            nginx: None,
            nodes: Vec::new(),
            redis,
            dir,
        };
        for _ in 0..n {
            let mut args: Vec<String> = [
                "--port",
                "0",
                "--broker",
                &cluster.redis.url(),
                "--upgrade-rate",
                "0",
                "--trusted-proxies",
                "127.0.0.1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            cluster.nodes.push(Some(Node::start(binary, &args).await?));
        }
        let ports: Vec<u16> = cluster.nodes().map(|n| n.port).collect();
        // Two sockets per proxied connection; nginx splits them over its
        // workers unevenly, so each worker gets room for all of them.
        cluster.nginx = Some(Nginx::start_sized(
            &cluster.dir,
            &ports,
            2 * connections + 256,
        ));
        Ok(cluster)
    }

    /// The nodes still running.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Node `i`; panics when it was taken away.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// The nginx port.
    pub fn nginx_port(&self) -> u16 {
        self.nginx.as_ref().expect("nginx").port
    }

    /// `ws://<nginx>/ws/chat`.
    pub fn chat_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/chat", self.nginx_port())
    }

    /// The logs of every node and nginx, for a failure's report.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in self.nodes() {
            out.push_str(&format!(
                "--- node {} (port {}):\n{}\n",
                node.id,
                node.port,
                node.log_text()
            ));
        }
        if let Some(nginx) = &self.nginx {
            out.push_str(&format!("--- nginx:\n{}\n", nginx.logs()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nginx.take();
        self.nodes.clear();
        self.redis.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
