//! Server restarts: the client comes back on its own, recovers what it
//! missed exactly once, flushes what it buffered, and says so when the
//! history cannot fill the gap.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard::broker::memory::{MemoryBus, MemoryConfig};
use switchboard_client::{ClientBuilder, CloseCode, Event};

fn client(url: String) -> ClientBuilder {
    ClientBuilder::new(url)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .going_away_jitter(Duration::from_millis(50))
}

#[tokio::test]
async fn a_restarted_server_gets_the_client_back_with_exactly_the_missed_messages() {
    let bus = MemoryBus::new();
    let server = Server::start(&bus).await;
    let addr = server.addr;
    let (client, mut events) = client(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("feed").await.expect("joined");
    for n in 1..=3 {
        server.publish("feed", json!({ "n": n })).await;
    }
    for n in 1..=3 {
        assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (n, n));
    }

    server.stop().await;
    let code = until(&mut events, |e| match e {
        Event::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, CloseCode::GOING_AWAY);
    // Publishes made while disconnected wait for the next connection.
    let buffered: Vec<_> = [6, 7]
        .into_iter()
        .map(|n| {
            let c = client.clone();
            tokio::spawn(async move { c.publish("feed", json!({ "n": n })).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.buffered() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never buffered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The new node shares the bus: 4 and 5 are published before the client
    // can reconnect, into the room's history.
    let node = node(&bus);
    for n in 4..=5 {
        assert_eq!(publish(&node, "feed", json!({ "n": n })).await, n);
    }
    let server = Server::serve(node, addr).await;
    let replayed: Vec<_> = [
        until(&mut events, |e| room_n(e, "feed")).await,
        until(&mut events, |e| room_n(e, "feed")).await,
    ]
    .to_vec();
    assert_eq!(replayed, [(4, 4), (5, 5)]);

    // The buffered publishes went out after the rejoin and were acked.
    let mut acked = Vec::new();
    for p in buffered {
        let ack = tokio::time::timeout(WAIT, p)
            .await
            .expect("acked in time")
            .expect("task")
            .expect("acked");
        acked.push(ack.offset.expect("offset"));
    }
    acked.sort();
    assert_eq!(acked, [6, 7]);
    server.publish("feed", json!({ "n": 8 })).await;
    let mut rest = Vec::new();
    while rest.len() < 3 {
        rest.push(until(&mut events, |e| room_n(e, "feed")).await);
    }
    // In offset order; the two buffered publishes raced each other into the
    // buffer, so either may have gone first.
    let offsets: Vec<_> = rest.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, [6, 7, 8]);
    let mut ns: Vec<_> = rest.iter().map(|(n, _)| *n).collect();
    assert_eq!(ns.pop(), Some(8));
    ns.sort();
    assert_eq!(ns, [6, 7]);
    // Nothing twice: no other room message is waiting.
    let extra = tokio::time::timeout(
        Duration::from_millis(200),
        until(&mut events, |e| room_n(e, "feed")),
    )
    .await;
    assert!(extra.is_err(), "a duplicate: {extra:?}");
    let recovery_failed = std::iter::from_fn(|| events_try(&mut events))
        .any(|e| matches!(e, Event::RecoveryFailed { .. }));
    assert!(!recovery_failed);
}

/// An event already buffered, without waiting.
fn events_try(events: &mut switchboard_client::Events) -> Option<Event> {
    futures_util::FutureExt::now_or_never(events.recv()).flatten()
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_is_reported_and_live_messages_go_on() {
    let bus = MemoryBus::with_config(MemoryConfig {
        history_count: 2,
        ..MemoryConfig::default()
    });
    let server = Server::start(&bus).await;
    let addr = server.addr;
    let (client, mut events) = client(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("feed").await.expect("joined");
    server.publish("feed", json!({"n": 1})).await;
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (1, 1));
    server.stop().await;

    // Five messages while the client is away; the history keeps two.
    let node = node(&bus);
    for n in 2..=6 {
        publish(&node, "feed", json!({ "n": n })).await;
    }
    let server = Server::serve(node, addr).await;
    let mut seen = Vec::new();
    until(&mut events, |e| match e {
        Event::RecoveryFailed { room } => Some(room.clone()),
        Event::Message(m) => {
            seen.push(m.offset);
            None
        }
        _ => None,
    })
    .await;
    assert!(
        seen.is_empty(),
        "nothing is replayed across a gap: {seen:?}"
    );
    server.publish("feed", json!({"n": 7})).await;
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (7, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_publishing_across_a_restart_loses_and_repeats_nothing() {
    const TOTAL: u64 = 400;
    let bus = MemoryBus::new();
    let server = Server::start(&bus).await;
    let addr = server.addr;
    let (client, mut events) = client(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("stream").await.expect("joined");
    let mut lifecycle = client.events();
    // Another node on the same bus publishes throughout; it never restarts.
    let publisher = node(&bus);
    let task = tokio::spawn(async move {
        for n in 1..=TOTAL {
            assert_eq!(publish(&publisher, "stream", json!({ "n": n })).await, n);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 50 {
        seen.push(until(&mut events, |e| room_n(e, "stream")).await);
    }
    server.stop().await;
    let server = Server::serve(node(&bus), addr).await;
    assert!(!task.is_finished(), "the restart happened mid-stream");
    while seen.len() < TOTAL as usize {
        seen.push(until(&mut events, |e| room_n(e, "stream")).await);
    }
    task.await.expect("publisher");
    let expected: Vec<_> = (1..=TOTAL).map(|n| (n, n)).collect();
    assert!(
        seen == expected,
        "first difference at {:?}",
        seen.iter().zip(&expected).position(|(a, b)| a != b)
    );
    let recovery_failed = std::iter::from_fn(|| events_try(&mut events))
        .any(|e| matches!(e, Event::RecoveryFailed { .. }));
    assert!(!recovery_failed);
    let reconnected = std::iter::from_fn(|| events_try(&mut lifecycle))
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(reconnected, 1);
    drop(server);
}

#[tokio::test]
async fn after_a_restart_that_lost_the_history_the_new_epoch_is_caught_up() {
    // The standalone server's case: the in-memory broker restarts with the
    // process, so the room restarts at offset 0 in a new epoch.
    let server = Server::start(&MemoryBus::new()).await;
    let addr = server.addr;
    let (client, mut events) = client(server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    client.join("feed").await.expect("joined");
    server.publish("feed", json!({"n": 1})).await;
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (1, 1));
    server.stop().await;

    let node = node(&MemoryBus::new());
    for n in [10, 11] {
        publish(&node, "feed", json!({ "n": n })).await;
    }
    let server = Server::serve(node, addr).await;
    let mut seen = Vec::new();
    until(&mut events, |e| match e {
        Event::RecoveryFailed { room } => Some(room.clone()),
        e => {
            seen.extend(room_n(e, "feed"));
            None
        }
    })
    .await;
    assert!(seen.is_empty(), "{seen:?}");
    // Everything published since the restart, then live messages.
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (10, 1));
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (11, 2));
    server.publish("feed", json!({"n": 12})).await;
    assert_eq!(until(&mut events, |e| room_n(e, "feed")).await, (12, 3));
}
