//! The embedded example over real sockets: own routes, own endpoint and
//! Switchboard's endpoints on one port, and publishing from own handlers.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn start() -> std::net::SocketAddr {
    let node = embedded_example::node();
    let app = embedded_example::app(&node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::serve(
        listener,
        app,
        node,
        std::future::pending(),
    ));
    addr
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
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
    let (mut echo, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo"))
        .await
        .unwrap();
    echo.send(Message::text("ping")).await.unwrap();
    assert_eq!(echo.next().await.unwrap().unwrap(), Message::text("ping"));
}

#[tokio::test]
async fn the_custom_endpoint_shares_cursor_positions() {
    let addr = start().await;
    let url = format!("ws://{addr}/ws/cursors");
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
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
    assert_eq!(m["data"]["user"], m["from"]);
}

#[tokio::test]
async fn own_http_handlers_publish_to_rooms_and_users() {
    let addr = start().await;
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/chat"))
        .await
        .unwrap();
    let (mut customer, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/notifications"))
            .await
            .unwrap();
    assert_eq!(next_json(&mut watcher).await["type"], "welcome");
    let customer_id = next_json(&mut customer).await["user"]
        .as_str()
        .unwrap()
        .to_string();
    watcher
        .send(Message::text(r#"{"type":"join","room":"orders"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut watcher).await["type"], "joined");

    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .json(&json!({"id": 42, "customer": customer_id}))
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
        json!({"type":"message","user":customer_id,"data":{"text":"order 42 confirmed"}})
    );
}
