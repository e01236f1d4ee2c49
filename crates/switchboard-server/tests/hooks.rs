//! The binary's hook settings: flags and environment turn on the connect
//! hook and `/ws/chat`'s rpc hook against a real application, and settings
//! that cannot work stop the server at startup with a message naming them.

mod cluster;

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use switchboard::axum::Router;
use switchboard::axum::http::{HeaderMap, StatusCode};
use switchboard::axum::response::{IntoResponse, Response};
use switchboard::axum::routing::post;
use switchboard::hooks::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use switchboard_testkit::ws::{Client, request};

const SECRET: &str = "binary-hooks-secret-0123";

/// The application: the connect hook knows one session; rpc echoes.
async fn hook(headers: HeaderMap, body: String) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if h(SIGNATURE_HEADER) != sign(SECRET.as_bytes(), &h(TIMESTAMP_HEADER), body.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let req: Value = serde_json::from_str(&body).unwrap();
    if req.get("cookies").is_some() {
        return match req["cookies"]["sid"].as_str() {
            Some("ok") => switchboard::axum::Json(json!({"user": "ann"})).into_response(),
            _ => (
                StatusCode::UNAUTHORIZED,
                switchboard::axum::Json(json!({"reason": "log in first"})),
            )
                .into_response(),
        };
    }
    if req["data"]["text"] == "nope" {
        return (
            StatusCode::FORBIDDEN,
            switchboard::axum::Json(json!({"message": "not here", "reason": "nope"})),
        )
            .into_response();
    }
    if req.get("room").is_some() {
        return switchboard::axum::Json(json!({})).into_response();
    }
    if req["method"] == "message" {
        // An app endpoint: every message, answered in the app's own format.
        return switchboard::axum::Json(json!({"data": {"you said": req["data"]}})).into_response();
    }
    switchboard::axum::Json(json!({"data": {"echo": req["data"], "user": req["client"]["user"]}}))
        .into_response()
}

/// The application on a port of its own; its base URL.
async fn start_app() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/connect", post(hook))
        .route("/publish", post(hook))
        .route("/rpc", post(hook));
    tokio::spawn(async move { switchboard::axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn endpoints_declared_in_the_file_replace_the_standard_ones() {
    let base = start_app().await;
    let dir = std::env::temp_dir().join(format!("sb-endpoints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchboard.toml");
    std::fs::write(
        &file,
        format!(
            r#"
hooks_secret = "{SECRET}"
hook_publish_url = "{base}/publish"
hook_rpc_url = "{base}/rpc"

[[endpoint]]
path = "/ws/support"
kind = "chat"
hooks = ["publish"]

[[endpoint]]
path = "/ws/bot"
kind = "app"

[[endpoint]]
path = "/ws/plain"
kind = "echo"
"#
        ),
    )
    .unwrap();
    let args: Vec<String> = ["--port", "0", "--config", file.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let node = cluster::Node::start(&args).await;

    let (status, _) =
        switchboard_testkit::ws::expect_refused(format!("{}/ws/chat", node.ws())).await;
    assert_eq!(status, 404, "the standard endpoints are gone");

    let mut support = Client::connect(format!("{}/ws/support", node.ws())).await;
    support.join("help").await;
    support
        .send(json!({"type": "publish", "room": "help", "data": {"text": "nope"}, "id": 1}))
        .await;
    assert_eq!(
        support.next_json().await,
        json!({"type": "error", "id": 1, "code": "refused", "message": "not here", "reason": "nope"})
    );
    support
        .send(json!({"type": "rpc", "method": "x", "id": 2}))
        .await;
    assert_eq!(
        support.next_json().await["code"],
        "unknown_type",
        "this endpoint was given the publish hook only"
    );

    let mut bot = Client::connect(format!("{}/ws/bot", node.ws())).await;
    bot.send_text(r#"{"hello": 1}"#).await;
    assert_eq!(bot.next_json().await, json!({"you said": {"hello": 1}}));
    bot.send_text("plain words").await;
    assert_eq!(bot.next_json().await, json!({"you said": "plain words"}));

    let mut plain = Client::open(format!("{}/ws/plain", node.ws())).await;
    plain.send_text("echo?").await;
    assert_eq!(
        plain.next_message().await,
        switchboard_testkit::ws::Message::text("echo?")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_endpoint_error_names_the_endpoint_and_the_key() {
    let dir = std::env::temp_dir().join(format!("sb-endpoints-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[endpoint]]\npath = \"/ws/x\"\nkind = \"chat\"\nhoks = [\"join\"]\n",
    )
    .unwrap();
    let err = refused(&["--config", file.to_str().unwrap()]);
    assert!(
        err.contains("endpoint /ws/x") && err.contains("hoks"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[[endpoint]]\npath = \"/ws/x\"\nkind = \"chat\"\nhooks = [\"join\"]\n",
    )
    .unwrap();
    let err = refused(&["--config", file.to_str().unwrap()]);
    assert!(
        err.contains("endpoint /ws/x") && err.contains("hooks"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn hook_flags_turn_on_the_connect_and_rpc_hooks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/connect", post(hook))
        .route("/rpc", post(hook));
    tokio::spawn(async move { switchboard::axum::serve(listener, app).await });

    let args: Vec<String> = [
        "--port",
        "0",
        "--hook-connect-url",
        &format!("{base}/connect"),
        "--hook-rpc-url",
        &format!("{base}/rpc"),
        "--hooks-secret",
        SECRET,
        "--hook-forward-cookies",
        "sid",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = cluster::Node::start(&args).await;
    let url = format!("{}/ws/chat", node.ws());

    let (status, body) =
        switchboard_testkit::ws::expect_refused(request(&url, &[("cookie", "sid=nope")])).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("log in first"), "{body}");

    let mut ann = Client::connect(request(&url, &[("cookie", "sid=ok")])).await;
    assert_eq!(ann.user(), "ann");
    ann.send(json!({"type": "rpc", "method": "echo", "data": [1, 2], "id": 3}))
        .await;
    assert_eq!(
        ann.next_json().await,
        json!({"type": "rpc_result", "id": 3, "data": {"echo": [1, 2], "user": "ann"}})
    );
}

/// Runs the binary with `args`, which must stop it at startup; returns its
/// stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--port", "0"])
        .args(args)
        .env_remove("PORT")
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard");
    assert!(!out.status.success(), "{args:?} should stop the server");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hook_settings_that_cannot_work_stop_the_server_naming_them() {
    let err = refused(&["--hook-rpc-url", "http://127.0.0.1:9/rpc"]);
    assert!(err.contains("hooks_secret"), "{err}");
    let err = refused(&[
        "--hook-rpc-url",
        "http://127.0.0.1:9/rpc",
        "--hooks-secret",
        "short",
    ]);
    assert!(err.contains("at least 16 bytes"), "{err}");
    let err = refused(&[
        "--hook-publish-url",
        "ftp://example/x",
        "--hooks-secret",
        SECRET,
    ]);
    assert!(err.contains("must start with http://"), "{err}");
    let err = refused(&["--hook-on-failure", "maybe"]);
    assert!(err.contains("hook-on-failure"), "{err}");
}
