//! The publish API: access rules, bad requests, and honest failure reports.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard::NodeRoutes as _;

use common::*;
use serde_json::json;
use switchboard::broker::memory::MemoryBroker;
use switchboard::broker::{
    Broker, BrokerError, BrokerHealth, DeliveryHandler, Position, Presence, PresenceEntry,
    Publication, Receipt, Recovery, Topic,
};
use switchboard::{Config, Node};
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789abcdef";

#[tokio::test]
async fn bad_bodies_are_400_with_a_json_error() {
    let server = TestServer::start_default().await;
    let cases = [
        ("/api/rooms/r/messages", "{oops", "bad_json"),
        ("/api/rooms/r/messages", "[1]", "bad_json"),
        ("/api/rooms/r/messages", "", "bad_json"),
        ("/api/rooms/r/messages", r#"{"payload":1}"#, "missing_field"),
        ("/api/users/u/messages", r#"{}"#, "missing_field"),
        ("/api/broadcast", "nope", "bad_json"),
        (
            "/api/rooms/bad%20room/messages",
            r#"{"data":1}"#,
            "invalid_room",
        ),
        ("/api/rooms/a%2Fb/messages", r#"{"data":1}"#, "invalid_room"),
        ("/api/users/a%0Ab/messages", r#"{"data":1}"#, "invalid_user"),
    ];
    for (path, body, code) in cases {
        let (status, v) = server.post(path, body).await;
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_eq!(v["error"]["code"], code, "{path} {body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

#[tokio::test]
async fn a_missing_room_or_user_is_400() {
    let server = TestServer::start_default().await;
    let (status, v) = server.post("/api/rooms//messages", r#"{"data":1}"#).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_room"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("empty"));
    let (status, v) = server.post("/api/users//messages", r#"{"data":1}"#).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_user"))
    );
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let config = Config::builder().max_message_size(1024).build().unwrap();
    let server = TestServer::start(config).await;
    let body = format!(r#"{{"data":"{}"}}"#, "x".repeat(4096));
    let (status, v) = server.post("/api/broadcast", &body).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "too_large");
    assert_eq!(
        v["error"]["message"],
        "body exceeds 2048 bytes: data may hold 1024 bytes (max_message_size), the body 1024 more"
    );
    // A body within bounds whose data alone is over: the message states
    // the limit and the setting.
    let body = format!(r#"{{"data":"{}"}}"#, "x".repeat(1100));
    let (status, v) = server.post("/api/broadcast", &body).await;
    assert_eq!(status, 413);
    assert_eq!(
        v["error"]["message"],
        "payload of 1102 bytes exceeds the 1024-byte limit (max_message_size)"
    );
}

#[tokio::test]
async fn with_a_key_configured_callers_must_present_it() {
    let config = Config::builder().api_key(KEY).build().unwrap();
    let server = TestServer::start(config).await;
    let url = server.http("/api/rooms/r/messages");
    let body = r#"{"data":1}"#;
    let (status, v) = post(&url, body, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = post(&url, body, Some("wrong-key-0123456789abcdef")).await;
    assert_eq!(status, 401);
    let (status, _) = post(&url, body, Some(&KEY[..KEY.len() - 1])).await;
    assert_eq!(status, 401);
    let (status, v) = post(&url, body, Some(KEY)).await;
    assert_eq!((status, v["offset"].as_u64()), (200, Some(1)));
    // The 401 says how to authenticate.
    let resp = reqwest::Client::new()
        .post(&url)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

fn api_request(peer: SocketAddr) -> http::Request<axum::body::Body> {
    let mut req = http::Request::post("/api/broadcast")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"data":1}"#))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

#[tokio::test]
async fn without_a_key_only_loopback_callers_are_served() {
    let node = Node::builder().default_endpoints().build().unwrap();
    let remote: SocketAddr = "203.0.113.7:5555".parse().unwrap();
    let resp = node.router().oneshot(api_request(remote)).await.unwrap();
    assert_eq!(resp.status(), 403);
    let local: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let resp = node.router().oneshot(api_request(local)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v6: SocketAddr = "[::1]:5555".parse().unwrap();
    let resp = node.router().oneshot(api_request(v6)).await.unwrap();
    assert_eq!(resp.status(), 200);
    // With a key, the address does not matter, the key does.
    let node = Node::builder()
        .config(Config::builder().api_key(KEY).build().unwrap())
        .build()
        .unwrap();
    let mut req = api_request(remote);
    req.headers_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    assert_eq!(node.router().oneshot(req).await.unwrap().status(), 200);
}

/// A broker that can be switched off, standing in for a lost Redis.
/// Presence is the inner broker's, and never fails.
struct Switchable {
    inner: MemoryBroker,
    down: Arc<AtomicBool>,
    /// Whether `position` and `recover` fail too while down (publish always
    /// does).
    fail_position: bool,
}

impl Switchable {
    /// Fails a read (`position`, `recover`) while down, if so configured.
    fn check_read(&self) -> Result<(), BrokerError> {
        if self.fail_position && self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Broker for Switchable {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        self.inner.attach(handler)
    }
    async fn publish(&self, p: Publication) -> Result<Receipt, BrokerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("connection refused".into()));
        }
        self.inner.publish(p).await
    }
    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.inner.subscribe(topic).await
    }
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.inner.unsubscribe(topic).await
    }
    async fn position(&self, room: &str) -> Result<Position, BrokerError> {
        self.check_read()?;
        self.inner.position(room).await
    }
    async fn recover(&self, room: &str, since: &Position) -> Result<Recovery, BrokerError> {
        self.check_read()?;
        self.inner.recover(room, since).await
    }
    fn health(&self) -> BrokerHealth {
        let connected = !self.down.load(Ordering::SeqCst);
        BrokerHealth {
            kind: "switchable",
            connected,
            detail: None,
            history: None,
            reconnects: 0,
        }
    }
}

#[async_trait::async_trait]
impl Presence for Switchable {
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError> {
        self.inner.add(room, conn, user).await
    }
    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError> {
        self.inner.remove(room, conn).await
    }
    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        self.inner.list(room).await
    }
}

async fn outage_server(local_delivery: bool) -> (TestServer, Arc<AtomicBool>, Client, Client) {
    let down = Arc::new(AtomicBool::new(false));
    let broker = Switchable {
        inner: MemoryBroker::new(),
        down: down.clone(),
        fail_position: false,
    };
    let config = Config::builder()
        .local_delivery_during_outage(local_delivery)
        .build()
        .unwrap();
    let server = TestServer::start_with(
        Node::builder()
            .config(config)
            .default_endpoints()
            .broker(broker),
    )
    .await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut b = connect(&server.ws("/ws/chat")).await;
    a.join("r").await;
    b.join("r").await;
    down.store(true, Ordering::SeqCst);
    (server, down, a, b)
}

#[tokio::test]
async fn during_a_broker_outage_publishes_fail_loudly_and_reach_this_node_only() {
    let (server, down, mut a, mut b) = outage_server(true).await;
    let (status, v) = server
        .post("/api/rooms/r/messages", r#"{"data":"api"}"#)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("partially_delivered"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this node's members only"),
        "{v}"
    );
    // Local members get it, without an offset: it is in no history.
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.next_json().await,
            json!({"type":"message","room":"r","data":"api"})
        );
    }
    a.send(json!({"type":"publish","room":"r","data":"ws","id":1}))
        .await;
    let m = a.next_json().await;
    assert_eq!((m["data"].as_str(), m.get("offset")), (Some("ws"), None));
    let e = a.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("partially_delivered"), Some(1))
    );
    assert_eq!(b.next_json().await["data"], "ws");
    let health: serde_json::Value = reqwest::get(server.http("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded");
    // Back: offsets resume where the broker left them.
    down.store(false, Ordering::SeqCst);
    a.send(json!({"type":"publish","room":"r","data":"back","id":2}))
        .await;
    let m = b.next_json().await;
    assert_eq!(
        (m["data"].as_str(), m["offset"].as_u64()),
        (Some("back"), Some(1))
    );
}

/// A publish with an idempotency key is never delivered locally during an
/// outage: it fails as not delivered, and its retry once the broker is back
/// is delivered once, everywhere.
#[tokio::test]
async fn during_an_outage_a_keyed_publish_is_not_delivered_so_its_retry_is_safe() {
    let (server, down, mut a, mut b) = outage_server(true).await;
    let body = r#"{"data":"keyed","idempotency_key":"order-7"}"#;
    let (status, v) = server.post("/api/rooms/r/messages", body).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("publish_failed")),
        "{v}"
    );
    a.send(json!({"type":"publish","room":"r","data":"ws","id":1,"idempotency_key":"k"}))
        .await;
    let e = a.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("publish_failed"), Some(1)),
        "{e}"
    );
    down.store(false, Ordering::SeqCst);
    // The retries: each delivered once, with an offset; a second retry is a
    // duplicate.
    let (status, v) = server.post("/api/rooms/r/messages", body).await;
    assert_eq!((status, v["offset"].as_u64()), (200, Some(1)), "{v}");
    let (status, v) = server.post("/api/rooms/r/messages", body).await;
    assert_eq!(
        (status, v["offset"].as_u64(), v["duplicate"].as_bool()),
        (200, Some(1), Some(true)),
        "{v}"
    );
    a.send(json!({"type":"publish","room":"r","data":"ws","id":2,"idempotency_key":"k"}))
        .await;
    for c in [&mut a, &mut b] {
        let m = c.next_json().await;
        assert_eq!(
            (m["data"].as_str(), m["offset"].as_u64()),
            (Some("keyed"), Some(1))
        );
        let m = c.next_json().await;
        assert_eq!(
            (m["data"].as_str(), m["offset"].as_u64()),
            (Some("ws"), Some(2))
        );
    }
    assert_eq!(a.next_json().await, json!({"type":"ack","id":2,"offset":2}));
}

#[tokio::test]
async fn with_local_delivery_off_an_outage_delivers_nothing() {
    let (server, down, mut a, mut b) = outage_server(false).await;
    let (status, v) = server
        .post("/api/rooms/r/messages", r#"{"data":"lost"}"#)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("publish_failed"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("not delivered"),
        "{v}"
    );
    let (status, _) = server.post("/api/broadcast", r#"{"data":"lost"}"#).await;
    assert_eq!(status, 503);
    let (status, _) = server
        .post("/api/users/x/messages", r#"{"data":"lost"}"#)
        .await;
    assert_eq!(status, 503);
    a.send(json!({"type":"publish","room":"r","data":"lost","id":1}))
        .await;
    let e = a.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("publish_failed"), Some(1))
    );
    // Back up, a barrier shows nothing was queued for the member meanwhile.
    down.store(false, Ordering::SeqCst);
    b.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn ipv4_mapped_loopback_is_loopback_and_relayed_requests_are_not() {
    let node = Node::builder().default_endpoints().build().unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:5555".parse().unwrap();
    assert_eq!(
        node.router()
            .oneshot(api_request(mapped))
            .await
            .unwrap()
            .status(),
        200
    );
    // A reverse proxy on the same host relays the world's requests: they
    // carry forwarding headers and are not loopback callers.
    let local: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ] {
        let mut req = api_request(local);
        req.headers_mut().insert(name, value.parse().unwrap());
        assert_eq!(
            node.router().oneshot(req).await.unwrap().status(),
            403,
            "{name}"
        );
    }
    // Behind a trusted proxy the forwarded client decides.
    let config = Config::builder()
        .trusted_proxies(vec!["127.0.0.1".parse().unwrap()])
        .build()
        .unwrap();
    let node = Node::builder().config(config).build().unwrap();
    let mut req = api_request(local);
    req.headers_mut()
        .insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
    assert_eq!(node.router().oneshot(req).await.unwrap().status(), 200);
    let mut req = api_request(local);
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    assert_eq!(node.router().oneshot(req).await.unwrap().status(), 403);
    // A proxy that appends its own X-Forwarded-For field behind the one the
    // client sent: the fields are one list, and the client's forged first
    // field does not make it loopback.
    let mut req = api_request(local);
    req.headers_mut()
        .append("x-forwarded-for", "127.0.0.1".parse().unwrap());
    req.headers_mut()
        .append("x-forwarded-for", "203.0.113.9".parse().unwrap());
    assert_eq!(node.router().oneshot(req).await.unwrap().status(), 403);
    // A trusted proxy that does not name the client in X-Forwarded-For
    // (X-Real-IP only, or garbage) leaves the client unknown: refused.
    for (name, value) in [("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "garbage")] {
        let mut req = api_request(local);
        req.headers_mut().insert(name, value.parse().unwrap());
        assert_eq!(
            node.router().oneshot(req).await.unwrap().status(),
            403,
            "{name}: {value}"
        );
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let config = Config::builder().api_key(KEY).build().unwrap();
    let server = TestServer::start(config).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = reqwest::Client::new()
            .post(server.http("/api/broadcast"))
            .header("authorization", format!("{scheme} {KEY}"))
            .body(r#"{"data":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn a_join_that_failed_delivers_nothing() {
    let down = Arc::new(AtomicBool::new(false));
    let broker = Switchable {
        inner: MemoryBroker::new(),
        down: down.clone(),
        fail_position: true,
    };
    let server = TestServer::start_with(Node::builder().default_endpoints().broker(broker)).await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    down.store(true, Ordering::SeqCst);
    a.send(json!({"type":"join","room":"r","id":1})).await;
    let e = a.next_json().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("unavailable"), Some(1))
    );
    down.store(false, Ordering::SeqCst);
    let (status, _) = server
        .post("/api/rooms/r/messages", r#"{"data":"not for a"}"#)
        .await;
    assert_eq!(status, 200);
    a.expect_nothing_but_barrier().await;
    assert_eq!(server.node.local_members(&Topic::Room("r".into())), 0);
}

#[tokio::test]
async fn a_body_nested_too_deeply_is_refused_and_nothing_is_published() {
    let server = TestServer::start_default().await;
    let mut member = connect(&server.ws("/ws/chat")).await;
    member.join("deep").await;
    // The body's object and 63 levels of data: accepted.
    let ok = format!(r#"{{"data":{}{}}}"#, "[".repeat(63), "]".repeat(63));
    let (status, body) = server.post("/api/rooms/deep/messages", &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(member.next_json().await["offset"], 1);
    let deep = format!(r#"{{"data":{}{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let (status, body) = server.post("/api/rooms/deep/messages", &deep).await;
    assert_eq!(
        (status, body),
        (
            400,
            serde_json::json!({"error": {"code": "bad_json", "message": "JSON nested deeper than 64 levels"}})
        )
    );
    member.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn refusals_name_what_is_wrong_with_the_credentials_and_the_proxy() {
    let config = Config::builder().api_key(KEY).build().unwrap();
    let server = TestServer::start(config).await;
    let call = |auth: Option<String>| {
        let mut req = reqwest::Client::new()
            .post(server.http("/api/broadcast"))
            .body(r#"{"data":1}"#);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let message = |m: &str| json!({"error": {"code": "unauthorized", "message": m}});
    assert_eq!(
        call(None).await,
        (
            401,
            message("missing API key: send Authorization: Bearer <key>")
        )
    );
    for wrong_scheme in [format!("Basic {KEY}"), KEY.to_string()] {
        assert_eq!(
            call(Some(wrong_scheme)).await,
            (
                401,
                message(
                    "the Authorization header must use the Bearer scheme: Authorization: Bearer <key>"
                )
            )
        );
    }
    assert_eq!(
        call(Some("Bearer nope".into())).await,
        (401, message("invalid API key"))
    );

    // Without a key: a loopback peer whose forwarding header names another
    // client is told why it is not loopback.
    let node = Node::builder().default_endpoints().build().unwrap();
    let local: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let mut req = api_request(local);
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let resp = node.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["message"],
        "no API key is configured, so the API accepts only loopback callers; this request came \
         through a proxy (it carries X-Forwarded-For, Forwarded or X-Real-IP), and its client is \
         not known to be loopback: the proxy must be in --trusted-proxies and name a loopback \
         client in X-Forwarded-For, or set an API key"
    );
}

#[tokio::test]
async fn a_path_that_does_not_decode_is_checked_for_access_first_and_refused_as_json() {
    let config = Config::builder().api_key(KEY).build().unwrap();
    let server = TestServer::start(config).await;
    for (method, path) in [
        ("POST", "/api/rooms/%FF/messages"),
        ("POST", "/api/users/%C3%28/messages"),
        ("POST", "/api/users/%FF/disconnect"),
        ("GET", "/api/rooms/%FF/presence"),
        ("GET", "/api/users/%FF/presence"),
    ] {
        let send = |key: Option<&str>| {
            let mut req = reqwest::Client::new()
                .request(method.parse().unwrap(), server.http(path))
                .body(r#"{"data":1}"#);
            if let Some(key) = key {
                req = req.bearer_auth(key);
            }
            async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let json = resp.headers()["content-type"] == "application/json";
                (status, json, resp.text().await.unwrap())
            }
        };
        let (status, json, body) = send(None).await;
        assert_eq!((status, json), (401, true), "{path}: {body}");
        let (status, json, body) = send(Some(KEY)).await;
        assert_eq!((status, json), (400, true), "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_path", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid path: "),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn readiness_is_lost_with_the_broker_and_while_draining() {
    let down = Arc::new(AtomicBool::new(false));
    let broker = Switchable {
        inner: MemoryBroker::new(),
        down: down.clone(),
        fail_position: false,
    };
    let server = TestServer::start_with(Node::builder().default_endpoints().broker(broker)).await;
    let node = server.node.id().to_string();
    let ready = || async {
        let resp = reqwest::get(server.http("/health/ready")).await.unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(
        ready().await,
        (200, json!({"status": "ready", "node": node}))
    );
    down.store(true, Ordering::SeqCst);
    assert_eq!(
        ready().await,
        (
            503,
            json!({"status": "not_ready", "node": node,
                   "reasons": ["broker (switchable) not connected: not connected"]})
        )
    );
    // Liveness is another question: the process serves.
    let health = reqwest::get(server.http("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    down.store(false, Ordering::SeqCst);
    assert_eq!(ready().await.0, 200);
    server.node.begin_shutdown();
    assert_eq!(
        ready().await,
        (
            503,
            json!({"status": "not_ready", "node": node,
                   "reasons": ["draining: the node is shutting down"]})
        )
    );
}
