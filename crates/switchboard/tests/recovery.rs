//! Recovery on reconnect and presence, over real sockets.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard::Node;
use switchboard::broker::memory::{MemoryBroker, MemoryConfig};

async fn publish(server: &TestServer, room: &str, n: u64) {
    let (status, body) = server
        .post(
            &format!("/api/rooms/{room}/messages"),
            &json!({"data": {"n": n}}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Reads until `joined`; returns the messages' `n` values before it and the
/// `joined` frame.
async fn until_joined(c: &mut Client) -> (Vec<u64>, Value) {
    let mut seen = Vec::new();
    loop {
        let v = c.next_json().await;
        match v["type"].as_str() {
            Some("message") => seen.push(v["data"]["n"].as_u64().unwrap()),
            Some("joined") => return (seen, v),
            _ => panic!("unexpected {v}"),
        }
    }
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_messages() {
    let server = TestServer::start_default().await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    let joined = c.join("feed").await;
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    for n in 1..=3 {
        publish(&server, "feed", n).await;
    }
    let mut last = 0;
    for n in 1..=3 {
        let m = c.next_json().await;
        assert_eq!(m["data"]["n"], n);
        last = m["offset"].as_u64().unwrap();
    }
    drop(c);
    for n in 4..=6 {
        publish(&server, "feed", n).await;
    }
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.send(json!({"type":"join","room":"feed","id":1,"since":{"offset":last,"epoch":epoch}}))
        .await;
    let (replayed, joined) = until_joined(&mut c).await;
    assert_eq!(replayed, vec![4, 5, 6]);
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["offset"], 6);
    assert_eq!(joined["id"], 1);
    publish(&server, "feed", 7).await;
    let m = c.next_json().await;
    assert_eq!(
        (m["data"]["n"].as_u64(), m["offset"].as_u64()),
        (Some(7), Some(7))
    );
    c.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_is_reported_not_papered_over() {
    let broker = MemoryBroker::with_config(MemoryConfig {
        history_count: 3,
        ..MemoryConfig::default()
    });
    let server = TestServer::start_with(Node::builder().default_endpoints().broker(broker)).await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    let epoch = c.join("feed").await["epoch"].as_str().unwrap().to_string();
    for n in 1..=10 {
        publish(&server, "feed", n).await;
    }
    // Offsets 2..=7 were trimmed: the gap after 1 cannot be filled.
    c.send(json!({"type":"leave","room":"feed"})).await;
    loop {
        if c.next_json().await["type"] == "left" {
            break;
        }
    }
    c.send(json!({"type":"join","room":"feed","since":{"offset":1,"epoch":epoch}}))
        .await;
    let (replayed, joined) = until_joined(&mut c).await;
    assert!(
        replayed.is_empty(),
        "nothing is replayed across a gap: {replayed:?}"
    );
    assert_eq!(
        (joined["recovered"].as_bool(), joined["offset"].as_u64()),
        (Some(false), Some(10))
    );
    // Within the history, recovery works.
    c.send(json!({"type":"leave","room":"feed"})).await;
    loop {
        if c.next_json().await["type"] == "left" {
            break;
        }
    }
    c.send(json!({"type":"join","room":"feed","since":{"offset":8,"epoch":epoch}}))
        .await;
    let (replayed, joined) = until_joined(&mut c).await;
    assert_eq!(
        (replayed, joined["recovered"].as_bool()),
        (vec![9, 10], Some(true))
    );
    // Another epoch means offsets restarted: a gap.
    let mut d = connect(&server.ws("/ws/chat")).await;
    d.send(json!({"type":"join","room":"feed","since":{"offset":10,"epoch":"an-old-epoch"}}))
        .await;
    let (replayed, joined) = until_joined(&mut d).await;
    assert!(replayed.is_empty());
    assert_eq!(joined["recovered"], false);
}

#[tokio::test]
async fn presence_lists_members_and_watchers_see_joins_and_leaves() {
    let server = TestServer::start_default().await;
    let mut watcher = connect(&server.ws("/ws/chat")).await;
    watcher
        .send(json!({"type":"join","room":"team","presence":true,"id":1}))
        .await;
    assert_eq!(watcher.next_json().await["type"], "joined");
    let mut a = connect(&server.ws("/ws/chat")).await;
    a.join("team").await;
    let ev = watcher.next_json().await;
    assert_eq!(ev["type"], "presence_event");
    assert_eq!(
        (ev["room"].as_str(), ev["data"]["event"].as_str()),
        (Some("team"), Some("join"))
    );
    assert_eq!(ev["data"]["user"], a.user());
    a.send(json!({"type":"presence","room":"team","id":5}))
        .await;
    let p = a.next_json().await;
    assert_eq!(
        (p["type"].as_str(), p["id"].as_u64()),
        (Some("presence"), Some(5))
    );
    let mut users: Vec<&str> = p["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    users.sort();
    let mut expected = vec![a.user(), watcher.user()];
    expected.sort();
    assert_eq!(users, expected);
    assert!(
        p["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["connections"] == 1)
    );
    let user = a.user().to_string();
    drop(a);
    let ev = watcher.next_json().await;
    assert_eq!(
        (ev["data"]["event"].as_str(), ev["data"]["user"].as_str()),
        (Some("leave"), Some(user.as_str()))
    );
}

/// Reads a `reset`, then the messages up to `joined`.
async fn reset_then_joined(c: &mut Client) -> (Value, Vec<(u64, u64)>, Value) {
    let reset = c.next_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    let mut seen = Vec::new();
    loop {
        let v = c.next_json().await;
        match v["type"].as_str() {
            Some("message") => seen.push((
                v["offset"].as_u64().unwrap(),
                v["data"]["n"].as_u64().unwrap(),
            )),
            Some("joined") => return (reset, seen, v),
            _ => panic!("unexpected {v}"),
        }
    }
}

#[tokio::test]
async fn a_rejoin_across_an_epoch_change_gets_the_new_epoch_in_one_round_trip() {
    let server = TestServer::start_default().await;
    let mut watcher = connect(&server.ws("/ws/chat")).await;
    watcher
        .send(json!({"type":"join","room":"feed","id":1,"presence":true}))
        .await;
    let epoch = loop {
        let f = watcher.next_json().await;
        if f["type"] == "joined" {
            break f["epoch"].as_str().unwrap().to_string();
        }
    };
    for n in 1..=3 {
        publish(&server, "feed", n).await;
        assert_eq!(watcher.next_json().await["data"]["n"], n);
    }
    // A client whose last position is of an epoch the room no longer has
    // (the server restarted, or the broker lost the room).
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.send(
        json!({"type":"join","room":"feed","id":7,"replay_new_epoch":true,
                  "since":{"offset":40,"epoch":"0123456789abcdef"}}),
    )
    .await;
    let (reset, replayed, joined) = reset_then_joined(&mut c).await;
    assert_eq!(
        reset,
        json!({"type":"reset","room":"feed","id":7,"epoch":epoch,"offset":0})
    );
    assert_eq!(replayed, vec![(1, 1), (2, 2), (3, 3)]);
    assert_eq!(
        joined,
        json!({"type":"joined","room":"feed","id":7,"offset":3,"epoch":epoch,"recovered":false})
    );
    publish(&server, "feed", 4).await;
    let m = c.next_json().await;
    assert_eq!(
        (m["offset"].as_u64(), m["data"]["n"].as_u64()),
        (Some(4), Some(4))
    );
    c.expect_nothing_but_barrier().await;
    // The watcher saw one join of the rejoining connection, and no leave.
    let event = watcher.next_json().await;
    assert_eq!(
        (event["type"].as_str(), event["data"]["event"].as_str()),
        (Some("presence_event"), Some("join")),
        "{event}"
    );
    assert_eq!(watcher.next_json().await["data"]["n"], 4);
    watcher.expect_nothing_but_barrier().await;

    // Without the flag, the answer is as it always was: no reset, no replay.
    let mut old = connect(&server.ws("/ws/chat")).await;
    old.send(json!({"type":"join","room":"feed","id":2,"since":{"offset":40,"epoch":"0123456789abcdef"}}))
        .await;
    let (replayed, joined) = until_joined(&mut old).await;
    assert!(replayed.is_empty());
    assert_eq!(
        (joined["recovered"].as_bool(), joined["offset"].as_u64()),
        (Some(false), Some(4))
    );
}

#[tokio::test]
async fn a_reset_says_where_the_new_epoch_stands_when_its_history_is_trimmed() {
    let broker = MemoryBroker::with_config(MemoryConfig {
        history_count: 3,
        ..MemoryConfig::default()
    });
    let server = TestServer::start_with(Node::builder().default_endpoints().broker(broker)).await;
    for n in 1..=10 {
        publish(&server, "feed", n).await;
    }
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.send(json!({"type":"join","room":"feed","replay_new_epoch":true,
                  "since":{"offset":2,"epoch":"0123456789abcdef"}}))
        .await;
    let (reset, replayed, joined) = reset_then_joined(&mut c).await;
    // Offsets 1..=7 are gone: nothing can be placed from the epoch's
    // start, so nothing is replayed and the reset says so.
    assert_eq!(
        (reset["offset"].as_u64(), reset.get("id")),
        (Some(10), None)
    );
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(
        (
            joined["recovered"].as_bool(),
            joined["offset"].as_u64(),
            &joined["epoch"]
        ),
        (Some(false), Some(10), &reset["epoch"])
    );
    // A gap within the current epoch is no reset, flag or not.
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    let mut d = connect(&server.ws("/ws/chat")).await;
    d.send(json!({"type":"join","room":"feed","replay_new_epoch":true,
                  "since":{"offset":1,"epoch":epoch}}))
        .await;
    let (replayed, joined) = until_joined(&mut d).await;
    assert!(replayed.is_empty());
    assert_eq!(joined["recovered"], false);
}
