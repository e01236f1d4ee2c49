//! Requests and replies against a real server: join, publish and ack,
//! refusals, presence, closing, and the publish buffer.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard::broker::memory::MemoryBus;
use switchboard_client::{
    ClientBuilder, ConnectionState, ErrorCode, Event, PresenceChange, PublishError, PublishOptions,
    RequestError, StopReason, Target,
};

#[tokio::test]
async fn join_publish_and_ack_round_trip() {
    let server = Server::start(&MemoryBus::new()).await;
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    assert!(matches!(
        next(&mut events).await,
        Event::Connecting { attempt: 0 }
    ));
    let user = match next(&mut events).await {
        Event::Connected { user, .. } => user,
        other => panic!("{other:?}"),
    };
    assert!(user.starts_with("guest-"), "{user}");
    assert_eq!(
        client.state(),
        ConnectionState::Connected { user: user.clone() }
    );

    let joined = client.join("lobby").await.expect("joined");
    assert_eq!((joined.room.as_str(), joined.offset), ("lobby", 0));
    assert_eq!(joined.epoch.len(), 16);
    let mut lobby = client.messages("lobby");
    let ack = client
        .publish("lobby", json!({"text": "hi"}))
        .await
        .expect("acked");
    assert_eq!(ack.offset, Some(1));
    let m = until(&mut events, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.target, Target::Room("lobby".into()));
    assert_eq!(
        (m.offset, m.from.as_deref()),
        (Some(1), Some(user.as_str()))
    );
    assert_eq!(m.data.get(), r#"{"text":"hi"}"#);

    // From a backend: no `from`; the per-room stream sees both.
    server.publish("lobby", json!({"n": 2})).await;
    let first = lobby.recv().await.expect("open").expect("no lag");
    let second = lobby.recv().await.expect("open").expect("no lag");
    assert_eq!((first.offset, second.offset), (Some(1), Some(2)));
    assert_eq!(second.from, None);
    assert_eq!(second.json::<Value>().expect("json"), json!({"n": 2}));

    // Joining again answers at once with where the room stands.
    let again = client.join("lobby").await.expect("joined");
    assert_eq!((again.offset, again.epoch), (2, joined.epoch));
    client.leave("lobby").await.expect("left");
    client.join("probe").await.expect("joined");
    server.publish("lobby", json!({"n": 3})).await;
    server.publish("probe", json!({"n": 1})).await;
    // Server order is publish order: by the time the probe arrives, a lobby
    // message would have.
    let mut lobby_after_leave = Vec::new();
    until(&mut events, |e| match e {
        Event::Message(m) if m.room() == Some("probe") => Some(()),
        Event::Message(m) if m.room() == Some("lobby") && m.offset > Some(2) => {
            lobby_after_leave.push(m.offset);
            None
        }
        _ => None,
    })
    .await;
    assert!(lobby_after_leave.is_empty(), "{lobby_after_leave:?}");
}

#[tokio::test]
async fn refused_requests_carry_the_server_error_code() {
    let server = Server::start(&MemoryBus::new()).await;
    let (client, _events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let err = client
        .publish("no spaces allowed", json!(1))
        .await
        .expect_err("refused");
    match &err {
        PublishError::Rejected(e) => {
            assert_eq!(e.kind(), Some(ErrorCode::InvalidRoom));
            assert!(e.message.contains("' '"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), Some("invalid_room"));
    let err = client.join("a*").await.expect_err("refused");
    assert_eq!(err.code(), Some("invalid_room"));
    // The connection stays usable.
    client.publish("ok", json!(1)).await.expect("acked");

    let (notes, _events) = ClientBuilder::new(server.url("/ws/notifications"))
        .connect()
        .await
        .expect("connected");
    let err = notes.publish("lobby", json!(1)).await.expect_err("refused");
    assert_eq!(err.code(), Some("read_only"));
}

#[tokio::test]
async fn presence_lists_members_and_reports_joins() {
    let server = Server::start(&MemoryBus::new()).await;
    let (a, mut a_events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let (b, mut b_events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let b_user = until(&mut b_events, |e| match e {
        Event::Connected { user, .. } => Some(user.clone()),
        _ => None,
    })
    .await;
    a.join_with_presence("team").await.expect("joined");
    b.join("team").await.expect("joined");
    let ev = until(&mut a_events, |e| match e {
        Event::Presence(p) if p.user == b_user => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (ev.room.as_str(), &ev.change),
        ("team", &PresenceChange::Join)
    );
    let members = a.presence("team").await.expect("presence");
    let mut users: Vec<_> = members.iter().map(|m| m.user.as_str()).collect();
    users.sort();
    assert_eq!(users.len(), 2);
    assert!(users.contains(&b_user.as_str()));
    b.leave("team").await.expect("left");
    let ev = until(&mut a_events, |e| match e {
        Event::Presence(p) if p.change == PresenceChange::Leave => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ev.user, b_user);
}

#[tokio::test]
async fn close_is_graceful_and_final() {
    let server = Server::start(&MemoryBus::new()).await;
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("r").await.expect("joined");
    let other = client.clone();
    client.close().await;
    let reason = until(&mut events, |e| match e {
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, StopReason::ClientClosed);
    assert!(
        events.recv().await.is_none(),
        "the stream ends after Stopped"
    );
    assert!(matches!(
        other.publish("r", json!(1)).await,
        Err(PublishError::Stopped(StopReason::ClientClosed))
    ));
    assert_eq!(
        other.join("r").await,
        Err(RequestError::Stopped(StopReason::ClientClosed))
    );
    assert!(matches!(other.state(), ConnectionState::Stopped { .. }));
    assert!(other.events().recv().await.is_none());
    other.close().await;
    // Dropping every handle closes the client just the same.
    let (dropped, mut dropped_events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    drop(dropped);
    let reason = until(&mut dropped_events, |e| match e {
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, StopReason::ClientClosed);
    // The server saw the connections go.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.node.connection_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server still holds it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn publishes_beyond_the_buffer_fail_while_disconnected() {
    let addr = refusing_addr().await;
    let (client, _events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        .publish_buffer(2)
        .build()
        .expect("built");
    let waiting: Vec<_> = (0..2)
        .map(|n| {
            let c = client.clone();
            tokio::spawn(async move { c.publish("r", json!(n)).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.buffered() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never buffered");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    match client.publish("r", json!({"n": 3})).await {
        Err(PublishError::BufferFull { capacity, data }) => {
            assert_eq!((capacity, data), (2, json!({"n": 3})));
        }
        other => panic!("{other:?}"),
    }
    client.close().await;
    for w in waiting {
        assert!(matches!(
            w.await.expect("task"),
            Err(PublishError::Stopped(StopReason::ClientClosed))
        ));
    }
    assert_eq!(client.buffered(), 0);
}

#[tokio::test]
async fn a_publish_with_a_key_is_delivered_once_and_its_repeat_is_a_duplicate() {
    let server = Server::start(&MemoryBus::new()).await;
    let (client, _events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("orders").await.expect("joined");
    let mut orders = client.messages("orders");
    let first = client
        .publish_with_key("orders", json!({"id": 42}), "order-42")
        .await
        .expect("acked");
    assert_eq!((first.offset, first.duplicate), (Some(1), false));
    let again = client
        .publish_with_key("orders", json!({"id": 42}), "order-42")
        .await
        .expect("acked");
    assert_eq!((again.offset, again.duplicate), (Some(1), true));
    let marker = client.publish("orders", json!("marker")).await.unwrap();
    assert_eq!((marker.offset, marker.duplicate), (Some(2), false));
    // Delivered once: the marker comes right after the first.
    let got = orders.recv().await.expect("open").expect("no lag");
    assert_eq!(got.data.get(), r#"{"id":42}"#);
    let got = orders.recv().await.expect("open").expect("no lag");
    assert_eq!(got.data.get(), r#""marker""#);
    let refused = client.publish_with_key("orders", json!(1), "a b").await;
    match refused {
        Err(PublishError::Rejected(e)) => assert_eq!(e.kind(), Some(ErrorCode::InvalidField)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn except_self_leaves_the_publishing_connection_out() {
    let server = Server::start(&MemoryBus::new()).await;
    let connect = || async {
        let (client, _events) = ClientBuilder::new(server.url("/ws/chat"))
            .connect()
            .await
            .expect("connected");
        client.join("tabs").await.expect("joined");
        client
    };
    let (a, b) = (connect().await, connect().await);
    let (mut at_a, mut at_b) = (a.messages("tabs"), b.messages("tabs"));
    let ack = a
        .publish_with(
            "tabs",
            json!({"typing": true}),
            PublishOptions::new().except_self(true),
        )
        .await
        .expect("acked");
    assert_eq!(ack.offset, Some(1));
    let marker = a.publish("tabs", json!("marker")).await.expect("acked");
    for (want, offset) in [(r#"{"typing":true}"#, 1), (r#""marker""#, 2)] {
        let got = at_b.recv().await.expect("open").expect("no lag");
        assert_eq!((got.data.get(), got.offset), (want, Some(offset)));
    }
    // The publisher's first message is the marker: the other never came.
    let got = at_a.recv().await.expect("open").expect("no lag");
    assert_eq!((got.data.get(), got.offset), (r#""marker""#, marker.offset));
}
