//! Idempotency keys on publishes, through the HTTP API and `publish` frames:
//! a retry within the window is acknowledged with the first publish's offset
//! and `duplicate: true`, and delivered to no one. Raw clients, real sockets.

mod common;

use serde_json::json;

use common::{TestServer, connect};

#[tokio::test]
async fn an_api_retry_with_the_same_key_is_delivered_once() {
    let server = TestServer::start_default().await;
    let mut member = connect(&server.ws("/ws/chat")).await;
    member.join("r").await;
    let url = server.http("/api/rooms/r/messages");
    let client = reqwest::Client::new();
    let send = |key: Option<&'static str>, body: &'static str| {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let (status, first) = send(Some("order-42"), r#"{"data":1}"#).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first.get("duplicate"), None, "{first}");
    // The header and the body field are one key.
    for (key, body) in [
        (Some("order-42"), r#"{"data":1}"#),
        (None, r#"{"data":1,"idempotency_key":"order-42"}"#),
        (
            Some("order-42"),
            r#"{"data":1,"idempotency_key":"order-42"}"#,
        ),
    ] {
        let (status, again) = send(key, body).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["offset"], first["offset"], "{again}");
        assert_eq!(again["epoch"], first["epoch"], "{again}");
    }
    // Another key is another message; the member saw 1, then 2, nothing
    // in between.
    let (status, next) = send(Some("order-43"), r#"{"data":2}"#).await;
    assert_eq!((status, next["offset"].as_u64()), (200, Some(2)), "{next}");
    assert_eq!(member.next_json().await["data"], 1);
    assert_eq!(member.next_json().await["data"], 2);
    // The same key for a user and for everyone: once each.
    let user_url = server.http(&format!("/api/users/{}/messages", member.user()));
    for expect_dup in [false, true] {
        let resp = client
            .post(&user_url)
            .header("Idempotency-Key", "order-42")
            .body(r#"{"data":"u"}"#)
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v.get("duplicate").is_some(), expect_dup, "{v}");
    }
}

#[tokio::test]
async fn bad_api_keys_are_400_invalid_field() {
    let server = TestServer::start_default().await;
    let client = reqwest::Client::new();
    let url = server.http("/api/rooms/r/messages");
    let long = "k".repeat(129);
    let cases: Vec<(Option<&str>, String, &str)> = vec![
        (Some("a b"), r#"{"data":1}"#.into(), "forbidden character"),
        (Some(&long), r#"{"data":1}"#.into(), "at most 128 bytes"),
        (
            None,
            r#"{"data":1,"idempotency_key":""}"#.into(),
            "must not be empty",
        ),
        (
            None,
            r#"{"data":1,"idempotency_key":7}"#.into(),
            "must be a string",
        ),
        (
            Some("one"),
            r#"{"data":1,"idempotency_key":"two"}"#.into(),
            "differ",
        ),
    ];
    for (header, body, why) in cases {
        let mut req = client.post(&url).body(body.clone());
        if let Some(h) = header {
            req = req.header("Idempotency-Key", h);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_field")),
            "{body}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
}

#[tokio::test]
async fn a_client_retry_with_the_same_key_is_acked_as_a_duplicate_and_delivered_once() {
    let server = TestServer::start_default().await;
    let mut a = connect(&server.ws("/ws/chat")).await;
    let mut b = connect(&server.ws("/ws/chat")).await;
    let mut watcher = connect(&server.ws("/ws/chat")).await;
    watcher.join("r").await;
    a.send(json!({"type":"publish","room":"r","data":"a1","id":1,"idempotency_key":"k"}))
        .await;
    assert_eq!(a.next_json().await, json!({"type":"ack","id":1,"offset":1}));
    a.send(json!({"type":"publish","room":"r","data":"a1","id":2,"idempotency_key":"k"}))
        .await;
    assert_eq!(
        a.next_json().await,
        json!({"type":"ack","id":2,"offset":1,"duplicate":true})
    );
    // Keys are per user: b's "k" is its own.
    b.send(json!({"type":"publish","room":"r","data":"b1","id":3,"idempotency_key":"k"}))
        .await;
    assert_eq!(b.next_json().await, json!({"type":"ack","id":3,"offset":2}));
    let got: Vec<_> = [watcher.next_json().await, watcher.next_json().await]
        .iter()
        .map(|m| (m["data"].clone(), m["offset"].clone()))
        .collect();
    assert_eq!(got, vec![(json!("a1"), json!(1)), (json!("b1"), json!(2))]);
    // A key that breaks the rules: an error carrying the id.
    a.send(json!({"type":"publish","room":"r","data":0,"id":4,"idempotency_key":"a b"}))
        .await;
    let e = a.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("invalid_field"), Some(4)),
        "{e}"
    );
}
