//! The embedded example over real sockets: own routes, own authenticator,
//! own layer, own endpoint and Switchboard's endpoints on one port, and
//! publishing from own handlers.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start() -> std::net::SocketAddr {
    let shop = embedded_example::Shop::new();
    let app = embedded_example::app(&shop);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::serve(
        listener,
        app,
        shop.node,
        std::future::pending(),
    ));
    addr
}

/// Logs in through the shop's own route; returns the session cookie.
async fn login(addr: std::net::SocketAddr, user: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/login"))
        .json(&json!({ "user": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    cookie.split(';').next().unwrap().to_string()
}

async fn connect(addr: std::net::SocketAddr, path: &str, cookie: &str) -> Ws {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn own_routes_and_switchboard_share_one_port() {
    let addr = start().await;
    let page = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("shop front"));
    let health: Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let cookie = login(addr, "ana").await;
    let mut echo = connect(addr, "/ws/echo", &cookie).await;
    echo.send(Message::text("ping")).await.unwrap();
    assert_eq!(echo.next().await.unwrap().unwrap(), Message::text("ping"));
}

#[tokio::test]
async fn the_own_authenticator_admits_logged_in_users_only() {
    let addr = start().await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws/chat")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let cookie = login(addr, "ana").await;
    let mut ws = connect(addr, "/ws/chat", &cookie).await;
    assert_eq!(next_json(&mut ws).await["user"], "ana");
    // The layer saw both upgrade attempts, and no plain HTTP request.
    let stats: Value = reqwest::get(format!("http://{addr}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["upgrade_attempts"], 2);
}

#[tokio::test]
async fn the_custom_endpoint_shares_cursor_positions() {
    let addr = start().await;
    let mut a = connect(addr, "/ws/cursors", &login(addr, "ana").await).await;
    let mut b = connect(addr, "/ws/cursors", &login(addr, "bob").await).await;
    // Both joined in on_open; wait until b is in before a moves.
    b.send(Message::text("not a position")).await.unwrap();
    assert!(
        next_json(&mut b).await["error"]
            .as_str()
            .unwrap()
            .contains("x")
    );
    a.send(Message::text(r#"{"x":1.5,"y":2}"#)).await.unwrap();
    let m = next_json(&mut b).await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["room"], "cursors");
    assert_eq!(
        (m["data"]["x"].as_f64(), m["data"]["y"].as_f64()),
        (Some(1.5), Some(2.0))
    );
    assert_eq!(m["data"]["user"], "ana");
    assert_eq!(m["from"], "ana");
}

#[tokio::test]
async fn own_http_handlers_publish_to_rooms_and_users() {
    let addr = start().await;
    let mut watcher = connect(addr, "/ws/chat", &login(addr, "staff").await).await;
    let mut customer = connect(addr, "/ws/notifications", &login(addr, "cleo").await).await;
    assert_eq!(next_json(&mut watcher).await["type"], "welcome");
    assert_eq!(next_json(&mut customer).await["user"], "cleo");
    watcher
        .send(Message::text(r#"{"type":"join","room":"orders"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut watcher).await["type"], "joined");

    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .json(&json!({"id": 42, "customer": "cleo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"order": 42, "room_offset": 1}));
    assert_eq!(
        next_json(&mut watcher).await,
        json!({"type":"message","room":"orders","offset":1,"data":{"order":42}})
    );
    assert_eq!(
        next_json(&mut customer).await,
        json!({"type":"message","user":"cleo","offset":1,"data":{"text":"order 42 confirmed"}})
    );
}
