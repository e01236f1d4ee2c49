//! `welcome` is the first frame of every `/ws/chat` and
//! `/ws/notifications` connection (docs/protocol.md), whatever is
//! delivered while the connection is being opened: while its user stream
//! is read, or while it is recorded as online. The broker here holds one
//! of those steps until the test has sent a broadcast and a user message
//! into the window, over real sockets. A connection that cannot be opened
//! gets its 1013 close and nothing before it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::{Value, json};
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::broker::memory::MemoryBroker;
use switchboard::broker::{
    Broker, BrokerError, BrokerHealth, DeliveryHandler, Position, Presence, PresenceEntry,
    Publication, Receipt, Recovery, Topic,
};
use switchboard::{Config, Node};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

const SECRET: &[u8] = b"welcome-first-test-secret-32byte";

fn token(sub: &str) -> String {
    common::hs256_token(SECRET, sub)
}

/// Holds the next call that reaches it until the test lets it go.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    reached: Notify,
    open: Arc<Mutex<()>>,
}

impl Gate {
    /// Arms the gate for its next call, shut: returns the guard that keeps
    /// it shut.
    async fn arm(&self) -> OwnedMutexGuard<()> {
        let shut = self.open.clone().lock_owned().await;
        self.armed.store(true, Ordering::SeqCst);
        shut
    }

    /// Called by the broker: waits here if the gate is armed.
    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            drop(self.open.lock().await);
        }
    }
}

/// The gates of a [`Gated`] broker, kept by the test.
#[derive(Default)]
struct Gates {
    /// User stream reads (`position`, `recover`).
    reads: Gate,
    /// Presence records of users' connections (`#online:<user>`).
    online: Gate,
    /// Refuse to subscribe the node to broadcasts.
    refuse_broadcasts: AtomicBool,
}

/// The in-memory broker, with its gates.
struct Gated {
    inner: MemoryBroker,
    gates: Arc<Gates>,
}

#[async_trait::async_trait]
impl Broker for Gated {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        self.inner.attach(handler)
    }
    async fn publish(&self, p: Publication) -> Result<Receipt, BrokerError> {
        self.inner.publish(p).await
    }
    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        if *topic == Topic::Broadcast && self.gates.refuse_broadcasts.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("connection refused".into()));
        }
        self.inner.subscribe(topic).await
    }
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.inner.unsubscribe(topic).await
    }
    async fn position(&self, stream: &str) -> Result<Position, BrokerError> {
        self.gates.reads.pass().await;
        self.inner.position(stream).await
    }
    async fn recover(&self, stream: &str, since: &Position) -> Result<Recovery, BrokerError> {
        self.gates.reads.pass().await;
        self.inner.recover(stream, since).await
    }
    fn health(&self) -> BrokerHealth {
        self.inner.health()
    }
}

#[async_trait::async_trait]
impl Presence for Gated {
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError> {
        if room.starts_with('#') {
            self.gates.online.pass().await;
        }
        self.inner.add(room, conn, user).await
    }
    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError> {
        self.inner.remove(room, conn).await
    }
    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        self.inner.list(room).await
    }
}

/// A server with JWT auth and online status on a [`Gated`] broker; its
/// gates.
async fn server() -> (TestServer, Arc<Gates>) {
    let gates = Arc::new(Gates::default());
    let gated = Gated {
        inner: MemoryBroker::new(),
        gates: gates.clone(),
    };
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    let config = Config::builder().online_status(true).build().unwrap();
    let server = TestServer::start_with(
        Node::builder()
            .config(config)
            .default_endpoints()
            .authenticator(jwt)
            .broker(gated),
    )
    .await;
    (server, gates)
}

/// Sends a broadcast and a message to `user` through the HTTP API.
async fn deliver_to(server: &TestServer, user: &str, n: u64) {
    let body = json!({"data": {"n": n}}).to_string();
    for path in [
        "/api/broadcast".to_string(),
        format!("/api/users/{user}/messages"),
    ] {
        let (status, reply) = server.post(&path, &body).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
}

/// The `data.n` of the next `count` messages, in order.
async fn messages(c: &mut Client, count: usize) -> Vec<(bool, u64)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let m: Value = c.next_json().await;
        assert_eq!(m["type"], "message", "{m}");
        out.push((m["broadcast"] == true, m["data"]["n"].as_u64().unwrap()));
    }
    out
}

#[tokio::test]
async fn nothing_delivered_while_the_user_stream_is_read_comes_before_welcome() {
    let (server, gated) = server().await;
    // Another connection of the user keeps the node subscribed to its
    // messages and to broadcasts throughout.
    let mut other = connect(&format!("{}?token={}", server.ws("/ws/chat"), token("ana"))).await;
    for path in ["/ws/chat", "/ws/notifications"] {
        let shut = gated.reads.arm().await;
        let url = format!("{}?token={}&user_stream=new", server.ws(path), token("ana"));
        let mut c = connect_raw(&url).await;
        gated.reads.reached.notified().await;
        // The connection is subscribed; its stream is being read.
        deliver_to(&server, "ana", 1).await;
        drop(shut);
        let welcome = c.read_welcome().await.clone();
        assert!(welcome["user_stream"]["epoch"].is_string(), "{welcome}");
        // The user message sent during the read is in the stream the
        // welcome describes: not replayed, and not delivered after it.
        deliver_to(&server, "ana", 2).await;
        let got = messages(&mut c, 2).await;
        assert!(got.contains(&(false, 2)), "{path}: {got:?}");
        assert!(got.contains(&(true, 2)), "{path}: {got:?}");
        c.expect_nothing_but_barrier().await;
        assert_eq!(messages(&mut other, 4).await.len(), 4);
    }
}

#[tokio::test]
async fn nothing_delivered_while_the_connection_is_recorded_online_comes_before_welcome() {
    let (server, gated) = server().await;
    let mut other = connect(&format!("{}?token={}", server.ws("/ws/chat"), token("bo"))).await;
    for path in ["/ws/chat", "/ws/notifications"] {
        let shut = gated.online.arm().await;
        let url = format!("{}?token={}", server.ws(path), token("bo"));
        let mut c = connect_raw(&url).await;
        gated.online.reached.notified().await;
        // Subscribed beside the online record: both reach the connection,
        // after its welcome.
        deliver_to(&server, "bo", 1).await;
        drop(shut);
        c.read_welcome().await;
        let got = messages(&mut c, 2).await;
        assert!(got.contains(&(false, 1)), "{path}: {got:?}");
        assert!(got.contains(&(true, 1)), "{path}: {got:?}");
        c.expect_nothing_but_barrier().await;
        assert_eq!(messages(&mut other, 2).await.len(), 2);
    }
}

#[tokio::test]
async fn a_connection_that_cannot_subscribe_gets_its_close_and_nothing_before_it() {
    let (server, gates) = server().await;
    gates.refuse_broadcasts.store(true, Ordering::SeqCst);
    for stream in ["", "&user_stream=new"] {
        let url = format!("{}?token={}{stream}", server.ws("/ws/chat"), token("cy"));
        let mut c = connect_raw(&url).await;
        assert_eq!(
            c.expect_close().await,
            (
                1013,
                "cannot subscribe broadcasts: broker unavailable: connection refused".to_string()
            ),
            "{stream}"
        );
    }
    gates.refuse_broadcasts.store(false, Ordering::SeqCst);
    let mut c = connect(&format!("{}?token={}", server.ws("/ws/chat"), token("cy"))).await;
    deliver_to(&server, "cy", 1).await;
    assert_eq!(messages(&mut c, 2).await.len(), 2);
}
