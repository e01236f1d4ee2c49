//! The recovery seam under load, through Redis: many clients that keep
//! leaving and rejoining a room with `since` while a fast stream is published
//! over the HTTP API on another node. Each client speaks the raw protocol as
//! `docs/protocol.md` describes it and does not deduplicate: every message
//! frame it sees must carry the offset after the last one, whether it came
//! from the replay or live. A duplicate at the seam (the last replayed
//! message again as the first live one) or a gap fails the test.

mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use cluster::{Client, Cluster};

const ROOM: &str = "seam";
const CLIENTS: usize = 40;
const REJOINS: usize = 25;

/// What one client saw: offsets out of sequence, described.
#[derive(Default)]
struct Seen {
    rejoins: usize,
    duplicates: Vec<String>,
    gaps: Vec<String>,
}

/// Checks one message frame against the last offset seen.
fn check(seen: &mut Seen, last: &mut Option<u64>, frame: &Value, phase: &str) {
    assert_eq!(frame["room"], ROOM, "{frame}");
    let offset = frame["offset"]
        .as_u64()
        .expect("a room message has an offset");
    if let Some(l) = *last {
        if offset <= l {
            seen.duplicates
                .push(format!("{offset} after {l} ({phase})"));
            return;
        }
        if offset != l + 1 {
            seen.gaps.push(format!("{offset} after {l} ({phase})"));
        }
    }
    *last = Some(offset);
}

async fn churn(url: String, index: usize, published: Arc<AtomicU64>) -> Seen {
    let mut client = Client::connect(&url).await;
    let mut seen = Seen::default();
    let joined = client.join(ROOM, 1).await;
    let epoch = joined["epoch"].as_str().expect("epoch").to_string();
    let mut last: Option<u64> = None;
    let mut id = 10;
    for round in 0..REJOINS {
        // Live for a few messages.
        let target = 1 + (index + round) % 4;
        for _ in 0..target {
            let f = client.message().await;
            check(&mut seen, &mut last, &f, "live");
        }
        // Leave: what was queued before the leave comes before `left`.
        id += 1;
        client
            .send(json!({"type": "leave", "room": ROOM, "id": id}))
            .await;
        loop {
            let f = client.expect("message or left", |_| true).await;
            if f["type"] == "message" {
                check(&mut seen, &mut last, &f, "before left");
                continue;
            }
            assert_eq!(f["type"], "left", "{f}");
            break;
        }
        // Away while the stream goes on, for a moment that varies.
        let away = published.load(Ordering::Relaxed) + 1 + (round % 3) as u64;
        while published.load(Ordering::Relaxed) < away {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Rejoin with `since`: replay, `joined`, then live.
        id += 1;
        let offset = last.expect("saw a message before leaving");
        client
            .send(json!({
                "type": "join", "room": ROOM, "id": id,
                "since": {"offset": offset, "epoch": epoch},
            }))
            .await;
        loop {
            let f = client.expect("replay or joined", |_| true).await;
            if f["type"] == "message" {
                check(&mut seen, &mut last, &f, "replay");
                continue;
            }
            assert_eq!(f["type"], "joined", "{f}");
            assert_eq!(f["recovered"], true, "{f}");
            assert_eq!(f["id"], id, "{f}");
            let at = f["offset"].as_u64().expect("offset");
            assert_eq!(
                Some(at),
                last.max(Some(offset)),
                "joined after the replay: {f}"
            );
            break;
        }
        seen.rejoins += 1;
    }
    client.close().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoining_clients_see_no_duplicate_and_no_gap_at_the_seam_through_redis() {
    let cluster = Cluster::start(2, &[], false).await;
    let api = cluster.nodes[0].http();
    let url = format!("{}/ws/chat", cluster.nodes[1].ws());

    // The stream: one publisher awaiting each publish, as fast as it goes.
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop) = (published.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let resp = http
                    .post(format!("{api}/api/rooms/{ROOM}/messages"))
                    .header("content-type", "application/json")
                    .body(json!({"data": {"n": n}}).to_string())
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(resp.status(), 200);
                published.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    // Clients on the other node, so that every delivery crosses Redis.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(churn(url.clone(), i, published.clone())))
        .collect();
    let mut rejoins = 0;
    let mut duplicates = Vec::new();
    let mut gaps = Vec::new();
    for c in clients {
        let seen = c.await.expect("client task");
        rejoins += seen.rejoins;
        duplicates.extend(seen.duplicates);
        gaps.extend(seen.gaps);
    }
    stop.store(true, Ordering::Relaxed);
    let total = publisher.await.expect("publisher");
    eprintln!("{rejoins} recovered rejoins under a stream of {total} messages");
    assert_eq!(rejoins, CLIENTS * REJOINS);
    assert!(
        duplicates.is_empty() && gaps.is_empty(),
        "in {rejoins} rejoins: {} duplicates {duplicates:?}, {} gaps {gaps:?}",
        duplicates.len(),
        gaps.len()
    );
}
