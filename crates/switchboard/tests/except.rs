//! Publishing to everyone but one connection: a client's `publish` with
//! `except_self`, and the HTTP API's `except` (a connection id, as the
//! `welcome` frame gives it), over real sockets.

mod common;

use common::*;
use serde_json::json;
use switchboard::Node;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};

const SECRET: &[u8] = b"except-test-secret-32-bytes-long!";

fn token(sub: &str) -> String {
    common::hs256_token(SECRET, sub)
}

async fn server() -> TestServer {
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    TestServer::start_with(Node::builder().default_endpoints().authenticator(jwt)).await
}

async fn member(server: &TestServer, path: &str, user: &str, room: Option<&str>) -> Client {
    let mut c = connect(&format!("{}?token={}", server.ws(path), token(user))).await;
    assert_eq!(c.user(), user);
    if let Some(room) = room {
        c.join(room).await;
    }
    c
}

#[tokio::test]
async fn except_self_reaches_every_member_but_the_publishing_connection() {
    let server = server().await;
    // Two tabs of ana, and bo.
    let mut ana = member(&server, "/ws/chat", "ana", Some("r")).await;
    let mut ana_tab = member(&server, "/ws/chat", "ana", Some("r")).await;
    let mut bo = member(&server, "/ws/chat", "bo", Some("r")).await;

    ana.send(
        json!({"type": "publish", "room": "r", "id": 1, "data": {"n": 1}, "except_self": true}),
    )
    .await;
    let ack = ana.next_json().await;
    assert_eq!(ack, json!({"type": "ack", "id": 1, "offset": 1}));
    for other in [&mut ana_tab, &mut bo] {
        let m = other.next_json().await;
        assert_eq!(
            (m["type"].as_str(), m["offset"].as_u64()),
            (Some("message"), Some(1))
        );
        assert_eq!(m["data"], json!({"n": 1}));
        assert_eq!(m["from"], "ana");
    }
    ana.expect_nothing_but_barrier().await;

    // Without the flag (or with it false) the publisher hears its message.
    ana.send(json!({"type": "publish", "room": "r", "id": 2, "data": 2, "except_self": false}))
        .await;
    let mut kinds = [ana.next_json().await, ana.next_json().await];
    kinds.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(kinds[0]["type"], "ack");
    assert_eq!(
        (kinds[1]["type"].as_str(), kinds[1]["offset"].as_u64()),
        (Some("message"), Some(2))
    );

    // The message left out of the live delivery is in the room's history:
    // a connection that recovers from before it receives it.
    let mut late = member(&server, "/ws/chat", "ana", None).await;
    let epoch = ack_epoch(&mut bo).await;
    late.send(
        json!({"type": "join", "room": "r", "id": 9, "since": {"offset": 0, "epoch": epoch}}),
    )
    .await;
    for offset in [1, 2] {
        let m = late.next_json().await;
        assert_eq!(
            (m["type"].as_str(), m["offset"].as_u64()),
            (Some("message"), Some(offset))
        );
    }
    let joined = late.next_json().await;
    assert_eq!(
        (joined["type"].as_str(), joined["recovered"].as_bool()),
        (Some("joined"), Some(true))
    );
}

/// The room's epoch, from a `presence`-free `join` reply of a fresh member.
async fn ack_epoch(c: &mut Client) -> String {
    c.send(json!({"type": "join", "room": "r", "id": 77})).await;
    loop {
        let f = c.next_json().await;
        if f["type"] == "joined" {
            return f["epoch"]
                .as_str()
                .expect("joined carries the epoch")
                .to_string();
        }
    }
}

#[tokio::test]
async fn except_self_must_be_a_boolean() {
    let server = server().await;
    let mut ana = member(&server, "/ws/chat", "ana", Some("r")).await;
    ana.send(json!({"type": "publish", "room": "r", "id": 4, "data": 1, "except_self": "yes"}))
        .await;
    assert_eq!(
        ana.next_json().await,
        json!({"type": "error", "id": 4, "code": "invalid_field",
               "message": "field \"except_self\" must be a boolean"})
    );
    ana.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn the_http_api_leaves_out_the_connection_it_names() {
    let server = server().await;
    let mut ana = member(&server, "/ws/chat", "ana", Some("r")).await;
    let mut bo = member(&server, "/ws/chat", "bo", Some("r")).await;
    let mut ana_notes = member(&server, "/ws/notifications", "ana", None).await;
    let mut ana_notes_tab = member(&server, "/ws/notifications", "ana", None).await;
    let except = ana.conn().to_string();

    // A room: everyone but ana's connection; the local count says so.
    let (status, body) = server
        .post(
            "/api/rooms/r/messages",
            &json!({"data": {"said": "hi"}, "except": except}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["local_recipients"], 1);
    let m = bo.next_json().await;
    assert_eq!(
        (m["type"].as_str(), m["data"].clone()),
        (Some("message"), json!({"said": "hi"}))
    );
    ana.expect_nothing_but_barrier().await;

    // A user: every connection of the user but the named one.
    let except = ana_notes.conn().to_string();
    let (status, body) = server
        .post(
            "/api/users/ana/messages",
            &json!({"data": "note", "except": except}).to_string(),
        )
        .await;
    // ana's chat connection takes user messages too.
    assert_eq!(
        (status, body["local_recipients"].clone()),
        (200, json!(2)),
        "{body}"
    );
    assert_eq!(ana_notes_tab.next_json().await["data"], "note");
    assert_eq!(ana.next_json().await["data"], "note");
    ana_notes.expect_nothing_but_barrier().await;

    // Everyone.
    let (status, body) = server
        .post(
            "/api/broadcast",
            &json!({"data": "all", "except": except}).to_string(),
        )
        .await;
    assert_eq!(
        (status, body["local_recipients"].clone()),
        (200, json!(3)),
        "{body}"
    );
    assert_eq!(ana_notes_tab.next_json().await["data"], "all");
    assert_eq!(ana.next_json().await["data"], "all");
    assert_eq!(bo.next_json().await["data"], "all");
    ana_notes.expect_nothing_but_barrier().await;

    // A connection id of another node (or one that left) excludes nobody here.
    let (status, body) = server
        .post(
            "/api/rooms/r/messages",
            &json!({"data": 3, "except": "ffffffff-1"}).to_string(),
        )
        .await;
    assert_eq!(
        (status, body["local_recipients"].clone()),
        (200, json!(2)),
        "{body}"
    );
    assert_eq!(ana.next_json().await["data"], 3);
    assert_eq!(bo.next_json().await["data"], 3);
}

#[tokio::test]
async fn the_http_api_refuses_an_except_that_is_not_a_connection_id() {
    let server = server().await;
    let mut bo = member(&server, "/ws/chat", "bo", Some("r")).await;
    for (except, message) in [
        (
            json!("bo"),
            "except \"bo\" is not a connection id (as the welcome frame's conn gives it)",
        ),
        (
            json!("a b-1"),
            "except \"a b-1\" is not a connection id (as the welcome frame's conn gives it)",
        ),
        (json!(7), "field \"except\" must be a string"),
        (json!(null), "field \"except\" must be a string"),
    ] {
        let (status, body) = server
            .post(
                "/api/rooms/r/messages",
                &json!({"data": 1, "except": except}).to_string(),
            )
            .await;
        assert_eq!(
            (status, body),
            (
                400,
                json!({"error": {"code": "invalid_field", "message": message}})
            ),
            "{except}"
        );
    }
    // Nothing refused was published.
    bo.expect_nothing_but_barrier().await;
}
