//! Test support: a real Switchboard server on port 0 (restartable on the same
//! port, over a memory bus that outlives it), scripted fake peers, and waits
//! on client events with deadlines.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchboard::NodeRoutes as _;

use futures_util::StreamExt;
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard::Node;
use switchboard::broker::memory::{MemoryBroker, MemoryBus};
use switchboard::node::NodeBuilder;
use switchboard_client::{Event, Events};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long a test waits for any one expected event.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A server running `switchboard::serve` on a real socket.
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub node: Node,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A node with the default endpoints on a broker linked to `bus`.
pub(crate) fn node(bus: &Arc<MemoryBus>) -> Node {
    Node::builder()
        .default_endpoints()
        .broker(MemoryBroker::linked(bus))
        .build()
        .expect("valid node")
}

impl Server {
    /// A default node on port 0, linked to `bus`.
    pub(crate) async fn start(bus: &Arc<MemoryBus>) -> Self {
        Self::serve(node(bus), "127.0.0.1:0".parse().expect("addr")).await
    }

    /// A node built from `builder`, on port 0.
    pub(crate) async fn start_with(builder: NodeBuilder) -> Self {
        let node = builder.build().expect("valid node");
        Self::serve(node, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Serves `node` on `addr` (the same port again after a restart).
    pub(crate) async fn serve(node: Node, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(switchboard::serve(
            listener,
            node.router(),
            node.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            node,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Graceful shutdown (every client gets 1001); returns once `serve`
    /// returned and the port is free.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("serve ok");
        }
    }

    /// Publishes `data` to `room` as a backend would; returns the offset.
    pub(crate) async fn publish(&self, room: &str, data: Value) -> u64 {
        publish(&self.node, room, data).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) async fn publish(node: &Node, room: &str, data: Value) -> u64 {
    let raw = RawValue::from_string(data.to_string()).expect("json");
    node.publish_room(room, &raw)
        .await
        .expect("published")
        .offset
        .expect("room offset")
}

/// The next event, within [`WAIT`].
pub(crate) async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("the event stream is open")
}

/// Skips events until `f` picks one, within [`WAIT`]; panics with what was
/// seen otherwise.
pub(crate) async fn until<T>(events: &mut Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = f(&e) {
                return Some(t);
            }
            seen.push(e);
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        Ok(None) => panic!("the event stream ended; seen: {seen:#?}"),
        Err(_) => panic!("timed out; seen: {seen:#?}"),
    }
}

/// The `n` field of a room message's data, with its room offset.
pub(crate) fn room_n(e: &Event, room: &str) -> Option<(u64, u64)> {
    match e {
        Event::Message(m) if m.room() == Some(room) => {
            let v: Value = m.json().ok()?;
            Some((v["n"].as_u64()?, m.offset?))
        }
        _ => None,
    }
}

pub(crate) type FakeSocket = WebSocketStream<TcpStream>;

/// A fake server: accepts WebSocket upgrades (selecting `switchboard.v1`)
/// and runs `script` with each connection's index (0, 1, ...) and socket.
pub(crate) async fn fake_server<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(usize, FakeSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, select_subprotocol).await {
                    script(n, ws).await;
                }
            });
        }
    });
    addr
}

/// Selects `switchboard.v1`, which the client offers and requires.
// The callback's signature is tungstenite's.
#[allow(clippy::result_large_err)]
fn select_subprotocol(_: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    resp.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("switchboard.v1"),
    );
    Ok(resp)
}

/// A `welcome` frame as the server sends it.
pub(crate) fn welcome(user: &str, heartbeat_ms: u64) -> tokio_tungstenite::tungstenite::Message {
    let v = serde_json::json!({
        "type": "welcome", "user": user, "conn": "fake-1",
        "protocol": "switchboard.v1", "heartbeat_ms": heartbeat_ms,
    });
    tokio_tungstenite::tungstenite::Message::text(v.to_string())
}

/// Reads (and ignores) everything until the peer goes away.
pub(crate) async fn read_to_end(ws: &mut FakeSocket) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// A port on which connections are refused: bound, then released.
pub(crate) async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}
