//! A real cluster for the multi-node tests: a `redis-server`, several
//! `switchboard` processes on it, and optionally a real nginx in front, all
//! on free loopback ports and all killed when the [`Cluster`] is dropped,
//! also when the test panics. Plus a chat client on the testkit's WebSocket
//! client that keeps frames awaited out of order, and HTTP helpers.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::ws;

/// The longest a test waits for any one thing.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) use switchboard_testkit::ws::eventually;
// Not every test binary that includes this module uses every item.
#[allow(unused_imports)]
pub(crate) use switchboard_testkit::{RedisServer as Redis, free_port};

/// A fresh directory for one cluster's files (nginx config and logs).
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-multinode-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the cluster's temp dir");
    dir
}

/// Sends `sig` (`-TERM`, `-KILL`, …) to a process.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for a child to exit.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------- redis

// ---------------------------------------------------------------- nodes

/// One `switchboard` process; killed on drop.
pub(crate) struct Node {
    child: Child,
    /// The port it listens on (from its log).
    pub port: u16,
    /// Its node id (from `/health`), the prefix of its connection ids.
    pub id: String,
    /// Everything it logged so far, stdout and stderr.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts the binary with `args` and waits for the log line that names
    /// its port, then asks `/health` for its id.
    pub(crate) async fn start(args: &[String]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
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
        let mut child = cmd.spawn().expect("spawn switchboard");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        // Keep draining both pipes, so the child never blocks on a full one
        // and its log is there to print when a test fails.
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(digits.parse::<u16>().expect("port in the log line"));
                }
                out_log.lock().unwrap().push(line);
            }
        });
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                err_log.lock().unwrap().push(line);
            }
        });
        let port = match port_rx.recv_timeout(DEADLINE) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "switchboard {args:?} did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let mut node = Node {
            child,
            port,
            id: String::new(),
            log,
        };
        let health = node.health().await;
        node.id = health["node"].as_str().expect("node id").to_string();
        node
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:<port>`.
    pub(crate) fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The node's `/health` document.
    pub(crate) async fn health(&self) -> Value {
        let (status, body) = get(&format!("{}/health", self.http())).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `/health` reports `status`.
    pub(crate) async fn wait_status(&self, status: &str, timeout: Duration) -> Value {
        eventually(
            &format!("node {} to report {status:?}", self.id),
            timeout,
            || async {
                let health = self.health().await;
                (health["status"] == status).then_some(health)
            },
        )
        .await
    }

    /// Sends SIGTERM: a graceful shutdown.
    pub(crate) fn sigterm(&self) {
        signal(self.child.id(), "-TERM");
    }

    /// Waits for the process to exit (blocking: let clients take their
    /// close frames first, or the node waits for their replies).
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        assert!(
            wait_exit(&mut self.child, Duration::from_secs(20)),
            "node {} did not exit after SIGTERM",
            self.id
        );
        self.child.wait().expect("exit status")
    }

    /// The log as one string.
    pub(crate) fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- nginx

/// The nginx of `docs/deploy.md`, from the testkit: the guide's copy of its
/// configuration is checked against [`NGINX_CONF`].
#[allow(unused_imports)]
pub(crate) use switchboard_testkit::nginx::{NGINX_CONF, Nginx};

// ---------------------------------------------------------------- cluster

/// Redis, the nodes, and nginx when asked for. Fields drop in order: nginx,
/// then the nodes, then Redis.
pub(crate) struct Cluster {
    pub nginx: Option<Nginx>,
    pub nodes: Vec<Node>,
    pub redis: Redis,
    pub dir: PathBuf,
}

impl Cluster {
    /// `n` nodes on one Redis, each started with the standard multi-node
    /// flags and `extra` ones, behind nginx if `with_nginx`.
    pub(crate) async fn start(n: usize, extra: &[&str], with_nginx: bool) -> Cluster {
        let dir = temp_dir();
        let redis = Redis::start();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let mut args: Vec<String> = [
                "--port",
                "0",
                "--broker",
                &redis.url(),
                "--upgrade-rate",
                "0",
                "--trusted-proxies",
                "127.0.0.1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            nodes.push(Node::start(&args).await);
        }
        let ids: std::collections::HashSet<_> = nodes.iter().map(|n| n.id.clone()).collect();
        assert_eq!(ids.len(), n, "node ids must differ");
        let nginx = with_nginx.then(|| {
            let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
            Nginx::start(&dir, &ports)
        });
        Cluster {
            nginx,
            nodes,
            redis,
            dir,
        }
    }

    pub(crate) fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("a cluster with nginx")
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "--- log of node {} (port {}):\n{}",
                    node.id,
                    node.port,
                    node.log_tail(60)
                );
            }
            if let Some(nginx) = &self.nginx {
                eprintln!("--- nginx:\n{}", nginx.logs());
            }
        }
        // The processes go first (field drops run after this), then the files.
        self.nginx.take();
        self.nodes.clear();
        self.redis.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- HTTP

/// A GET; the status and the body as JSON.
pub(crate) async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A POST with a JSON body; the status and the body as JSON.
pub(crate) async fn post(url: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Publishes `data` to `room` through the HTTP API at `base`; panics unless
/// it is accepted. Returns the offset.
pub(crate) async fn publish_api(base: &str, room: &str, data: Value) -> u64 {
    let (status, body) = post(
        &format!("{base}/api/rooms/{room}/messages"),
        &json!({ "data": data }),
    )
    .await;
    assert_eq!(status, 200, "publish to {room} through {base}: {body}");
    body["offset"].as_u64().expect("offset in the reply")
}

// ---------------------------------------------------------------- WebSocket

/// A chat client over [`ws::Client`]. Frames that arrive while it waits
/// for another kind are kept, in order, for later; none is dropped.
pub(crate) struct Client {
    ws: ws::Client,
    buffered: VecDeque<Value>,
    /// The user id from `welcome`.
    pub user: String,
    /// The connection id from `welcome`.
    pub conn: String,
    /// The node it landed on: the prefix of `conn`.
    pub node: String,
}

impl Client {
    /// Connects to `url` (`ws://…/ws/chat`) and reads `welcome`.
    pub(crate) async fn connect(url: &str) -> Client {
        Client::connect_with(url, None).await
    }

    /// Connects with `Authorization: Bearer <token>`.
    pub(crate) async fn connect_with(url: &str, token: Option<&str>) -> Client {
        let req = match token {
            Some(token) => ws::request(url, &[("authorization", &format!("Bearer {token}"))]),
            None => ws::request(url, &[]),
        };
        let ws = ws::Client::connect(req).await;
        let user = ws.user().to_string();
        let conn = ws.conn().to_string();
        let node = conn.split('-').next().expect("node prefix").to_string();
        Client {
            ws,
            buffered: VecDeque::new(),
            user,
            conn,
            node,
        }
    }

    /// The `welcome` frame.
    pub(crate) fn welcome(&self) -> &Value {
        self.ws.welcome()
    }

    /// Sends one JSON frame.
    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws.send(frame).await;
    }

    /// The first frame, buffered or new, that `matches`; the others stay
    /// buffered in order.
    pub(crate) async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.buffered.iter().position(&matches) {
            return self.buffered.remove(i).expect("index in range");
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(
                Instant::now() < deadline,
                "conn {}: no {what} (buffered: {:?})",
                self.conn,
                self.buffered
            );
            let frame = self
                .ws
                .expect_json(&format!("{what} (buffered: {:?})", self.buffered))
                .await;
            if matches(&frame) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// The next `message` frame (room, user or broadcast).
    pub(crate) async fn message(&mut self) -> Value {
        self.expect("message", |f| f["type"] == "message").await
    }

    /// The reply (any frame with this `id` that is not a `message`).
    pub(crate) async fn reply(&mut self, id: u64) -> Value {
        self.expect(&format!("reply to id {id}"), |f| {
            f["type"] != "message" && f["id"] == id
        })
        .await
    }

    /// Joins `room` and returns the `joined` reply.
    pub(crate) async fn join(&mut self, room: &str, id: u64) -> Value {
        self.send(json!({"type": "join", "room": room, "id": id}))
            .await;
        let reply = self.reply(id).await;
        assert_eq!(reply["type"], "joined", "{reply}");
        reply
    }

    /// Publishes and returns the reply (`ack` or `error`).
    pub(crate) async fn publish(&mut self, room: &str, data: Value, id: u64) -> Value {
        self.send(json!({"type": "publish", "room": room, "data": data, "id": id}))
            .await;
        self.reply(id).await
    }

    /// Frames received but not yet taken.
    pub(crate) fn buffered(&self) -> &VecDeque<Value> {
        &self.buffered
    }

    /// Forgets the frames received but not consumed yet.
    pub(crate) fn clear_buffered(&mut self) {
        self.buffered.clear();
    }

    /// Waits for the server's close frame, which must be the next frame;
    /// returns its code.
    pub(crate) async fn closed(&mut self) -> u16 {
        self.ws.expect_close().await.0
    }

    /// Closes the connection and waits for the server's close frame.
    pub(crate) async fn close(self) {
        self.ws.close().await;
    }
}
