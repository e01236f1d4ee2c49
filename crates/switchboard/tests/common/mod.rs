//! Test support: a real server on port 0 and real WebSocket clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use switchboard::NodeRoutes as _;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::node::NodeBuilder;
use switchboard::{Config, Node};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one expected event.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub node: Node,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub(crate) async fn start(config: Config) -> Self {
        Self::start_with(Node::builder().config(config).default_endpoints()).await
    }

    pub(crate) async fn start_default() -> Self {
        Self::start(Config::default()).await
    }

    pub(crate) async fn start_with(builder: NodeBuilder) -> Self {
        let node = builder.build().expect("valid node");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = node.router();
        let task = tokio::spawn(switchboard::serve(
            listener,
            app,
            node.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            node,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown; returns when `serve` returned.
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

    pub(crate) async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        post(&self.http(path), body, None).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) async fn post(url: &str, body: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("http request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) struct Client {
    pub ws: Ws,
    pub user: Option<String>,
}

/// Connects a raw WebSocket client (no welcome expected).
pub(crate) async fn connect_raw(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// Connects to a protocol endpoint and reads its `welcome` frame.
pub(crate) async fn connect(url: &str) -> Client {
    let mut c = Client {
        ws: connect_raw(url).await,
        user: None,
    };
    let welcome = c.next_json().await;
    assert_eq!(
        welcome["type"], "welcome",
        "first frame is welcome: {welcome}"
    );
    c.user = Some(welcome["user"].as_str().unwrap().to_string());
    c
}

/// The HTTP status of a refused upgrade.
pub(crate) async fn upgrade_status(url: &str) -> (u16, String) {
    let req = url.into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("upgrade to {url} unexpectedly succeeded"),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            (resp.status().as_u16(), body.unwrap_or_default())
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

impl Client {
    pub(crate) fn user(&self) -> &str {
        self.user.as_deref().unwrap()
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub(crate) async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_string()))
            .await
            .expect("send");
    }

    /// The next text frame as JSON (pings are answered by tungstenite).
    pub(crate) async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("stream open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("json frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// Joins a room and returns the `joined` frame.
    pub(crate) async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        loop {
            let v = self.next_json().await;
            if v["type"] == "joined" {
                assert_eq!(v["room"], room);
                return v;
            }
            assert_eq!(
                v["type"], "message",
                "only messages may precede joined: {v}"
            );
        }
    }

    /// Reads until a close frame; returns its code and reason.
    pub(crate) async fn expect_close(&mut self) -> (u16, String) {
        expect_close(&mut self.ws).await
    }

    /// Proves that nothing is queued for this client without waiting for
    /// silence: sends a barrier message to its user through `server`'s API
    /// and checks that it is the next frame. The in-memory broker queues a
    /// delivery before the publish returns, and a connection's frames keep
    /// their order, so anything queued before the barrier would come first.
    pub(crate) async fn expect_nothing_but_barrier(&mut self, server: &TestServer) {
        let barrier = format!("barrier-{}", rand_suffix());
        let (status, body) = server
            .post(
                &format!("/api/users/{}/messages", self.user()),
                &json!({ "data": barrier }).to_string(),
            )
            .await;
        assert_eq!(status, 200, "barrier publish: {body}");
        let next = self.next_json().await;
        assert_eq!(
            next["data"],
            barrier.as_str(),
            "expected only the barrier, got {next}"
        );
    }
}

/// A suffix that tells one barrier from another.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads (skipping data frames) until a close frame; returns code and reason.
pub(crate) async fn expect_close<S>(ws: &mut WebSocketStream<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close within the wait");
        match next {
            Some(Ok(Message::Close(frame))) => {
                // Keep polling so the library sends its close reply and sees
                // the server end the TCP connection, as a real client does.
                let _ =
                    tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
                return match frame {
                    Some(CloseFrame { code, reason }) => (u16::from(code), reason.to_string()),
                    None => (1005, String::new()),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Polls `cond` until it holds, failing after the wait. For state that has no
/// event to await (counters, indexes).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
