//! Test support: a real server on port 0; the WebSocket client is the
//! testkit's (`switchboard_testkit::ws`).
#![allow(dead_code)]

use std::net::SocketAddr;
use switchboard::NodeRoutes as _;

use serde_json::Value;
use switchboard::node::NodeBuilder;
use switchboard::{Config, Node};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) use switchboard_testkit::ws::{self, Client, WAIT, expect_refused};

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

/// Connects to a protocol endpoint and reads its `welcome` frame.
pub(crate) async fn connect(url: &str) -> Client {
    Client::connect(url).await
}

/// Connects to any endpoint and reads nothing (no welcome expected).
pub(crate) async fn connect_raw(url: &str) -> Client {
    Client::open(url).await
}

/// The HTTP status and body of a refused upgrade.
pub(crate) async fn upgrade_status(url: &str) -> (u16, String) {
    expect_refused(url).await
}

/// Polls `cond` until it holds, failing after the wait. For state that has no
/// event to await (counters, indexes).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    ws::eventually(what, WAIT, || std::future::ready(cond().then_some(()))).await;
}

/// An HS256 token for `sub` signed with `secret`, valid for an hour.
pub(crate) fn hs256_token(secret: &[u8], sub: &str) -> String {
    let exp = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}
