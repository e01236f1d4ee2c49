//! Fan-out delivery over real sockets when a client's socket fills up: the
//! frames written by flushers and the connection's own replies must reach
//! the client whole, in order, and exactly once.

mod common;

use common::*;
use serde_json::json;
use switchboard::Config;

const HTTP_MESSAGES: u64 = 150;
const WS_MESSAGES: u64 = 30;
const FILLER: usize = 40_000;

#[tokio::test]
async fn a_reader_that_pauses_gets_every_frame_whole_and_in_order() {
    let config = Config::builder()
        .outbound_queue_frames(512)
        .outbound_queue_bytes(32 * 1024 * 1024)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let mut paused = connect(&server.ws("/ws/chat")).await;
    paused.join("feed").await;

    // While the client reads nothing, 6 MB of fan-out fills its socket
    // (partial writes, then the rest queued), and it publishes frames of its
    // own whose acks queue behind the fan-out.
    let filler = "f".repeat(FILLER);
    let url = server.http("/api/rooms/feed/messages");
    let http = tokio::spawn(async move {
        for n in 0..HTTP_MESSAGES {
            let body = json!({"data": {"n": n, "filler": filler}}).to_string();
            let (status, _) = post(&url, &body, None).await;
            assert_eq!(status, 200);
        }
    });
    for id in 1..=WS_MESSAGES {
        paused
            .send(json!({"type": "publish", "room": "feed", "id": id, "data": {"ws": id}}))
            .await;
    }
    http.await.unwrap();

    let total = HTTP_MESSAGES + WS_MESSAGES;
    let mut offsets = Vec::new();
    let mut acks = Vec::new();
    let mut http_seen = Vec::new();
    while offsets.len() < total as usize || acks.len() < WS_MESSAGES as usize {
        let frame = paused.next_json().await;
        match frame["type"].as_str() {
            Some("message") => {
                offsets.push(frame["offset"].as_u64().unwrap());
                if let Some(n) = frame["data"]["n"].as_u64() {
                    assert_eq!(frame["data"]["filler"].as_str().unwrap().len(), FILLER);
                    http_seen.push(n);
                }
            }
            Some("ack") => acks.push(frame["id"].as_u64().unwrap()),
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(offsets, (1..=total).collect::<Vec<_>>());
    assert_eq!(http_seen, (0..HTTP_MESSAGES).collect::<Vec<_>>());
    assert_eq!(acks, (1..=WS_MESSAGES).collect::<Vec<_>>());
    paused.expect_nothing_but_barrier().await;
    assert_eq!(server.node.stats().snapshot().slow_consumers, 0);
}

#[tokio::test]
async fn many_idle_subscribers_each_get_each_message_once() {
    let server = TestServer::start_default().await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut c = connect(&server.ws("/ws/chat")).await;
        c.join("wide").await;
        clients.push(c);
    }
    for n in 0..20 {
        let body = json!({"data": {"n": n}}).to_string();
        let (status, _) = server.post("/api/rooms/wide/messages", &body).await;
        assert_eq!(status, 200);
    }
    for c in &mut clients {
        for n in 0..20 {
            let m = c.next_json().await;
            assert_eq!(m["data"]["n"], n, "{m}");
        }
        c.expect_nothing_but_barrier().await;
    }
}
