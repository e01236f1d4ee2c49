//! Every rejection and bad input named in the protocol, each with the exact
//! status, error frame or close code.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::Config;
use switchboard_testkit::ws::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

#[tokio::test]
async fn upgrade_to_an_unknown_path_is_404_before_any_handshake() {
    let server = TestServer::start_default().await;
    let (status, _) = upgrade_status(&server.ws("/ws/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(server.node.stats().snapshot().connections_total, 0);
}

#[tokio::test]
async fn plain_get_on_a_websocket_path_is_426_with_instructions() {
    let server = TestServer::start_default().await;
    for path in ["/ws/echo", "/ws/chat", "/ws/notifications"] {
        let resp = reqwest::get(server.http(path)).await.unwrap();
        assert_eq!(resp.status(), 426, "{path}");
        assert_eq!(resp.headers()["upgrade"], "websocket");
        let body = resp.text().await.unwrap();
        assert_eq!(
            body,
            format!(
                "426 Upgrade Required: {path} is a WebSocket endpoint. Connect with a \
                 WebSocket client, for example from a browser console: \
                 new WebSocket(\"ws://\" + location.host + \"{path}\")\n"
            )
        );
    }
}

/// A proxy that drops `Upgrade` and `Connection` forwards the rest of the
/// handshake: the 426 says so, unlike the one for a plain GET.
#[tokio::test]
async fn a_handshake_without_its_upgrade_headers_is_426_naming_the_proxy() {
    let server = TestServer::start_default().await;
    let client = reqwest::Client::new();
    let resp = client
        .get(server.http("/ws/chat"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    assert_eq!(
        resp.text().await.unwrap(),
        "426 Upgrade Required: /ws/chat is a WebSocket endpoint. The request carries \
         Sec-WebSocket-* headers but not Upgrade: websocket and Connection: Upgrade: a proxy in \
         front of this server dropped them. A proxy must pass both (nginx: \
         proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
         proxy_set_header Connection \"upgrade\"; see docs/deploy.md).\n"
    );
}

#[tokio::test]
async fn malformed_handshakes_are_refused_with_their_status() {
    let server = TestServer::start_default().await;
    let client = reqwest::Client::new();
    let base = || {
        client
            .get(server.http("/ws/chat"))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
    };
    let resp = base()
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "missing key");
    let resp = base()
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "too-short")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "bad key");
    let resp = base()
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426, "unsupported version");
    assert_eq!(resp.headers()["sec-websocket-version"], "13");
    assert_eq!(
        resp.text().await.unwrap(),
        "426 Upgrade Required: /ws/chat is a WebSocket endpoint. This server speaks \
         WebSocket version 13 (RFC 6455); the request asked for version \"8\".\n"
    );
    let resp = base()
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426, "no version");
    assert_eq!(
        resp.text().await.unwrap(),
        "426 Upgrade Required: /ws/chat is a WebSocket endpoint. This server speaks \
         WebSocket version 13 (RFC 6455); the request sends no Sec-WebSocket-Version.\n"
    );
    let resp = client
        .post(server.http("/ws/chat"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405, "POST is not routed to the upgrade");
}

async fn expect_error(c: &mut Client, sent: &str, code: &str, id: Option<u64>, mentions: &str) {
    c.send_text(sent).await;
    let e = c.next_json().await;
    assert_eq!(e["type"], "error", "for {sent}: {e}");
    assert_eq!(e["code"], code, "for {sent}: {e}");
    assert_eq!(e["id"].as_u64(), id, "for {sent}: {e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(mentions),
        "for {sent}: {message:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let server = TestServer::start_default().await;
    let mut bystander = connect(&server.ws("/ws/chat")).await;
    bystander.join("lobby").await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    expect_error(&mut c, "{not json", "bad_json", None, "malformed JSON").await;
    expect_error(&mut c, "[1,2,3]", "bad_json", None, "JSON object").await;
    expect_error(&mut c, "42", "bad_json", None, "JSON object").await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":"a","type":"leave"}"#,
        "bad_json",
        None,
        "duplicate field",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"room":"lobby","id":1}"#,
        "missing_field",
        Some(1),
        "type",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"shout","id":2}"#,
        "unknown_type",
        Some(2),
        "shout",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join","id":3}"#,
        "missing_field",
        Some(3),
        "room",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"publish","room":"lobby","id":4}"#,
        "missing_field",
        Some(4),
        "data",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":7,"id":5}"#,
        "invalid_field",
        Some(5),
        "room",
    )
    .await;
    expect_error(&mut c, r#"{"type":true}"#, "invalid_field", None, "type").await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":"a","id":-1}"#,
        "invalid_field",
        None,
        "id",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":"a","id":"7"}"#,
        "invalid_field",
        None,
        "id",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":"","id":6}"#,
        "invalid_room",
        Some(6),
        "empty",
    )
    .await;
    let long = "r".repeat(129);
    expect_error(
        &mut c,
        &format!(r#"{{"type":"join","room":"{long}","id":7}}"#),
        "invalid_room",
        Some(7),
        "at most 128",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join","room":"a b","id":8}"#,
        "invalid_room",
        Some(8),
        "' '",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"publish","room":"x/y","data":1,"id":9}"#,
        "invalid_room",
        Some(9),
        "'/'",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"leave","room":"*","id":10}"#,
        "invalid_room",
        Some(10),
        "'*'",
    )
    .await;
    // Still open, still working, and nobody else noticed anything.
    c.join("lobby").await;
    c.send(json!({"type":"publish","room":"lobby","data":"ok","id":11}))
        .await;
    let got: Vec<Value> = vec![c.next_json().await, c.next_json().await];
    assert!(
        got.iter().any(|v| v["type"] == "ack" && v["id"] == 11),
        "{got:?}"
    );
    let m = bystander.next_json().await;
    assert_eq!(
        (m["type"].as_str(), m["data"].as_str()),
        (Some("message"), Some("ok"))
    );
}

#[tokio::test]
async fn too_many_rooms_is_an_error_frame() {
    let config = Config::builder()
        .max_rooms_per_connection(2)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.join("a").await;
    c.join("b").await;
    c.join("a").await; // joining again is not a new room
    expect_error(
        &mut c,
        r#"{"type":"join","room":"c","id":1}"#,
        "too_many_rooms",
        Some(1),
        "2",
    )
    .await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let config = Config::builder().max_message_size(1024).build().unwrap();
    let server = TestServer::start(config).await;
    let mut echo = connect_raw(&server.ws("/ws/echo")).await;
    echo.send_text(&"x".repeat(1024)).await;
    assert_eq!(echo.next_message().await.len(), 1024);
    echo.send_text(&"x".repeat(1025)).await;
    assert_eq!(echo.expect_close().await.0, 1009);
    // The default limit is 64 KiB.
    let server = TestServer::start_default().await;
    let mut chat = connect(&server.ws("/ws/chat")).await;
    chat.send_text(&format!(
        r#"{{"type":"publish","room":"r","data":"{}"}}"#,
        "x".repeat(64 * 1024)
    ))
    .await;
    assert_eq!(chat.expect_close().await.0, 1009);
}

#[tokio::test]
async fn binary_frames_on_chat_close_with_1003() {
    let server = TestServer::start_default().await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.send_message(Message::binary(vec![1, 2, 3])).await;
    let (code, reason) = c.expect_close().await;
    assert_eq!(code, 1003);
    assert!(reason.contains("binary"), "{reason}");
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let server = TestServer::start_default().await;
    let mut ws = connect_raw(&server.ws("/ws/echo")).await;
    let frame = Frame::from_payload(
        FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        },
        vec![0xff, 0xfe, 0xfd].into(),
    );
    ws.send_message(Message::Frame(frame)).await;
    assert_eq!(ws.expect_close().await.0, 1007);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_slow_consumer_and_nobody_else_waits() {
    let config = Config::builder()
        .outbound_queue_frames(16)
        .outbound_queue_bytes(1024 * 1024)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let mut slow = connect(&server.ws("/ws/chat")).await;
    let mut fast = connect(&server.ws("/ws/chat")).await;
    slow.join("feed").await;
    fast.join("feed").await;
    // Big messages fill the kernel buffers quickly; the slow client reads
    // nothing until the server has given up on it.
    let payload = format!(r#"{{"data":"{}"}}"#, "p".repeat(60_000));
    let fast_reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        while offsets.len() < 400 {
            let m = fast.next_json().await;
            offsets.push(m["offset"].as_u64().unwrap());
        }
        (offsets, fast)
    });
    for _ in 0..400 {
        let (status, _) = server.post("/api/rooms/feed/messages", &payload).await;
        assert_eq!(status, 200);
    }
    eventually("slow consumer detected", || {
        server.node.stats().snapshot().slow_consumers == 1
    })
    .await;
    let (offsets, _fast) = fast_reader.await.unwrap();
    assert_eq!(
        offsets,
        (1..=400).collect::<Vec<u64>>(),
        "the fast reader got everything in order"
    );
    // What was queued before the server gave up may still come first.
    let (_queued, code, _) = slow.frames_until_close().await;
    assert_eq!(code, 4000);
    eventually("slow consumer left the room", || {
        server
            .node
            .local_members(&switchboard::broker::Topic::Room("feed".into()))
            == 1
    })
    .await;
}

#[tokio::test]
async fn pings_from_clients_get_pongs() {
    let server = TestServer::start_default().await;
    let mut ws = connect_raw(&server.ws("/ws/echo")).await;
    ws.send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next_message())
        .await
        .unwrap();
    assert_eq!(reply, Message::Pong(b"are you there".to_vec().into()));
}
