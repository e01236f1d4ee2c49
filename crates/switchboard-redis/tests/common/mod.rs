//! A `redis-server` of the test's own on a free loopback port, killed on
//! drop, and helpers to wait on conditions with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::broker::Broker;
use switchboard::broker::conformance::Recorder;
use switchboard_redis::{RedisBroker, RedisConfig};

/// The longest a test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        // Redis cannot listen on port 0: take a free port from the kernel
        // and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { child: None, port };
        server.restart();
        server
    }

    /// The URL brokers connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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
                    "cannot start redis-server ({e}): the Redis tests need it on PATH; \
                     install it with `apt-get install redis-server`"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers_ping() {
            assert!(start.elapsed() < DEADLINE, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// A plain connection to inspect the server.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("url");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    /// Runs one command.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.conn().await)
            .await
            .expect("query")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connected broker with a recorder attached.
pub async fn node(server: &RedisServer, config: RedisConfig) -> (RedisBroker, Arc<Recorder>) {
    let broker = RedisBroker::connect(&server.url(), config)
        .await
        .expect("connect");
    let recorder = Recorder::new();
    broker.attach(recorder.clone());
    (broker, recorder)
}

/// Waits until `check` returns `Some`, polling; panics after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "waited {DEADLINE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
