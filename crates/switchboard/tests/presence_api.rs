//! The presence routes of the HTTP API (who is in a room, whether a user is
//! online), and how many local connections a publish reached.

mod common;

use std::net::SocketAddr;
use switchboard::NodeRoutes as _;

use common::*;
use serde_json::{Value, json};
use switchboard::auth::{Authenticator, Identity, Rejection};
use switchboard::broker::{BrokerError, Presence, PresenceEntry};
use switchboard::{Config, Node};
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789abcdef";

/// Reads the user id from the `x-user` header, so that several connections
/// can share one.
struct HeaderUser;

#[async_trait::async_trait]
impl Authenticator for HeaderUser {
    async fn authenticate(&self, req: &http::request::Parts) -> Result<Identity, Rejection> {
        req.headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(Identity::user)
            .ok_or_else(|| Rejection::unauthorized("x-user header required"))
    }
}

async fn server(online_status: bool) -> TestServer {
    let config = Config::builder()
        .online_status(online_status)
        .build()
        .unwrap();
    TestServer::start_with(
        Node::builder()
            .config(config)
            .default_endpoints()
            .authenticator(HeaderUser),
    )
    .await
}

async fn as_user(server: &TestServer, path: &str, user: &str) -> Client {
    let c = Client::connect(ws::request(&server.ws(path), &[("x-user", user)])).await;
    assert_eq!(c.user(), user);
    c
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("http request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The status and error code of a refusal.
fn refusal((status, v): (u16, Value)) -> (u16, String) {
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    (status, code)
}

#[tokio::test]
async fn room_presence_lists_members_sorted_with_their_connections() {
    let server = server(false).await;
    let url = server.http("/api/rooms/team/presence");
    assert_eq!(
        get(&url, None).await,
        (200, json!({"room": "team", "members": []}))
    );
    let mut bob = as_user(&server, "/ws/chat", "bob").await;
    let mut ana1 = as_user(&server, "/ws/chat", "ana").await;
    let mut ana2 = as_user(&server, "/ws/chat", "ana").await;
    let _lurker = as_user(&server, "/ws/chat", "cid").await;
    for c in [&mut bob, &mut ana1, &mut ana2] {
        c.join("team").await;
    }
    let members = json!([
        {"user": "ana", "connections": 2},
        {"user": "bob", "connections": 1},
    ]);
    assert_eq!(
        get(&url, None).await,
        (200, json!({"room": "team", "members": members}))
    );
    // The protocol's `presence` reply says the same.
    ana1.send(json!({"type": "presence", "room": "team", "id": 1}))
        .await;
    let reply = ana1.expect_json("presence").await;
    assert_eq!(reply["members"], members, "{reply}");
    ana2.close().await;
    bob.close().await;
    let one = json!({"room": "team", "members": [{"user": "ana", "connections": 1}]});
    ws::eventually("the leaves to be recorded", WAIT, || async {
        (get(&url, None).await == (200, one.clone())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_names_are_400_and_the_reserved_names_are_out_of_reach() {
    let server = server(true).await;
    let _ana = as_user(&server, "/ws/chat", "ana").await;
    let cases = [
        ("/api/rooms/a%20b/presence", "invalid_room"),
        // `#online:ana` is where ana's connections are recorded: no room
        // name reaches it.
        ("/api/rooms/%23online%3Aana/presence", "invalid_room"),
        ("/api/rooms//presence", "invalid_room"),
        ("/api/users/a%0Ab/presence", "invalid_user"),
        ("/api/users//presence", "invalid_user"),
    ];
    for (path, code) in cases {
        let got = refusal(get(&server.http(path), None).await);
        assert_eq!(got, (400, code.to_string()), "{path}");
    }
    let long = "r".repeat(129);
    let got = refusal(get(&server.http(&format!("/api/rooms/{long}/presence")), None).await);
    assert_eq!(got, (400, "invalid_room".to_string()));
    // A method other than GET.
    let resp = reqwest::Client::new()
        .post(server.http("/api/rooms/r/presence"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn a_user_is_online_while_a_connection_is_open_on_any_endpoint() {
    let server = server(true).await;
    let url = server.http("/api/users/ana/presence");
    let offline = json!({"user": "ana", "online": false, "connections": 0});
    assert_eq!(get(&url, None).await, (200, offline.clone()));
    let chat = as_user(&server, "/ws/chat", "ana").await;
    assert_eq!(
        get(&url, None).await,
        (
            200,
            json!({"user": "ana", "online": true, "connections": 1})
        )
    );
    let notifications = as_user(&server, "/ws/notifications", "ana").await;
    let _bob = as_user(&server, "/ws/chat", "bob").await;
    assert_eq!(
        get(&url, None).await,
        (
            200,
            json!({"user": "ana", "online": true, "connections": 2})
        )
    );
    // Percent-decoded like the publish routes.
    let (status, v) = get(&server.http("/api/users/b%6Fb/presence"), None).await;
    assert_eq!(
        (status, &v["user"], &v["online"]),
        (200, &json!("bob"), &json!(true))
    );
    chat.close().await;
    notifications.close().await;
    ws::eventually("ana to go offline", WAIT, || async {
        (get(&url, None).await == (200, offline.clone())).then_some(())
    })
    .await;
    // No room is touched: the record lives under a reserved name.
    assert_eq!(server.node.health().rooms, 0);
}

#[tokio::test]
async fn without_online_status_the_user_route_is_501() {
    let server = server(false).await;
    let _ana = as_user(&server, "/ws/chat", "ana").await;
    let got = refusal(get(&server.http("/api/users/ana/presence"), None).await);
    assert_eq!(got, (501, "online_status_disabled".to_string()));
    // Nothing was recorded for her.
    let entries = server.node.presence().list("#online:ana").await.unwrap();
    assert_eq!(entries, []);
}

#[tokio::test]
async fn presence_routes_are_protected_like_the_publish_routes() {
    let config = Config::builder()
        .api_key(KEY)
        .online_status(true)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    for path in ["/api/rooms/r/presence", "/api/users/ana/presence"] {
        let url = server.http(path);
        assert_eq!(refusal(get(&url, None).await), (401, "unauthorized".into()));
        assert_eq!(
            refusal(get(&url, Some("wrong-key-0123456789abcdef")).await),
            (401, "unauthorized".into())
        );
        assert_eq!(get(&url, Some(KEY)).await.0, 200, "{path}");
    }
    // Without a key, only loopback callers.
    let node = Node::builder()
        .config(Config::builder().online_status(true).build().unwrap())
        .build()
        .unwrap();
    for path in ["/api/rooms/r/presence", "/api/users/ana/presence"] {
        let request = |peer: &str| {
            let mut req = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let peer: SocketAddr = peer.parse().unwrap();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        };
        let resp = node.router().oneshot(request("203.0.113.7:5555")).await;
        assert_eq!(resp.unwrap().status(), 403, "{path}");
        let resp = node.router().oneshot(request("127.0.0.1:5555")).await;
        assert_eq!(resp.unwrap().status(), 200, "{path}");
    }
}

/// A presence backend that cannot be reached.
struct Unreachable;

#[async_trait::async_trait]
impl Presence for Unreachable {
    async fn add(&self, _: &str, _: &str, _: &str) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("connection refused".into()))
    }
    async fn remove(&self, _: &str, _: &str) -> Result<(), BrokerError> {
        Err(BrokerError::Unavailable("connection refused".into()))
    }
    async fn list(&self, _: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        Err(BrokerError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn an_unreachable_presence_backend_is_503_and_never_fails_a_connection() {
    let config = Config::builder().online_status(true).build().unwrap();
    let server = TestServer::start_with(
        Node::builder()
            .config(config)
            .default_endpoints()
            .presence(Unreachable),
    )
    .await;
    // Recording failed, yet the connection opens, joins and publishes.
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.join("r").await;
    for path in ["/api/rooms/r/presence", "/api/users/ana/presence"] {
        let got = refusal(get(&server.http(path), None).await);
        assert_eq!(got, (503, "unavailable".to_string()), "{path}");
    }
    let (status, v) = server.post("/api/rooms/r/messages", r#"{"data":1}"#).await;
    assert_eq!((status, &v["local_recipients"]), (200, &json!(1)), "{v}");
    assert_eq!(c.expect_json("message").await["data"], 1);
}

#[tokio::test]
async fn publishes_say_how_many_local_connections_they_reached() {
    let server = server(false).await;
    let mut ana1 = as_user(&server, "/ws/chat", "ana").await;
    let mut ana2 = as_user(&server, "/ws/notifications", "ana").await;
    let mut bob = as_user(&server, "/ws/chat", "bob").await;
    ana1.join("team").await;
    bob.join("team").await;
    let publish = |path: &str, body: &str| {
        let url = server.http(path);
        let body = body.to_string();
        async move { post(&url, &body, None).await }
    };

    let (status, v) = publish("/api/rooms/team/messages", r#"{"data":1}"#).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["local_recipients"], 2, "{v}");
    let (_, v) = publish("/api/users/ana/messages", r#"{"data":2}"#).await;
    assert_eq!(
        v,
        json!({"status": "published", "user": "ana", "offset": 1, "epoch": v["epoch"], "local_recipients": 2})
    );
    let (_, v) = publish("/api/broadcast", r#"{"data":3}"#).await;
    assert_eq!(
        v,
        json!({"status": "published", "broadcast": true, "offset": 1, "epoch": v["epoch"], "local_recipients": 3})
    );
    // Accepted, reaching no one here.
    let (_, v) = publish("/api/rooms/empty/messages", r#"{"data":4}"#).await;
    assert_eq!(v["local_recipients"], 0, "{v}");
    let (_, v) = publish("/api/users/nobody/messages", r#"{"data":5}"#).await;
    assert_eq!(v["local_recipients"], 0, "{v}");
    // A duplicate delivered nothing.
    let keyed = r#"{"data":6,"idempotency_key":"k-1"}"#;
    let (_, first) = publish("/api/rooms/team/messages", keyed).await;
    assert_eq!(first["local_recipients"], 2, "{first}");
    let (_, again) = publish("/api/rooms/team/messages", keyed).await;
    assert_eq!(
        (&again["duplicate"], &again["local_recipients"]),
        (&json!(true), &json!(0)),
        "{again}"
    );
    // Every count was real: each recipient got each message once.
    for (c, expected) in [(&mut ana1, vec![1, 2, 3, 6]), (&mut bob, vec![1, 3, 6])] {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(c.expect_json("message").await["data"].clone());
        }
        assert_eq!(got, expected.iter().map(|n| json!(n)).collect::<Vec<_>>());
    }
    for n in [2, 3] {
        assert_eq!(ana2.expect_json("message").await["data"], n);
    }
}
