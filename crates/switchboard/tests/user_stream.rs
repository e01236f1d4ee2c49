//! User streams: offsets, history and recovery of the messages sent to a
//! user, asked for at the upgrade with `user_stream`, over real sockets.
//! The clients here follow docs/protocol.md to the letter and deduplicate
//! nothing: a message delivered twice fails the test.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use switchboard::Node;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::broker::memory::{MemoryBroker, MemoryConfig};
use switchboard::broker::{
    Broker, BrokerError, BrokerHealth, DeliveryHandler, Position, Presence, PresenceEntry,
    Publication, Receipt, Recovery, Topic, user_stream,
};

const SECRET: &[u8] = b"user-stream-test-secret-32-bytes";

fn token(sub: &str) -> String {
    common::hs256_token(SECRET, sub)
}

async fn server_with(broker: Arc<MemoryBroker>) -> TestServer {
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    TestServer::start_with(
        Node::builder()
            .default_endpoints()
            .authenticator(jwt)
            .broker(broker),
    )
    .await
}

async fn server() -> TestServer {
    server_with(Arc::new(MemoryBroker::new())).await
}

/// Connects as `user`, with `stream` as the `user_stream` parameter when
/// given; reads the `welcome`.
async fn open(server: &TestServer, path: &str, user: &str, stream: Option<&str>) -> Client {
    let mut url = format!("{}?token={}", server.ws(path), token(user));
    if let Some(stream) = stream {
        url.push_str("&user_stream=");
        url.push_str(stream);
    }
    let c = connect(&url).await;
    assert_eq!(c.user(), user);
    c
}

async fn send(server: &TestServer, user: &str, n: u64) {
    let (status, body) = server
        .post(
            &format!("/api/users/{user}/messages"),
            &json!({"data": {"n": n}}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Reads `count` user messages; returns their `(offset, n)`.
async fn messages(c: &mut Client, count: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let m = c.next_json().await;
        assert_eq!(m["type"], "message", "{m}");
        out.push((
            m["offset"].as_u64().expect("offset"),
            m["data"]["n"].as_u64().expect("n"),
        ));
    }
    out
}

fn stream(c: &Client) -> &Value {
    &c.welcome()["user_stream"]
}

fn position(c: &Client) -> String {
    let s = stream(c);
    format!("{}:{}", s["offset"], s["epoch"].as_str().unwrap())
}

#[tokio::test]
async fn a_message_sent_while_away_is_delivered_after_reconnect_exactly_once_in_order() {
    let server = server().await;
    let mut c = open(&server, "/ws/chat", "ana", Some("new")).await;
    assert_eq!(stream(&c)["offset"], 0);
    let epoch = stream(&c)["epoch"].as_str().unwrap().to_string();
    assert_eq!(epoch.len(), 16);
    assert!(stream(&c).get("recovered").is_none());
    send(&server, "ana", 1).await;
    send(&server, "ana", 2).await;
    assert_eq!(messages(&mut c, 2).await, vec![(1, 1), (2, 2)]);
    drop(c);
    for n in 3..=5 {
        send(&server, "ana", n).await;
    }
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("2:{epoch}"))).await;
    assert_eq!(
        stream(&c),
        &json!({"offset": 5, "epoch": epoch, "recovered": true, "replay_after": 2})
    );
    assert_eq!(messages(&mut c, 3).await, vec![(3, 3), (4, 4), (5, 5)]);
    send(&server, "ana", 6).await;
    assert_eq!(messages(&mut c, 1).await, vec![(6, 6)]);
    c.expect_nothing_but_barrier().await;
    // Nothing missed: an empty replay, still recovered.
    drop(c);
    let c = open(
        &server,
        "/ws/notifications",
        "ana",
        Some(&format!("6:{epoch}")),
    )
    .await;
    assert_eq!(
        stream(&c),
        &json!({"offset": 6, "epoch": epoch, "recovered": true, "replay_after": 6})
    );
}

#[tokio::test]
async fn a_gap_beyond_history_says_continuity_broke_and_replays_nothing() {
    let broker = Arc::new(MemoryBroker::with_config(MemoryConfig {
        history_count: 3,
        ..MemoryConfig::default()
    }));
    let server = server_with(broker).await;
    let c = open(&server, "/ws/chat", "ana", Some("new")).await;
    let epoch = stream(&c)["epoch"].as_str().unwrap().to_string();
    drop(c);
    for n in 1..=10 {
        send(&server, "ana", n).await;
    }
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("1:{epoch}"))).await;
    assert_eq!(
        stream(&c),
        &json!({"offset": 10, "epoch": epoch, "recovered": false, "replay_after": 10})
    );
    c.expect_nothing_but_barrier().await;
    // Within what the history holds, it recovers.
    drop(c);
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("8:{epoch}"))).await;
    assert_eq!(stream(&c)["recovered"], true);
    assert_eq!(messages(&mut c, 2).await, vec![(9, 9), (10, 10)]);
    c.expect_nothing_but_barrier().await;
    // A position ahead of the stream is a gap too.
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("99:{epoch}"))).await;
    assert_eq!(
        (
            stream(&c)["recovered"].as_bool(),
            stream(&c)["offset"].as_u64()
        ),
        (Some(false), Some(10))
    );
    c.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn an_epoch_change_replays_the_new_epoch_and_says_continuity_broke() {
    let broker = Arc::new(MemoryBroker::new());
    let server = server_with(broker.clone()).await;
    let mut c = open(&server, "/ws/chat", "ana", Some("new")).await;
    let old = stream(&c)["epoch"].as_str().unwrap().to_string();
    send(&server, "ana", 1).await;
    assert_eq!(messages(&mut c, 1).await, vec![(1, 1)]);
    drop(c);
    // The broker loses the stream (a restart, keys lost): offsets restart.
    broker.bus().restart_room(&user_stream("ana"));
    send(&server, "ana", 2).await;
    send(&server, "ana", 3).await;
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("1:{old}"))).await;
    let s = stream(&c).clone();
    assert_ne!(s["epoch"], old.as_str());
    assert_eq!(
        (
            s["offset"].as_u64(),
            s["recovered"].as_bool(),
            s["replay_after"].as_u64()
        ),
        (Some(2), Some(false), Some(0))
    );
    assert_eq!(messages(&mut c, 2).await, vec![(1, 2), (2, 3)]);
    c.expect_nothing_but_barrier().await;
    // An epoch the server never gave is answered the same way.
    let mut d = open(&server, "/ws/chat", "ana", Some("5:0123456789abcdef")).await;
    assert_eq!(stream(&d)["recovered"], false);
    assert_eq!(messages(&mut d, 2).await, vec![(1, 2), (2, 3)]);
    d.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn each_tab_recovers_from_its_own_position() {
    let server = server().await;
    let mut a = open(&server, "/ws/chat", "ana", Some("new")).await;
    let mut b = open(&server, "/ws/notifications", "ana", Some("new")).await;
    let epoch = stream(&a)["epoch"].as_str().unwrap().to_string();
    assert_eq!(stream(&b)["epoch"], epoch.as_str());
    send(&server, "ana", 1).await;
    assert_eq!(messages(&mut a, 1).await, vec![(1, 1)]);
    assert_eq!(messages(&mut b, 1).await, vec![(1, 1)]);
    // Tab a goes away; b stays and sees 2.
    drop(a);
    send(&server, "ana", 2).await;
    assert_eq!(messages(&mut b, 1).await, vec![(2, 2)]);
    drop(b);
    send(&server, "ana", 3).await;
    // Each comes back with its own position, a third tab opens live.
    let mut live = open(&server, "/ws/chat", "ana", None).await;
    let mut a = open(&server, "/ws/chat", "ana", Some(&format!("1:{epoch}"))).await;
    let mut b = open(
        &server,
        "/ws/notifications",
        "ana",
        Some(&format!("2:{epoch}")),
    )
    .await;
    assert_eq!(messages(&mut a, 2).await, vec![(2, 2), (3, 3)]);
    assert_eq!(messages(&mut b, 1).await, vec![(3, 3)]);
    send(&server, "ana", 4).await;
    for c in [&mut a, &mut b, &mut live] {
        assert_eq!(messages(c, 1).await, vec![(4, 4)]);
    }
    a.expect_nothing_but_barrier().await;
    live.expect_nothing_but_barrier().await;
    // Another user's stream is another sequence.
    let mut bob = open(&server, "/ws/chat", "bob", Some("new")).await;
    assert_eq!(stream(&bob)["offset"], 0);
    send(&server, "bob", 9).await;
    assert_eq!(messages(&mut bob, 1).await, vec![(1, 9)]);
}

#[tokio::test]
async fn a_client_that_does_not_ask_sees_todays_frames() {
    let server = server().await;
    let url = format!("{}?token={}", server.ws("/ws/chat"), token("ana"));
    let mut c = connect_raw(&url).await;
    let ws::Message::Text(welcome) = c.next_message().await else {
        panic!("welcome expected");
    };
    let conn = serde_json::from_str::<Value>(&welcome).unwrap()["conn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        welcome.as_str(),
        format!(
            r#"{{"type":"welcome","user":"ana","conn":"{conn}","protocol":"switchboard.v1","heartbeat_ms":30000}}"#
        )
    );
    send(&server, "ana", 1).await;
    // The one additive field: `offset`, after the target, as rooms have it.
    match c.next_message().await {
        ws::Message::Text(text) => assert_eq!(
            text.as_str(),
            r#"{"type":"message","user":"ana","offset":1,"data":{"n":1}}"#
        ),
        other => panic!("{other:?}"),
    }
    c.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn guests_have_no_user_stream() {
    let server = TestServer::start_default().await;
    let c = connect(&format!("{}?user_stream=new", server.ws("/ws/chat"))).await;
    assert!(c.user().starts_with("guest-"));
    assert!(c.welcome().get("user_stream").is_none(), "{}", c.welcome());
}

#[tokio::test]
async fn a_malformed_user_stream_is_refused_at_the_upgrade() {
    let server = server().await;
    for (value, shown) in [
        ("12", "\"12\""),
        ("x:abc", "\"x:abc\""),
        ("1:", "\"1:\""),
        ("old", "\"old\""),
    ] {
        let url = format!(
            "{}?token={}&user_stream={value}",
            server.ws("/ws/chat"),
            token("ana")
        );
        let (status, body) = upgrade_status(&url).await;
        assert_eq!(status, 400, "{value}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "bad_request", "message": format!(
                "user_stream must be \"new\" or \"<offset>:<epoch>\", not {shown}"
            )}})
        );
    }
    let c = open(&server, "/ws/chat", "ana", Some("new")).await;
    let url = format!(
        "{}?token={}&user_stream={}&user_stream=new",
        server.ws("/ws/chat"),
        token("ana"),
        position(&c)
    );
    assert_eq!(
        upgrade_status(&url).await,
        (
            400,
            r#"{"error":{"code":"bad_request","message":"user_stream given more than once"}}"#
                .to_string()
        )
    );
}

#[tokio::test]
async fn signing_a_user_out_takes_no_place_in_the_stream() {
    let server = server().await;
    let mut c = open(&server, "/ws/chat", "ana", Some("new")).await;
    let epoch = stream(&c)["epoch"].as_str().unwrap().to_string();
    send(&server, "ana", 1).await;
    assert_eq!(messages(&mut c, 1).await, vec![(1, 1)]);
    server
        .node
        .disconnect_user("ana", "signed out")
        .await
        .expect("disconnect");
    assert_eq!(c.expect_close().await, (4401, "signed out".to_string()));
    send(&server, "ana", 2).await;
    let mut c = open(&server, "/ws/chat", "ana", Some(&format!("1:{epoch}"))).await;
    assert_eq!(
        stream(&c),
        &json!({"offset": 2, "epoch": epoch, "recovered": true, "replay_after": 1})
    );
    assert_eq!(messages(&mut c, 1).await, vec![(2, 2)]);
    c.expect_nothing_but_barrier().await;
}

/// A broker whose stream reads (`position`, `recover`) fail, as when Redis
/// drops between the subscription and the read.
struct ReadsFail(MemoryBroker);

#[async_trait::async_trait]
impl Broker for ReadsFail {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        self.0.attach(handler)
    }
    async fn publish(&self, p: Publication) -> Result<Receipt, BrokerError> {
        self.0.publish(p).await
    }
    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.0.subscribe(topic).await
    }
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.0.unsubscribe(topic).await
    }
    async fn position(&self, _: &str) -> Result<Position, BrokerError> {
        Err(BrokerError::Unavailable("connection refused".into()))
    }
    async fn recover(&self, _: &str, _: &Position) -> Result<Recovery, BrokerError> {
        Err(BrokerError::Unavailable("connection refused".into()))
    }
    fn health(&self) -> BrokerHealth {
        self.0.health()
    }
}

#[async_trait::async_trait]
impl Presence for ReadsFail {
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError> {
        self.0.add(room, conn, user).await
    }
    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError> {
        self.0.remove(room, conn).await
    }
    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        self.0.list(room).await
    }
}

#[tokio::test]
async fn a_stream_that_cannot_be_read_closes_with_1013_after_the_handshake() {
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    let server = TestServer::start_with(
        Node::builder()
            .default_endpoints()
            .authenticator(jwt)
            .broker(ReadsFail(MemoryBroker::new())),
    )
    .await;
    for stream in ["new", "3:0123456789abcdef"] {
        let url = format!(
            "{}?token={}&user_stream={stream}",
            server.ws("/ws/chat"),
            token("ana")
        );
        let mut c = connect_raw(&url).await;
        assert_eq!(
            c.expect_close().await,
            (
                1013,
                "cannot read user stream: broker unavailable: connection refused".to_string()
            ),
            "{stream}"
        );
    }
    // A client that does not ask reads nothing and is welcomed.
    let mut c = open(&server, "/ws/chat", "ana", None).await;
    send(&server, "ana", 1).await;
    assert_eq!(messages(&mut c, 1).await, vec![(1, 1)]);
}
