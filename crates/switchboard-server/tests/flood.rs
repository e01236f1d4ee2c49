//! An anonymous client that tries to fill the node's memory: one guest
//! connection publishes large messages to ten rooms as fast as it can. With the defaults the guest rate limit stops it early and
//! closes it (4002); without that limit, the history budget holds the
//! memory the rooms keep. What is asserted is the history the node counts
//! (`/health`), never the process's memory, which benchmarks measure.

mod cluster;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_testkit::ws::{self, Message};

use cluster::{DEADLINE, Node, get};

const PAYLOAD: usize = 60_000;

/// What the guest was told: acks, errors by code, and the close code.
#[derive(Debug, Default)]
struct Told {
    acks: usize,
    rate_limited: usize,
    other: Vec<Value>,
    close: Option<u16>,
}

/// Connects a guest to `/ws/chat` and publishes `per_room` messages of
/// [`PAYLOAD`] bytes to each of `rooms` rooms without waiting for the
/// replies, then reads every reply (or the close). It joins none of them:
/// a member that reads its own flood slower than it arrives is closed as a
/// slow consumer (4000) before it fills anything.
async fn flood(node: &Node, rooms: usize, per_room: usize) -> Told {
    let url = format!("{}/ws/chat", node.ws());
    // The welcome is read here; the sender and the reader share the socket.
    let (mut tx, mut rx) = ws::Client::connect(url.as_str())
        .await
        .into_socket()
        .split();
    let data = "x".repeat(PAYLOAD - 2);
    let sender = tokio::spawn(async move {
        let mut id = 0u64;
        for r in 0..rooms {
            let room = format!("flood-{r}");
            for _ in 0..per_room {
                id += 1;
                let frame = json!({"type": "publish", "room": room, "data": data, "id": id});
                if tx.send(Message::text(frame.to_string())).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut told = Told::default();
    let replies = rooms * per_room;
    let read = async {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).expect("json");
                    match (v["type"].as_str(), v["code"].as_str()) {
                        (Some("ack"), _) => told.acks += 1,
                        (Some("error"), Some("rate_limited")) => told.rate_limited += 1,
                        _ => told.other.push(v),
                    }
                    if told.acks + told.rate_limited == replies {
                        return;
                    }
                }
                Message::Close(frame) => {
                    told.close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    return;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE * 6, read)
        .await
        .expect("the flood was answered");
    sender.abort();
    told
}

async fn history(node: &Node) -> Value {
    let (status, health) = get(&format!("{}/health", node.http())).await;
    assert_eq!(status, 200, "{health}");
    health["broker"]["history"].clone()
}

#[tokio::test]
async fn with_the_defaults_a_flooding_guest_is_limited_and_closed() {
    let node = Node::start(&["--port".into(), "0".into()]).await;
    let started = std::time::Instant::now();
    let told = flood(&node, 10, 100).await;
    let elapsed = started.elapsed().as_secs_f64();
    // The burst (50) and what the rate (20/s) refilled while the flood
    // lasted are accepted; past 20 dropped messages the connection is
    // closed. The refill depends on how fast this machine sends, so the
    // bound is taken from the time the flood took, not assumed.
    assert_eq!(told.close, Some(4002), "{told:?}");
    let refill = (20.0 * elapsed).ceil() as usize + 1;
    assert!(
        (50..=50 + refill).contains(&told.acks),
        "accepted only the burst and its refill over {elapsed:.2} s: {told:?}"
    );
    // Dropped with an error each, up to the 20 strikes; the next closes.
    assert_eq!(told.rate_limited, 20, "{told:?}");
    assert!(told.other.is_empty(), "{told:?}");
    let h = history(&node).await;
    let bytes = h["bytes"].as_u64().unwrap();
    assert!(bytes <= h["budget"].as_u64().unwrap(), "{h}");
    // What was accepted is all the history holds: at most about 60 kB a
    // message.
    assert!(bytes <= told.acks as u64 * (PAYLOAD as u64 + 512), "{h}");
}

#[tokio::test]
async fn without_the_guest_limit_the_history_budget_holds() {
    let node = Node::start(
        &[
            "--port",
            "0",
            "--guest-message-rate",
            "0",
            "--memory-budget",
            "4194304",
        ]
        .map(String::from),
    )
    .await;
    // 1,000 messages of 60 kB (60 MB) into ten rooms.
    let told = flood(&node, 10, 100).await;
    assert_eq!((told.acks, told.close), (1000, None), "{told:?}");
    assert!(told.other.is_empty(), "{told:?}");
    let h = history(&node).await;
    assert_eq!(h["budget"], 4 << 20, "{h}");
    assert!(h["bytes"].as_u64().unwrap() <= 4 << 20, "{h}");
    // Each room keeps at most 1 MiB (about 17 of these messages) by
    // itself; ten rooms would hold 10 MiB, so the budget evicted the
    // oldest.
    assert!(h["evicted"].as_u64().unwrap() > 0, "{h}");
}
