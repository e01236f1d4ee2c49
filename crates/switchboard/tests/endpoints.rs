//! The standard endpoints over real sockets.

mod common;

use common::*;
use serde_json::json;
use switchboard_testkit::ws::Message;

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged() {
    let server = TestServer::start_default().await;
    let mut ws = connect_raw(&server.ws("/ws/echo")).await;
    ws.send_text("héllo").await;
    assert_eq!(ws.next_message().await, Message::text("héllo"));
    let bin = vec![0u8, 159, 146, 150, 255];
    ws.send_message(Message::binary(bin.clone())).await;
    assert_eq!(ws.next_message().await, Message::binary(bin));
    let big = "x".repeat(60_000);
    ws.send_text(&big).await;
    assert_eq!(ws.next_message().await, Message::text(big));
}

#[tokio::test]
async fn chat_welcome_names_a_guest_user_and_the_protocol() {
    let server = TestServer::start_default().await;
    let mut ws = connect_raw(&server.ws("/ws/chat")).await;
    let Message::Text(t) = ws.next_message().await else {
        panic!("text")
    };
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["type"], "welcome");
    assert!(v["user"].as_str().unwrap().starts_with("guest-"));
    assert_eq!(v["protocol"], "switchboard.v1");
    assert_eq!(v["heartbeat_ms"], 30_000);
}

#[tokio::test]
async fn subprotocol_is_selected_when_offered() {
    let server = TestServer::start_default().await;
    let req = ws::request(
        &server.ws("/ws/chat"),
        &[("sec-websocket-protocol", "other, switchboard.v1")],
    );
    let c = Client::open(req).await;
    assert_eq!(
        c.response().headers()["sec-websocket-protocol"],
        "switchboard.v1"
    );
}

#[tokio::test]
async fn chat_members_receive_room_messages_with_increasing_offsets_and_acks() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut b = connect(&server.ws("/ws/chat")).await;
    let joined = a.join("lobby").await;
    assert_eq!(joined["offset"], 0);
    assert!(joined["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    b.join("lobby").await;

    for i in 1..=3u64 {
        a.send(json!({"type":"publish","room":"lobby","data":{"n":i},"id":100+i}))
            .await;
    }
    // The publisher is a member too: it sees its messages and its acks, in order.
    let mut acks = Vec::new();
    let mut own = Vec::new();
    while acks.len() < 3 || own.len() < 3 {
        let v = a.next_json().await;
        match v["type"].as_str().unwrap() {
            "ack" => acks.push((v["id"].as_u64().unwrap(), v["offset"].as_u64().unwrap())),
            "message" => own.push(v["offset"].as_u64().unwrap()),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(acks, vec![(101, 1), (102, 2), (103, 3)]);
    assert_eq!(own, vec![1, 2, 3]);
    for i in 1..=3u64 {
        let m = b.next_json().await;
        assert_eq!(
            m,
            json!({"type":"message","room":"lobby","offset":i,"from":a.user(),"data":{"n":i}})
        );
    }
    // A later joiner starts from the current offset.
    let mut c = connect(&server.ws("/ws/chat")).await;
    assert_eq!(c.join("lobby").await["offset"], 3);
}

#[tokio::test]
async fn payload_is_forwarded_verbatim() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    a.join("r").await;
    a.send_text(r#"{"type":"publish","room":"r","data":{"b": [1, 2.50, "\u00e9"]}}"#)
        .await;
    let Message::Text(t) = a.next_message().await else {
        panic!("message")
    };
    assert!(t.ends_with(r#","data":{"b": [1, 2.50, "\u00e9"]}}"#), "{t}");
}

#[tokio::test]
async fn leave_stops_delivery_and_leaving_twice_is_an_error() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut b = connect(&server.ws("/ws/chat")).await;
    a.join("r").await;
    b.join("r").await;
    a.send(json!({"type":"leave","room":"r","id":5})).await;
    assert_eq!(
        a.next_json().await,
        json!({"type":"left","room":"r","id":5})
    );
    a.send(json!({"type":"leave","room":"r","id":6})).await;
    let e = a.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("not_joined"), Some(6))
    );
    b.send(json!({"type":"publish","room":"r","data":1,"id":1}))
        .await;
    assert_eq!(b.next_json().await["type"], "message");
    assert_eq!(b.next_json().await["type"], "ack");
    a.expect_nothing_but_barrier().await;
    eventually("room has one member", || {
        server
            .node
            .local_members(&switchboard::broker::Topic::Room("r".into()))
            == 1
    })
    .await;
}

#[tokio::test]
async fn publish_does_not_require_membership() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut b = connect(&server.ws("/ws/chat")).await;
    b.join("news").await;
    a.send(json!({"type":"publish","room":"news","data":"hi","id":1}))
        .await;
    assert_eq!(a.next_json().await, json!({"type":"ack","id":1,"offset":1}));
    assert_eq!(b.next_json().await["data"], "hi");
}

#[tokio::test]
async fn notifications_receive_user_messages_and_broadcasts_and_refuse_input() {
    let server = TestServer::start_default().await;
    let mut n = connect(&server.ws("/ws/notifications")).await;
    let user = n.user().to_string();
    let (status, body) = server
        .post(
            &format!("/api/users/{user}/messages"),
            r#"{"data":{"kind":"invoice"}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["epoch"].as_str().map(str::len), Some(16), "{body}");
    assert_eq!(
        body,
        json!({"status":"published","user":user,"offset":1,"epoch":body["epoch"],"local_recipients":1})
    );
    assert_eq!(
        n.next_json().await,
        json!({"type":"message","user":user,"offset":1,"data":{"kind":"invoice"}})
    );
    let (status, _) = server
        .post("/api/broadcast", r#"{"data":"maintenance at 5"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        n.next_json().await,
        json!({"type":"message","broadcast":true,"offset":1,"data":"maintenance at 5"})
    );
    n.send(json!({"type":"publish","room":"r","data":1,"id":9}))
        .await;
    let e = n.next_json().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("read_only"), Some(9))
    );
    n.send(json!({"type":"subscribe","id":5})).await;
    let e = n.next_json().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("read_only"), Some(5))
    );
    n.send_text("anything at all").await;
    assert_eq!(n.next_json().await["code"], "read_only");
    // Still open and still receiving.
    server.post("/api/broadcast", r#"{"data":2}"#).await;
    assert_eq!(n.next_json().await["data"], 2);
}

#[tokio::test]
async fn user_messages_reach_every_connection_of_that_user_only() {
    // Guest ids are per connection, so give two connections one identity with
    // an authenticator that reads it from a header.
    use switchboard::auth::{Authenticator, Identity, Rejection};
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
    let server = TestServer::start_with(
        switchboard::Node::builder()
            .default_endpoints()
            .authenticator(HeaderUser),
    )
    .await;
    async fn as_user(server: &TestServer, path: &str, user: &str) -> Client {
        let c = Client::connect(ws::request(&server.ws(path), &[("x-user", user)])).await;
        assert_eq!(c.user(), user);
        c
    }
    async fn as_user_raw(server: &TestServer, path: &str, user: &str) -> Client {
        Client::open(ws::request(&server.ws(path), &[("x-user", user)])).await
    }
    let mut tab1 = as_user(&server, "/ws/chat", "ana").await;
    let mut tab2 = as_user(&server, "/ws/notifications", "ana").await;
    let mut other = as_user(&server, "/ws/chat", "bob").await;
    let mut echo = as_user_raw(&server, "/ws/echo", "ana").await;
    let (status, _) = server
        .post("/api/users/ana/messages", r#"{"data":"for ana"}"#)
        .await;
    assert_eq!(status, 200);
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(
            c.next_json().await,
            json!({"type":"message","user":"ana","offset":1,"data":"for ana"})
        );
    }
    other.expect_nothing_but_barrier().await;
    // Echo endpoints take neither user messages nor broadcasts.
    server.post("/api/broadcast", r#"{"data":"all"}"#).await;
    assert_eq!(tab1.next_json().await["data"], "all");
    assert_eq!(other.next_json().await["data"], "all");
    // The echo of a message sent after the broadcast comes first: nothing
    // was queued for the echo connection before it.
    echo.send_text("after").await;
    let next = echo.next_message().await;
    assert_eq!(next, Message::text("after"));
}

#[tokio::test]
async fn http_room_publish_reaches_members_with_the_offset_it_reports() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    a.join("deploys").await;
    let (status, body) = server
        .post("/api/rooms/deploys/messages", r#"{"data":{"v":"1.2.3"}}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "published");
    assert_eq!(body["offset"], 1);
    let m = a.next_json().await;
    assert_eq!(
        m,
        json!({"type":"message","room":"deploys","offset":1,"data":{"v":"1.2.3"}})
    );
}

#[tokio::test]
async fn health_reports_ok_and_the_broker() {
    let server = TestServer::start_default().await;
    let resp = reqwest::get(server.http("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["broker"]["kind"], "memory");
    assert_eq!(v["broker"]["connected"], true);
    let metrics = reqwest::get(server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchboard_connections{endpoint="/ws/chat",transport="websocket"} 0"#),
        "{metrics}"
    );
    // The in-memory broker's history, against its budget (128 MiB).
    assert_eq!(v["broker"]["history"]["bytes"], 0, "{v}");
    assert_eq!(v["broker"]["history"]["budget"], 128 << 20, "{v}");
    assert_eq!(v["broker"]["history"]["evicted"], 0, "{v}");
    for line in [
        "switchboard_history_bytes 0",
        "switchboard_history_budget_bytes 134217728",
        "switchboard_history_evicted_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    server
        .post("/api/rooms/r/messages", r#"{"data":"12345"}"#)
        .await;
    let v: serde_json::Value = reqwest::get(server.http("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // One room (256 bytes and its name) and one message (160 and its
    // payload).
    assert_eq!(v["broker"]["history"]["bytes"], 256 + 1 + 160 + 7, "{v}");
}

#[tokio::test]
async fn shutdown_sends_going_away_to_every_connection() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut e = connect_raw(&server.ws("/ws/echo")).await;
    a.join("r").await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(a.expect_close().await.0, 1001);
    assert_eq!(e.expect_close().await.0, 1001);
    stopping.await.unwrap();
}

/// An authenticator attaches typed data to the identity; a handler reads it
/// from the connection, and publishes typed values that reach the room.
#[tokio::test]
async fn handlers_read_the_data_an_authenticator_attached() {
    use switchboard::auth::{Authenticator, Identity, Rejection};
    use switchboard::{Conn, Endpoint, Handler, Inbound};

    #[derive(Debug, PartialEq)]
    struct Tenant(u32);

    struct TenantAuth;
    #[async_trait::async_trait]
    impl Authenticator for TenantAuth {
        async fn authenticate(&self, _req: &http::request::Parts) -> Result<Identity, Rejection> {
            Ok(Identity::user("ana").with_data(Tenant(7)))
        }
    }

    struct Greeter;
    #[async_trait::async_trait]
    impl Handler for Greeter {
        async fn on_open(&self, conn: &mut Conn) {
            let tenant = conn.identity().data::<Tenant>().map(|t| t.0);
            let _ = conn.send_text(&json!({ "tenant": tenant }).to_string());
        }
        async fn on_message(&self, conn: &mut Conn, _message: Inbound) {
            let tenant = conn.identity().data::<Tenant>().map_or(0, |t| t.0);
            let receipt = conn
                .publish_value("tenants", &json!({ "tenant": tenant }))
                .await
                .expect("published");
            let _ = conn.send_text(&json!({ "offset": receipt.offset }).to_string());
        }
    }

    let server = TestServer::start_with(
        switchboard::Node::builder()
            .default_endpoints()
            .endpoint(Endpoint::new("/ws/tenant", Greeter))
            .authenticator(TenantAuth),
    )
    .await;
    let mut member = connect(&server.ws("/ws/chat")).await;
    member.join("tenants").await;
    let mut ws = connect_raw(&server.ws("/ws/tenant")).await;
    let first = ws.next_message().await;
    assert_eq!(first.into_text().unwrap().as_str(), r#"{"tenant":7}"#);
    ws.send_text("go").await;
    let reply = ws.next_message().await;
    assert_eq!(reply.into_text().unwrap().as_str(), r#"{"offset":1}"#);
    assert_eq!(
        member.next_json().await,
        json!({"type":"message","room":"tenants","offset":1,"from":"ana","data":{"tenant":7}})
    );
}
