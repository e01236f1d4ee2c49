//! Heartbeats over real sockets: a peer that stops answering is found and
//! evicted from every index.

mod common;

use std::time::Duration;

use common::*;
use switchboard::Config;
use switchboard::broker::Topic;
use switchboard_testkit::ws::Message;

fn fast_heartbeat() -> Config {
    Config::builder()
        .heartbeat_interval(Duration::from_millis(150))
        .heartbeat_timeout(Duration::from_millis(150))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_evicted_from_rooms_and_user_index() {
    let server = TestServer::start(fast_heartbeat()).await;
    let mut silent = connect(&server.ws("/ws/chat")).await;
    silent.join("r").await;
    let user = silent.user().to_string();
    let node = server.node.clone();
    assert_eq!(node.local_members(&Topic::Room("r".into())), 1);
    assert_eq!(node.local_members(&Topic::User(user.as_str().into())), 1);
    // `silent` is not polled from here on, so its pings go unanswered.
    eventually("heartbeat timeout", || {
        node.stats().snapshot().heartbeat_timeouts == 1
    })
    .await;
    eventually("evicted", || {
        node.local_members(&Topic::Room("r".into())) == 0
            && node.local_members(&Topic::User(user.as_str().into())) == 0
            && node.connection_count() == 0
    })
    .await;
    // A user message to the evicted user now reaches nobody and breaks nothing.
    let (status, _) = server
        .post(&format!("/api/users/{user}/messages"), r#"{"data":1}"#)
        .await;
    assert_eq!(status, 200);
    drop(silent);
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays() {
    let server = TestServer::start(fast_heartbeat()).await;
    let mut ws = connect_raw(&server.ws("/ws/echo")).await;
    let mut pings = 0;
    // Reading answers every ping (the client library sends the pongs).
    while pings < 5 {
        match ws.next_message().await {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(server.node.connection_count(), 1);
    assert_eq!(server.node.stats().snapshot().heartbeat_timeouts, 0);
}
