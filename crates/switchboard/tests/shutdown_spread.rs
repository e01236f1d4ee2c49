//! A graceful shutdown spreads its 1001 closes over `shutdown_spread`, so
//! that a node's clients reconnect elsewhere over a window rather than all
//! at once. Sessions run through the public transport API on in-memory
//! pipes, with time paused.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard::auth::Identity;
use switchboard::transport::{self, WebSocket};
use switchboard::{Config, Endpoint, Node};
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

async fn open(node: &Node, endpoint: &Arc<Endpoint>) -> WebSocketStream<DuplexStream> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let mut conn = node.admit(Identity::guest(), endpoint, None, None);
    let endpoint = endpoint.clone();
    node.spawn_session(async move {
        let ws = WebSocket::new(server_io, &[], &conn);
        transport::run(ws, &mut conn, &endpoint).await
    });
    WebSocketStream::from_raw_socket(client_io, Role::Client, None).await
}

/// The close code and when it came.
async fn closed_at(mut ws: WebSocketStream<DuplexStream>, start: Instant) -> (u16, Duration) {
    while let Some(message) = ws.next().await {
        if let Message::Close(frame) = message.expect("frame") {
            let code = frame.map(|f| u16::from(f.code)).unwrap_or(0);
            return (code, start.elapsed());
        }
    }
    panic!("the connection ended without a close frame");
}

async fn node(spread: Duration) -> (Node, Arc<Endpoint>) {
    let config = Config::builder()
        .shutdown_spread(spread)
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let endpoint = Endpoint::echo("/echo");
    let node = Node::builder()
        .config(config)
        .endpoint(endpoint.clone())
        .build()
        .unwrap();
    (node, Arc::new(endpoint))
}

#[tokio::test(start_paused = true)]
async fn the_closes_are_spread_evenly_over_the_window() {
    let (node, endpoint) = node(Duration::from_secs(10)).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(open(&node, &endpoint).await);
    }
    let start = Instant::now();
    let waiting: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(closed_at(ws, start)))
        .collect();
    let shutdown = tokio::spawn({
        let node = node.clone();
        async move { node.shutdown().await }
    });
    let mut got = Vec::new();
    for w in waiting {
        got.push(w.await.unwrap());
    }
    // In the order they opened, 2 s apart: the fifth at 8 s, within the
    // 10 s window.
    let codes: Vec<u16> = got.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, [1001; 5]);
    let seconds: Vec<u64> = got.iter().map(|(_, at)| at.as_secs()).collect();
    assert_eq!(seconds, [0, 2, 4, 6, 8], "{got:?}");
    assert!(shutdown.await.unwrap(), "every session finished in time");
    // A second call starts nothing again, and a node shut down refuses.
    node.begin_shutdown();
    assert!(node.is_draining());
}

#[tokio::test(start_paused = true)]
async fn without_a_spread_every_connection_is_closed_at_once() {
    let (node, endpoint) = node(Duration::ZERO).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(open(&node, &endpoint).await);
    }
    let start = Instant::now();
    node.begin_shutdown();
    for ws in clients {
        assert_eq!(closed_at(ws, start).await, (1001, Duration::ZERO));
    }
}

#[test]
fn a_spread_longer_than_the_shutdown_timeout_is_refused() {
    let e = Config::builder()
        .shutdown_timeout(Duration::from_secs(5))
        .shutdown_spread(Duration::from_secs(6))
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid setting `shutdown_spread`: must be at most shutdown_timeout (5 s), not 6 s: the \
         shutdown would stop waiting before the last connection is told to go"
    );
}
