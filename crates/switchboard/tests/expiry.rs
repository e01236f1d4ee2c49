//! Credentials that expire, over a session run through the public transport
//! API (`Node::admit`, `WebSocket::new`, `transport::run`) on an in-memory
//! pipe, with time paused: expiry closes with 4004, a refresh extends it, a
//! refused refresh leaves it, and the JWT leeway that admitted a token keeps
//! it alive.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard::auth::Identity;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::transport::{self, WebSocket};
use switchboard::{Endpoint, Node};
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

type Opened = (
    Node,
    WebSocketStream<DuplexStream>,
    tokio::task::JoinHandle<()>,
);

/// A session over an in-memory pipe, with a real client on the other end.
async fn open_on(node: Node, endpoint: Arc<Endpoint>, identity: Identity) -> Opened {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let mut conn = node.admit(identity, &endpoint, None, None);
    let task = tokio::spawn(async move {
        let ws = WebSocket::new(server_io, &[], &conn);
        transport::run(ws, &mut conn, &endpoint).await
    });
    let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    (node, client, task)
}

async fn next_json(ws: &mut WebSocketStream<DuplexStream>) -> serde_json::Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

const SECRET: &[u8] = b"session-test-secret-32-bytes-long";

fn token(sub: &str, valid_for: Duration) -> String {
    let exp = (std::time::SystemTime::now() + valid_for)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

async fn jwt_session(valid_for: Duration) -> Opened {
    let endpoint = Endpoint::chat("/chat");
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    let identity = jwt.verify(&token("ana", valid_for)).unwrap();
    let node = Node::builder()
        .endpoint(endpoint.clone())
        .authenticator(jwt)
        .build()
        .unwrap();
    open_on(node, Arc::new(endpoint), identity).await
}

/// Reads (answering pings) until a close frame; returns its code and the
/// virtual time it took.
async fn close_code(ws: &mut WebSocketStream<DuplexStream>) -> (u16, Duration) {
    let start = Instant::now();
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), start.elapsed()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn expired_credentials_close_the_connection_with_4004() {
    let (_node, mut ws, _task) = jwt_session(Duration::from_secs(90)).await;
    assert_eq!(next_json(&mut ws).await["user"], "ana");
    let (code, after) = close_code(&mut ws).await;
    assert_eq!(code, 4004);
    // exp plus the 5 s leeway; exp has one-second resolution.
    assert!(
        after > Duration::from_secs(93) && after <= Duration::from_secs(96),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_before_expiry_keeps_the_connection_open() {
    let (_node, mut ws, task) = jwt_session(Duration::from_secs(90)).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let fresh = token("ana", Duration::from_secs(3600));
    ws.send(Message::text(format!(
        r#"{{"type":"refresh","token":"{fresh}","id":1}}"#
    )))
    .await
    .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_u64()),
        (Some("refreshed"), Some(1))
    );
    // Well past the first expiry, the connection is still open.
    let read = async { while let Some(Ok(_)) = ws.next().await {} };
    assert!(
        tokio::time::timeout(Duration::from_secs(600), read)
            .await
            .is_err()
    );
    assert!(!task.is_finished());
    // And the new expiry closes it in its turn.
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 4004);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_leaves_the_old_expiry_in_force() {
    let (_node, mut ws, _task) = jwt_session(Duration::from_secs(90)).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let other = token("bob", Duration::from_secs(3600));
    ws.send(Message::text(format!(
        r#"{{"type":"refresh","token":"{other}","id":2}}"#
    )))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");
    let (code, after) = close_code(&mut ws).await;
    assert_eq!(code, 4004);
    assert!(after <= Duration::from_secs(96), "{after:?}");
}

#[tokio::test(start_paused = true)]
async fn a_token_admitted_within_the_leeway_lives_until_the_leeway_ends() {
    let endpoint = Endpoint::chat("/chat");
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    // Expired two seconds ago, within the default 5 s leeway.
    let exp = std::time::SystemTime::now() - Duration::from_secs(2);
    let exp = exp.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": "ana", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let identity = jwt.verify(&token).unwrap();
    let node = Node::builder()
        .endpoint(endpoint.clone())
        .authenticator(jwt)
        .build()
        .unwrap();
    let (_node, mut ws, _task) = open_on(node, Arc::new(endpoint), identity).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let (code, after) = close_code(&mut ws).await;
    assert_eq!(code, 4004);
    assert!(
        after >= Duration::from_secs(1) && after <= Duration::from_secs(4),
        "{after:?}"
    );
}
