//! Test support shared by Switchboard's crates: the broker conformance
//! suite, a raw-protocol WebSocket client, and real services started on free
//! loopback ports and stopped when their guard is dropped, also when a test
//! panics.
//!
//! A dev-dependency only: it depends on `switchboard-core` (for the seam
//! traits), never on `switchboard`, whose integration tests use it; no
//! production code does.
//!
//! - [`conformance`]: the checks every broker and presence backend must
//!   pass, and the [`Recorder`](conformance::Recorder) that collects a
//!   node's deliveries.
//! - [`ws`]: the WebSocket client every suite talks to a server with, frame
//!   by frame as `docs/protocol.md` describes, with deadlines instead of
//!   sleeps, and [`eventually`](ws::eventually) for state without a frame.
//! - [`tls`]: a certificate authority of the test's own, server
//!   certificates it signs, and `wss://` clients that trust it.
//! - [`free_port`]: a port nobody listens on right now.
//! - [`RedisServer`]: a `redis-server` of the test's own, without persistence.
//! - [`nginx`]: a real nginx in front of several nodes, round-robin.

#![forbid(unsafe_code)]

pub mod conformance;
pub mod nginx;
pub mod tls;
pub mod ws;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a service may take to start.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A port nobody listens on right now. Services that cannot be told to pick
/// one themselves and report it (Redis, nginx) get one picked here.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `redis-server` on 127.0.0.1 without persistence; killed when
/// dropped. Never the shared instance on 6379.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    /// Panics, saying how to install it, when `redis-server` is missing.
    pub fn start() -> Self {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        server.restart();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: its clients get no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it on PATH; install it \
                     with `apt-get install redis-server` (scripts/test does)"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers_ping() {
            assert!(
                start.elapsed() < START_DEADLINE,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([sig, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}
