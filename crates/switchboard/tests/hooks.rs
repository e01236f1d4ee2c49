//! Hooks over HTTP against a real application on a port of its own: the
//! connect hook turns a session cookie into an identity, the join and
//! publish hooks allow, refuse or replace, the rpc hook answers, and an
//! application that is slow, down or answers garbage gets clear statuses
//! and error frames, never a hung connection, and nothing it refused is
//! published. The application checks every request's signature.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::axum::extract::State;
use switchboard::axum::http::{HeaderMap, StatusCode};
use switchboard::axum::response::{IntoResponse, Response};
use switchboard::axum::routing::post;
use switchboard::axum::{Json, Router};
use switchboard::hooks::{
    Application, ConnectHook, EventsHook, Hook, HttpHooks, OnFailure, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, sign,
};
use switchboard::{Endpoint, Node};
use switchboard_testkit::ws::{Client, expect_refused, request};

use common::TestServer;

const SECRET: &[u8] = b"hooks-test-secret-0123456789";

/// What the application saw: each hook's requests, in order.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, Value)>>,
}

impl Seen {
    fn of(&self, hook: &str) -> Vec<Value> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(h, _)| h == hook)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The application: checks the signature, records the request, answers.
async fn app_hook(
    State((seen, hook)): State<(Arc<Seen>, &'static str)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp = header(TIMESTAMP_HEADER);
    if header(SIGNATURE_HEADER) != sign(SECRET, &timestamp, body.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        timestamp.parse::<u64>().unwrap().abs_diff(now) <= 5,
        "a fresh timestamp"
    );
    let req: Value = serde_json::from_str(&body).expect("a JSON request");
    let first_batch = {
        let mut requests = seen.requests.lock().unwrap();
        let first = hook == "events" && !requests.iter().any(|(h, _)| h == "events");
        requests.push((hook.to_string(), req.clone()));
        first
    };
    if first_batch {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    answer(hook, &req).await
}

async fn answer(hook: &str, req: &Value) -> Response {
    let no = |status: StatusCode, message: &str, reason: &str| {
        (status, Json(json!({"message": message, "reason": reason}))).into_response()
    };
    match hook {
        "connect" => match req["cookies"]["sid"].as_str() {
            Some("alice-session") => Json(json!({
                "user": "alice",
                "rooms": ["chat:*"],
                "expires_in": 3600,
                "data": {"db_id": 7},
            }))
            .into_response(),
            Some(sid @ ("renew-me" | "final")) => Json(json!({
                "user": sid,
                "rooms": ["chat:*"],
                "expires_in": 1,
                "data": {"sid": sid},
            }))
            .into_response(),
            Some("bob-session") => {
                Json(json!({"user": "bob", "rooms": ["chat:*"]})).into_response()
            }
            Some("expired") => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"reason": "session expired; log in again"})),
            )
                .into_response(),
            Some("slow") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Json(json!({"user": "late"})).into_response()
            }
            Some("garbage") => "not json".into_response(),
            _ => StatusCode::FORBIDDEN.into_response(),
        },
        "refresh" => match req["user"].as_str() {
            Some("renew-me") => {
                Json(json!({"user": "renew-me", "rooms": ["chat:a"], "expires_in": 3600}))
                    .into_response()
            }
            _ => no(StatusCode::UNAUTHORIZED, "signed out", "signed_out"),
        },
        "join" => match req["room"].as_str() {
            Some("chat:secret") => no(StatusCode::FORBIDDEN, "members only", "members_only"),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
        "publish" => match req["data"]["text"].as_str() {
            Some("spam") => no(StatusCode::UNPROCESSABLE_ENTITY, "no spam here", "spam"),
            Some("stamp") => Json(json!({"data": {"text": "stamp", "id": 42}})).into_response(),
            Some("slow") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                StatusCode::OK.into_response()
            }
            Some("take-your-time") => {
                tokio::time::sleep(Duration::from_millis(400)).await;
                StatusCode::OK.into_response()
            }
            Some("boom") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Some("garbage") => "not json".into_response(),
            _ => Json(json!({})).into_response(),
        },
        // The first batch is refused (in `app_hook`), so that the retry
        // is seen.
        "events" => StatusCode::NO_CONTENT.into_response(),
        "rpc" => match req["method"].as_str() {
            Some("add") => {
                let sum = req["data"]["a"].as_i64().unwrap() + req["data"]["b"].as_i64().unwrap();
                Json(json!({"data": sum})).into_response()
            }
            Some("whoami") => Json(json!({"data": req["client"]})).into_response(),
            Some("nothing") => Json(json!({})).into_response(),
            Some("fail") => no(StatusCode::BAD_REQUEST, "no such order", "not_found"),
            Some("slow") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Json(json!({"data": 1})).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The application on a port of its own; returns its base URL.
async fn start_app(seen: Arc<Seen>) -> String {
    let mut router = Router::new();
    for hook in ["connect", "refresh", "join", "publish", "rpc", "events"] {
        router = router.route(
            &format!("/hooks/{hook}"),
            post(app_hook).with_state((seen.clone(), hook)),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { switchboard::axum::serve(listener, router).await });
    base
}

/// A URL nothing listens on: the application is down.
fn down_url() -> String {
    format!(
        "http://127.0.0.1:{}/hooks",
        switchboard_testkit::free_port()
    )
}

struct Setup {
    server: TestServer,
    seen: Arc<Seen>,
}

const TIMEOUT: Duration = Duration::from_millis(500);

async fn setup_with(base: Option<String>, on_failure: OnFailure) -> Setup {
    let seen = Arc::new(Seen::default());
    let base = match base {
        Some(b) => b,
        None => start_app(seen.clone()).await,
    };
    let app = Application::new(SECRET, 8).unwrap();
    let hook = |name: &str| {
        Hook::new(format!("{base}/hooks/{name}"))
            .timeout(TIMEOUT)
            .on_failure(on_failure)
    };
    let connect = ConnectHook::new(app.clone(), hook("connect"))
        .refresh(hook("refresh"))
        .forward_cookies(&["sid"])
        .forward_headers(&["user-agent"])
        .unwrap();
    let hooks = HttpHooks::new(app.clone())
        .join(hook("join").rooms(&["chat:*"]))
        .publish(hook("publish").rooms(&["chat:*"]))
        .rpc(hook("rpc"));
    let events = EventsHook::new(app.clone(), hook("events")).linger(Duration::from_millis(20));
    let builder = Node::builder()
        .authenticator(connect)
        .events(events)
        .endpoint(Endpoint::chat("/ws/chat").hooks(hooks))
        .endpoint(Endpoint::chat("/ws/plain"));
    Setup {
        server: TestServer::start_with(builder).await,
        seen,
    }
}

async fn setup() -> Setup {
    setup_with(None, OnFailure::Refuse).await
}

async fn login(s: &Setup, sid: &str) -> Client {
    Client::connect(request(
        &s.server.ws("/ws/chat"),
        &[
            ("cookie", &format!("theme=dark; sid={sid}")),
            ("user-agent", "hooks-test"),
        ],
    ))
    .await
}

#[tokio::test]
async fn the_connect_hook_turns_a_session_cookie_into_an_identity() {
    let s = setup().await;
    let alice = login(&s, "alice-session").await;
    assert_eq!(alice.user(), "alice");
    let seen = s.seen.of("connect");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["path"], "/ws/chat");
    assert_eq!(seen[0]["client_ip"], "127.0.0.1");
    assert_eq!(
        seen[0]["cookies"],
        json!({"sid": "alice-session"}),
        "only the cookies configured are forwarded"
    );
    assert_eq!(seen[0]["headers"], json!({"user-agent": "hooks-test"}));
}

#[tokio::test]
async fn the_connect_hooks_refusals_and_failures_have_their_statuses() {
    let s = setup().await;
    let url = s.server.ws("/ws/chat");
    let with_sid = |sid: &str| request(&url, &[("cookie", &format!("sid={sid}"))]);
    let (status, body) = expect_refused(with_sid("expired")).await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["error"],
        json!({"code": "unauthorized", "message": "session expired; log in again"})
    );
    let (status, _) = expect_refused(with_sid("stranger")).await;
    assert_eq!(status, 403);
    for sid in ["slow", "garbage"] {
        let (status, body) = expect_refused(with_sid(sid)).await;
        assert_eq!(status, 503, "{sid}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{sid}: {body}");
    }
}

#[tokio::test]
async fn an_application_that_is_down_refuses_or_lets_through_as_configured() {
    let down = setup_with(Some(down_url()), OnFailure::Refuse).await;
    let (status, _) = expect_refused(down.server.ws("/ws/chat")).await;
    assert_eq!(status, 503);

    let lenient = setup_with(Some(down_url()), OnFailure::Allow).await;
    let mut guest = Client::connect(lenient.server.ws("/ws/chat")).await;
    assert!(guest.user().starts_with("guest-"), "{}", guest.user());
    // Joins and publishes go through as if the application said yes.
    guest.join("chat:room").await;
    guest
        .send(json!({"type": "publish", "room": "chat:room", "data": {"text": "hi"}, "id": 1}))
        .await;
    let mut saw = Vec::new();
    while saw.len() < 2 {
        saw.push(
            guest.next_json().await["type"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    saw.sort();
    assert_eq!(saw, ["ack", "message"]);
    // An rpc has nothing to fall back to.
    guest
        .send(json!({"type": "rpc", "method": "add", "data": {"a": 1, "b": 2}, "id": 2}))
        .await;
    let reply = guest.next_json().await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_u64()),
        (Some("unavailable"), Some(2))
    );
}

#[tokio::test]
async fn the_publish_hook_refuses_replaces_or_passes_and_nothing_refused_is_published() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    let mut bob = login(&s, "bob-session").await;
    bob.join("chat:room").await;

    let publish = |text: &str, id: u64| json!({"type": "publish", "room": "chat:room", "data": {"text": text}, "id": id});
    alice.send(publish("spam", 1)).await;
    assert_eq!(
        alice.next_json().await,
        json!({"type": "error", "id": 1, "code": "refused", "message": "no spam here", "reason": "spam"})
    );
    for (text, id) in [("slow", 2), ("boom", 3), ("garbage", 4)] {
        alice.send(publish(text, id)).await;
        let reply = alice.next_json().await;
        assert_eq!(
            (
                reply["type"].as_str(),
                reply["code"].as_str(),
                reply["id"].as_u64()
            ),
            (Some("error"), Some("unavailable"), Some(id)),
            "{text}: {reply}"
        );
    }
    bob.expect_nothing_but_barrier().await;

    alice.send(publish("stamp", 5)).await;
    assert_eq!(alice.next_json().await["type"], "ack");
    let got = bob.next_json().await;
    assert_eq!(
        got["data"],
        json!({"text": "stamp", "id": 42}),
        "the replacement"
    );
    assert_eq!(got["from"], "alice");

    alice.send(publish("hello", 6)).await;
    assert_eq!(alice.next_json().await["type"], "ack");
    assert_eq!(bob.next_json().await["data"], json!({"text": "hello"}));

    let asked = s.seen.of("publish");
    let last = asked.last().unwrap();
    assert_eq!(last["room"], "chat:room");
    assert_eq!(last["client"]["user"], "alice");
    assert_eq!(
        last["client"]["data"],
        json!({"db_id": 7}),
        "the connect hook's data"
    );
}

#[tokio::test]
async fn rooms_outside_the_hooks_patterns_are_not_asked_about() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    // The identity's rooms are chat:*, so another room is forbidden by the
    // server itself, before any hook.
    alice
        .send(json!({"type": "publish", "room": "news", "data": {"text": "spam"}, "id": 1}))
        .await;
    assert_eq!(alice.next_json().await["code"], "forbidden");
    alice
        .send(json!({"type": "join", "room": "bad room", "id": 2}))
        .await;
    assert_eq!(alice.next_json().await["code"], "invalid_room");
    assert!(s.seen.of("publish").is_empty() && s.seen.of("join").is_empty());
}

#[tokio::test]
async fn the_join_hook_refuses_with_the_applications_reason() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    alice
        .send(json!({"type": "join", "room": "chat:secret", "id": 1}))
        .await;
    assert_eq!(
        alice.next_json().await,
        json!({"type": "error", "id": 1, "code": "refused", "message": "members only", "reason": "members_only"})
    );
    alice.join("chat:open").await;
    // Joining a room the connection is in does not ask again.
    alice.join("chat:open").await;
    assert_eq!(s.seen.of("join").len(), 2);
    assert_eq!(
        s.server
            .node
            .local_members(&switchboard::broker::Topic::Room("chat:secret".into())),
        0
    );
}

#[tokio::test]
async fn rpc_frames_get_the_applications_answers_and_errors() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    let mut ask = async |method: &str, data: Value, id: u64| {
        alice
            .send(json!({"type": "rpc", "method": method, "data": data, "id": id}))
            .await;
        alice.next_json().await
    };
    assert_eq!(
        ask("add", json!({"a": 2, "b": 3}), 1).await,
        json!({"type": "rpc_result", "id": 1, "data": 5})
    );
    let me = ask("whoami", Value::Null, 2).await;
    assert_eq!(me["data"]["user"], "alice");
    assert_eq!(me["data"]["data"], json!({"db_id": 7}));
    assert_eq!(
        ask("nothing", Value::Null, 3).await,
        json!({"type": "rpc_result", "id": 3, "data": null})
    );
    assert_eq!(
        ask("fail", Value::Null, 4).await,
        json!({"type": "error", "id": 4, "code": "refused", "message": "no such order", "reason": "not_found"})
    );
    let slow = ask("slow", Value::Null, 5).await;
    assert_eq!(
        (slow["code"].as_str(), slow["id"].as_u64()),
        (Some("unavailable"), Some(5))
    );
    let unknown = ask("missing", Value::Null, 6).await;
    assert_eq!(
        unknown["code"], "refused",
        "a 404 is the application's no: {unknown}"
    );
}

#[tokio::test]
async fn an_endpoint_without_hooks_answers_rpc_with_unknown_type() {
    let s = setup().await;
    let mut alice = Client::connect(request(
        &s.server.ws("/ws/plain"),
        &[("cookie", "sid=alice-session")],
    ))
    .await;
    alice
        .send(json!({"type": "rpc", "method": "add", "id": 9}))
        .await;
    let reply = alice.next_json().await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_u64()),
        (Some("unknown_type"), Some(9)),
        "{reply}"
    );
}

#[tokio::test]
async fn deliveries_are_written_while_a_hook_waits_for_the_application() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    let mut bob = login(&s, "bob-session").await;
    alice.join("chat:room").await;
    // Alice's publish waits 400 ms for the application; meanwhile Bob's
    // message to the room reaches her, before her own ack.
    alice
        .send(json!({"type": "publish", "room": "chat:other", "data": {"text": "take-your-time"}, "id": 1}))
        .await;
    let seen = s.seen.clone();
    switchboard_testkit::ws::eventually(
        "the application holds the publish",
        Duration::from_secs(5),
        || {
            let asked = !seen.of("publish").is_empty();
            std::future::ready(asked.then_some(()))
        },
    )
    .await;
    bob.send(
        json!({"type": "publish", "room": "chat:room", "data": {"text": "meanwhile"}, "id": 1}),
    )
    .await;
    let first = alice.next_json().await;
    assert_eq!(first["type"], "message", "{first}");
    assert_eq!(first["data"]["text"], "meanwhile");
    assert_eq!(alice.next_json().await["type"], "ack");
}

#[tokio::test]
async fn the_application_receives_every_event_in_order_even_after_a_refused_batch() {
    let s = setup().await;
    let mut alice = login(&s, "alice-session").await;
    let conn = alice.conn().to_string();
    alice.join("chat:room").await;
    let second = login(&s, "alice-session").await;
    second.close().await;
    alice.close().await;
    // Every batch the application took, in order (the first one it refused
    // arrives again after the backoff).
    let seen = s.seen.clone();
    let events: Vec<Value> = switchboard_testkit::ws::eventually(
        "the events up to alice going offline",
        Duration::from_secs(10),
        || {
            let batches = seen.of("events");
            let events: Vec<Value> = batches
                .iter()
                .skip(1)
                .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
                .collect();
            let done = events.iter().any(|e| e["event"] == "offline");
            std::future::ready(done.then_some(events))
        },
    )
    .await;
    let first = &s.seen.of("events")[0];
    assert_eq!(
        first["events"],
        s.seen.of("events")[1]["events"],
        "the refused batch is posted again, unchanged"
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "connect",
            "online",
            "join",
            "connect",
            "disconnect",
            "leave",
            "disconnect",
            "offline"
        ]
    );
    assert_eq!(events[0]["user"], "alice");
    assert_eq!(events[0]["conn"], conn.as_str());
    assert_eq!(events[0]["path"], "/ws/chat");
    assert_eq!(events[2]["room"], "chat:room");
    assert_eq!(events[1]["node"], s.server.node.id());
    assert!(
        events
            .iter()
            .all(|e| e["at"].as_u64().unwrap() > 1_700_000_000_000)
    );
    assert_eq!(first["dropped"], 0);
}

#[tokio::test]
async fn expiring_credentials_are_renewed_by_the_refresh_hook_or_the_connection_closes() {
    let s = setup().await;
    let mut kept = login(&s, "renew-me").await;
    let mut ended = login(&s, "final").await;
    kept.join("chat:a").await;
    kept.join("chat:b").await;
    // After the first credentials' one second, the application renews one
    // user (narrowing the rooms to chat:a) and not the other.
    assert_eq!(
        kept.next_json().await,
        json!({"type": "left", "room": "chat:b"}),
        "the renewed rooms leave chat:b"
    );
    let (code, reason) = ended.expect_close().await;
    assert_eq!(code, 4004, "{reason}");
    kept.expect_nothing_but_barrier().await;
    let asked = s.seen.of("refresh");
    let renew = asked.iter().find(|r| r["user"] == "renew-me").unwrap();
    assert_eq!(
        renew["data"],
        json!({"sid": "renew-me"}),
        "the connect hook's data"
    );
    assert!(asked.iter().any(|r| r["user"] == "final"));
}

#[tokio::test]
async fn disconnecting_a_user_ends_every_connection_of_theirs_with_4401() {
    let s = setup().await;
    let mut one = login(&s, "alice-session").await;
    let mut two = login(&s, "alice-session").await;
    let mut bob = login(&s, "bob-session").await;
    s.server
        .node
        .disconnect_user("alice", "signed out elsewhere")
        .await
        .unwrap();
    for tab in [&mut one, &mut two] {
        assert_eq!(
            tab.expect_close().await,
            (4401, "signed out elsewhere".to_string())
        );
    }
    bob.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn the_http_api_signs_a_user_out_everywhere() {
    let s = setup().await;
    let mut one = login(&s, "alice-session").await;
    let mut bob = login(&s, "bob-session").await;
    let url = s.server.http("/api/users/alice/disconnect");
    let (status, body) = common::post(&url, r#"{"reason": "signed out"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "disconnected", "user": "alice"}));
    assert_eq!(one.expect_close().await, (4401, "signed out".to_string()));
    bob.expect_nothing_but_barrier().await;

    let (status, body) = common::post(&url, "{nope", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    let long = json!({"reason": "x".repeat(124)}).to_string();
    let (status, body) = common::post(&url, &long, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
    let bad = s.server.http("/api/users/%01/disconnect");
    let (status, body) = common::post(&bad, "", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_user"))
    );
}
