//! The client's user stream: after a reconnect it gets, by itself, the
//! messages sent to its user while it was away, exactly once, and says so
//! when the server's history could not fill the gap.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::{Value, json};
use switchboard::Node;
use switchboard::auth::{Authenticator, Identity, Rejection, bearer_token};
use switchboard::broker::memory::{MemoryBroker, MemoryBus, MemoryConfig};
use switchboard_client::{ClientBuilder, CloseCode, Event, Target};

/// The bearer token is the user id.
struct TokenIsUser;

#[async_trait]
impl Authenticator for TokenIsUser {
    async fn authenticate(&self, req: &http::request::Parts) -> Result<Identity, Rejection> {
        req.headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(Identity::user)
            .ok_or_else(|| Rejection::unauthorized("missing token"))
    }
}

fn node(bus: &Arc<MemoryBus>) -> Node {
    Node::builder()
        .default_endpoints()
        .authenticator(TokenIsUser)
        .broker(MemoryBroker::linked(bus))
        .build()
        .expect("valid node")
}

fn client(url: String) -> ClientBuilder {
    ClientBuilder::new(url)
        .token("ana")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .going_away_jitter(Duration::from_millis(50))
}

async fn send(node: &Node, n: u64) {
    let raw = serde_json::value::to_raw_value(&json!({ "n": n })).unwrap();
    node.send_to_user("ana", &raw).await.expect("sent");
}

/// The `n` of a user message, with its offset.
fn user_n(e: &Event) -> Option<(u64, u64)> {
    match e {
        Event::Message(m) if matches!(&m.target, Target::User(u) if u == "ana") => {
            let v: Value = m.json().ok()?;
            Some((v["n"].as_u64()?, m.offset?))
        }
        _ => None,
    }
}

/// Events already queued, without waiting.
fn pending(events: &mut switchboard_client::Events) -> Vec<Event> {
    std::iter::from_fn(|| futures_util::FutureExt::now_or_never(events.recv()).flatten()).collect()
}

async fn disconnected(events: &mut switchboard_client::Events) {
    let code = until(events, |e| match e {
        Event::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, CloseCode::GOING_AWAY);
}

#[tokio::test]
async fn user_messages_sent_while_away_arrive_after_the_reconnect_once_each() {
    let bus = MemoryBus::new();
    let server = Server::serve(node(&bus), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let (_client, mut events) = client(server.url("/ws/notifications"))
        .connect()
        .await
        .expect("connected");
    send(&server.node, 1).await;
    assert_eq!(until(&mut events, user_n).await, (1, 1));
    server.stop().await;
    disconnected(&mut events).await;
    // Sent through another node on the bus while the client is away.
    let other = node(&bus);
    for n in 2..=4 {
        send(&other, n).await;
    }
    let server = Server::serve(node(&bus), addr).await;
    for n in 2..=4 {
        assert_eq!(until(&mut events, user_n).await, (n, n));
    }
    send(&server.node, 5).await;
    assert_eq!(until(&mut events, user_n).await, (5, 5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest = pending(&mut events);
    assert!(
        !rest.iter().any(|e| user_n(e).is_some()),
        "a duplicate: {rest:?}"
    );
    assert!(!rest.iter().any(|e| matches!(e, Event::UserRecoveryFailed)));
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_is_reported() {
    let bus = MemoryBus::with_config(MemoryConfig {
        history_count: 2,
        ..MemoryConfig::default()
    });
    let server = Server::serve(node(&bus), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let (_client, mut events) = client(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    send(&server.node, 1).await;
    assert_eq!(until(&mut events, user_n).await, (1, 1));
    server.stop().await;
    disconnected(&mut events).await;
    let other = node(&bus);
    for n in 2..=6 {
        send(&other, n).await;
    }
    let server = Server::serve(node(&bus), addr).await;
    until(&mut events, |e| {
        matches!(e, Event::UserRecoveryFailed).then_some(())
    })
    .await;
    // Live messages go on from where the stream stands.
    send(&server.node, 7).await;
    assert_eq!(until(&mut events, user_n).await, (7, 7));
}
