//! The upgrade gate: credentials, Origin, rate limits, caps and permissions,
//! each refusal asserted with its exact status, error frame or close code.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::gate::caps::Caps;
use switchboard::gate::origin::OriginPolicy;
use switchboard::gate::rate::RateLimit;
use switchboard::{Config, Node};
use switchboard_testkit::ws::{Message, Request};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!";
const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec_public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 3600 })
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn jwt_node(
    config: Config,
    key: JwtKey,
    tweak: impl FnOnce(&mut JwtConfig),
) -> switchboard::node::NodeBuilder {
    let mut jwt = JwtConfig::new(key);
    tweak(&mut jwt);
    Node::builder()
        .config(config)
        .default_endpoints()
        .authenticator(JwtAuthenticator::new(jwt).unwrap())
}

async fn hs_server() -> TestServer {
    TestServer::start_with(jwt_node(
        Config::default(),
        JwtKey::Hs256(SECRET.to_vec()),
        |c| {
            c.audience = Some("switchboard".into());
            c.issuer = Some("https://auth.example.com".into());
        },
    ))
    .await
}

fn good(sub: &str) -> Value {
    json!({
        "sub": sub, "exp": now() + 3600, "aud": "switchboard", "iss": "https://auth.example.com"
    })
}

/// Upgrades with `req`; returns the connection (its `welcome` unread), or
/// the refusal's status and JSON body (`null` when the body is not JSON).
async fn try_upgrade(req: Request) -> Result<Client, (u16, Value)> {
    Client::try_open(req).await.map_err(|r| {
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    })
}

fn with_query(server: &TestServer, path: &str, token: &str) -> Request {
    ws::request(&format!("{}?token={token}", server.ws(path)), &[])
}

async fn welcome_user(ws: &mut Client) -> String {
    ws.read_welcome().await["user"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_valid_token_in_header_query_or_cookie_names_the_user() {
    let server = hs_server().await;
    let token = hs256(&good("ana"));
    let req = ws::request(
        &server.ws("/ws/chat"),
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(
        welcome_user(&mut try_upgrade(req).await.unwrap()).await,
        "ana"
    );
    let req = with_query(&server, "/ws/chat", &token);
    assert_eq!(
        welcome_user(&mut try_upgrade(req).await.unwrap()).await,
        "ana"
    );
    let req = ws::request(
        &server.ws("/ws/notifications"),
        &[("cookie", &format!("theme=dark; switchboard_token={token}"))],
    );
    assert_eq!(
        welcome_user(&mut try_upgrade(req).await.unwrap()).await,
        "ana"
    );
}

#[tokio::test]
async fn bad_tokens_get_401_before_any_handshake() {
    const MALFORMED: &str = "token malformed: not three base64url parts with a JSON header";
    let server = hs_server().await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"JWT"})),
        b64(&good("ana"))
    );
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good("ana"),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
    )
    .unwrap();
    let mut expired = good("ana");
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = good("ana");
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_aud = good("ana");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = good("ana");
    wrong_iss["iss"] = json!("https://evil.example.com");
    let mut no_exp = good("ana");
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "not.a.jwt".into(), MALFORMED),
        ("garbage", "%%%".into(), MALFORMED),
        ("wrong signature", wrong_key, "token signature invalid"),
        ("expired", hs256(&expired), "token expired"),
        ("not yet valid", hs256(&not_yet), "token not valid yet"),
        (
            "wrong audience",
            hs256(&wrong_aud),
            "token audience not accepted",
        ),
        (
            "wrong issuer",
            hs256(&wrong_iss),
            "token issuer not accepted",
        ),
        (
            "no exp",
            hs256(&no_exp),
            "token lacks a required claim: exp",
        ),
        (
            "alg none",
            alg_none,
            "token algorithm not accepted: none (this server accepts HS256)",
        ),
    ];
    // The scheme is case-insensitive for tokens too.
    let req = ws::request(
        &server.ws("/ws/chat"),
        &[("authorization", &format!("bearer {}", hs256(&good("ana"))))],
    );
    assert!(try_upgrade(req).await.is_ok());
    for (name, token, reason) in cases {
        let (status, body) = try_upgrade(with_query(&server, "/ws/chat", &token))
            .await
            .unwrap_err();
        assert_eq!(status, 401, "{name}");
        assert_eq!(body["error"]["code"], "unauthorized", "{name}");
        assert_eq!(body["error"]["message"], reason, "{name}");
    }
    let (status, body) = try_upgrade(ws::request(&server.ws("/ws/chat"), &[]))
        .await
        .unwrap_err();
    assert_eq!(status, 401, "missing token");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing token")
    );
    // Only the lower-case bearer connection became a session.
    let node = server.node.clone();
    eventually("one session", || {
        node.stats().snapshot().connections_total == 1
    })
    .await;
    assert_eq!(node.stats().snapshot().rejected_upgrades, 10);
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_and_algorithm_confusion_is_refused() {
    let server = TestServer::start_with(jwt_node(
        Config::default(),
        JwtKey::public_pem(RSA_PUBLIC).unwrap(),
        |_| {},
    ))
    .await;
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("rsa-user"),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut ws = try_upgrade(with_query(&server, "/ws/chat", &rs))
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut ws).await, "rsa-user");
    // The public key used as an HMAC secret: the classic confusion attack.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("attacker"),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    let (status, body) = try_upgrade(with_query(&server, "/ws/chat", &confused))
        .await
        .unwrap_err();
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("algorithm"),
        "{body}"
    );

    let server = TestServer::start_with(jwt_node(
        Config::default(),
        JwtKey::public_pem(EC_PUBLIC).unwrap(),
        |_| {},
    ))
    .await;
    let es = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("ec-user"),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut ws = try_upgrade(with_query(&server, "/ws/chat", &es))
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut ws).await, "ec-user");
    let (status, _) = try_upgrade(with_query(&server, "/ws/chat", &rs))
        .await
        .unwrap_err();
    assert_eq!(status, 401, "an RS256 token on an ES256 server");
}

#[tokio::test]
async fn a_token_for_user_a_never_yields_user_b_messages() {
    let server = hs_server().await;
    let mut a = try_upgrade(with_query(&server, "/ws/notifications", &hs256(&good("a"))))
        .await
        .unwrap();
    let mut b = try_upgrade(with_query(&server, "/ws/notifications", &hs256(&good("b"))))
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut a).await, "a");
    assert_eq!(welcome_user(&mut b).await, "b");
    let (status, _) = server
        .post("/api/users/b/messages", r#"{"data":"secret for b"}"#)
        .await;
    assert_eq!(status, 200);
    let Message::Text(t) = b.next_message().await else {
        panic!("text")
    };
    assert!(t.contains("secret for b"));
    // a got nothing: the delivery to b was queued before the API answered.
    a.expect_nothing_but_barrier().await;
}

#[tokio::test]
async fn room_claims_limit_joins_and_publishes() {
    let server = hs_server().await;
    let mut c = good("ana");
    c["rooms"] = json!(["lobby", "team:42:*"]);
    c["read_rooms"] = json!(["news"]);
    let mut ws = try_upgrade(with_query(&server, "/ws/chat", &hs256(&c)))
        .await
        .unwrap();
    welcome_user(&mut ws).await;
    for (room, joined) in [
        ("lobby", true),
        ("team:42:dev", true),
        ("news", true),
        ("team:420", false),
        ("secret", false),
    ] {
        ws.send(json!({"type":"join","room":room,"id":1})).await;
        let v = ws.next_json().await;
        if joined {
            assert_eq!(v["type"], "joined", "{room}: {v}");
        } else {
            assert_eq!(
                (v["type"].as_str(), v["code"].as_str()),
                (Some("error"), Some("forbidden")),
                "{room}: {v}"
            );
        }
    }
    ws.send(json!({"type":"publish","room":"news","data":1,"id":7}))
        .await;
    let v = ws.next_json().await;
    assert_eq!(
        (v["code"].as_str(), v["id"].as_u64()),
        (Some("forbidden"), Some(7)),
        "read-only room"
    );
    ws.send(json!({"type":"publish","room":"secret","data":1,"id":8}))
        .await;
    assert_eq!(ws.next_json().await["code"], "forbidden");
    ws.send(json!({"type":"publish","room":"lobby","data":1,"id":9}))
        .await;
    let got = [ws.next_json().await, ws.next_json().await];
    assert!(
        got.iter().any(|v| v["type"] == "ack" && v["id"] == 9),
        "{got:?}"
    );
}

#[tokio::test]
async fn refresh_over_the_socket_checks_the_token_and_the_user() {
    let server = hs_server().await;
    let mut ws = try_upgrade(with_query(
        &server,
        "/ws/notifications",
        &hs256(&good("ana")),
    ))
    .await
    .unwrap();
    welcome_user(&mut ws).await;
    let mut fresh = good("ana");
    fresh["exp"] = json!(now() + 7200);
    ws.send(json!({"type":"refresh","token":hs256(&fresh),"id":1}))
        .await;
    let v = ws.next_json().await;
    assert_eq!(
        v,
        json!({"type":"refreshed","id":1,"expires_at":now_plus(&fresh)})
    );
    ws.send(json!({"type":"refresh","token":hs256(&good("bob")),"id":2}))
        .await;
    let v = ws.next_json().await;
    assert_eq!(
        (v["code"].as_str(), v["id"].as_u64()),
        (Some("forbidden"), Some(2))
    );
    ws.send(json!({"type":"refresh","token":"junk","id":3}))
        .await;
    let v = ws.next_json().await;
    assert_eq!(
        (v["code"].as_str(), v["id"].as_u64()),
        (Some("unauthorized"), Some(3))
    );
}

fn now_plus(claims: &Value) -> u64 {
    // The connection lives until exp plus the leeway (5 s by default).
    claims["exp"].as_u64().unwrap() + 5
}

#[tokio::test]
async fn a_refresh_with_narrower_rooms_leaves_the_rooms_it_no_longer_allows() {
    let server = hs_server().await;
    let mut wide = good("ana");
    wide["rooms"] = json!(["a", "b"]);
    let mut ws = try_upgrade(with_query(&server, "/ws/chat", &hs256(&wide)))
        .await
        .unwrap();
    welcome_user(&mut ws).await;
    for room in ["a", "b"] {
        ws.send(json!({"type":"join","room":room})).await;
        assert_eq!(ws.next_json().await["type"], "joined");
    }
    let mut narrow = good("ana");
    narrow["rooms"] = json!(["a"]);
    ws.send(json!({"type":"refresh","token":hs256(&narrow),"id":4}))
        .await;
    assert_eq!(ws.next_json().await, json!({"type":"left","room":"b"}));
    assert_eq!(ws.next_json().await["type"], "refreshed");
    let (status, _) = server
        .post("/api/rooms/b/messages", r#"{"data":"gone"}"#)
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post("/api/rooms/a/messages", r#"{"data":"still here"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(ws.next_json().await["data"], "still here");
}

fn origin_req(server: &TestServer, origin: Option<&str>) -> Request {
    match origin {
        Some(o) => ws::request(&server.ws("/ws/echo"), &[("origin", o)]),
        None => ws::request(&server.ws("/ws/echo"), &[]),
    }
}

#[tokio::test]
async fn same_origin_is_the_default() {
    let server = TestServer::start_default().await;
    let own = format!("http://{}", server.addr);
    assert!(try_upgrade(origin_req(&server, Some(&own))).await.is_ok());
    assert!(
        try_upgrade(origin_req(&server, None)).await.is_ok(),
        "non-browser clients"
    );
    let (status, body) = try_upgrade(origin_req(&server, Some("https://evil.example")))
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden_origin"))
    );
}

#[tokio::test]
async fn the_origin_allow_list_takes_exact_entries_and_subdomain_wildcards() {
    let config = Config::builder()
        .origin(OriginPolicy {
            allowed: vec![
                "https://*.example.com".into(),
                "https://app.partner.io".into(),
            ],
            require_origin: true,
        })
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    for ok in [
        "https://chat.example.com",
        "https://a.b.example.com",
        "https://app.partner.io",
    ] {
        assert!(
            try_upgrade(origin_req(&server, Some(ok))).await.is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "https://evil-example.com",
        "https://example.com",
        "https://example.com.evil.io",
        "http://chat.example.com",
        "https://app.partner.io.evil.io",
    ] {
        let (status, _) = try_upgrade(origin_req(&server, Some(bad)))
            .await
            .unwrap_err();
        assert_eq!(status, 403, "{bad}");
    }
    let (status, body) = try_upgrade(origin_req(&server, None)).await.unwrap_err();
    assert_eq!(status, 403, "Origin required");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("required")
    );
}

fn xff_req(server: &TestServer, forwarded: &str) -> Request {
    ws::request(&server.ws("/ws/echo"), &[("x-forwarded-for", forwarded)])
}

#[tokio::test]
async fn upgrades_are_rate_limited_per_ip_with_retry_after() {
    let config = Config::builder()
        .upgrade_rate(Some(RateLimit {
            per_second: 0.5,
            burst: 2,
        }))
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let _a = try_upgrade(origin_req(&server, None)).await.unwrap();
    let _b = try_upgrade(origin_req(&server, None)).await.unwrap();
    match Client::try_open(origin_req(&server, None)).await {
        Err(refusal) => {
            assert_eq!(refusal.status, 429);
            assert_eq!(refusal.headers["retry-after"], "2");
        }
        Ok(_) => panic!("expected 429, got 101"),
    }
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let (status, body) = try_upgrade(xff_req(&server, "198.51.100.1"))
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let config = Config::builder()
        .upgrade_rate(Some(RateLimit {
            per_second: 0.1,
            burst: 1,
        }))
        .trusted_proxies(vec!["127.0.0.1".parse().unwrap()])
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    // Each forwarded client has a bucket of its own.
    assert!(try_upgrade(xff_req(&server, "198.51.100.1")).await.is_ok());
    assert!(try_upgrade(xff_req(&server, "198.51.100.2")).await.is_ok());
    let (status, _) = try_upgrade(xff_req(&server, "198.51.100.1"))
        .await
        .unwrap_err();
    assert_eq!(status, 429);
    // A client cannot escape by prepending a fake hop: the rightmost
    // untrusted address is the one that counts.
    let (status, _) = try_upgrade(xff_req(&server, "203.0.113.50, 198.51.100.2"))
        .await
        .unwrap_err();
    assert_eq!(status, 429);
}

#[tokio::test]
async fn connection_caps_answer_429_and_free_their_slot_on_close() {
    let config = Config::builder()
        .caps(Caps {
            total: 3,
            per_ip: 2,
            per_user: 0,
        })
        .trusted_proxies(vec!["127.0.0.1".parse().unwrap()])
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let a1 = try_upgrade(xff_req(&server, "198.51.100.1")).await.unwrap();
    let _a2 = try_upgrade(xff_req(&server, "198.51.100.1")).await.unwrap();
    let (status, body) = try_upgrade(xff_req(&server, "198.51.100.1"))
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_connections")),
        "per IP"
    );
    let _b1 = try_upgrade(xff_req(&server, "198.51.100.2")).await.unwrap();
    let (status, body) = try_upgrade(xff_req(&server, "198.51.100.3"))
        .await
        .unwrap_err();
    assert_eq!(status, 429, "total");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server connection limit")
    );
    drop(a1);
    let node = server.node.clone();
    eventually("slot freed", || node.connection_count() == 2).await;
    assert!(try_upgrade(xff_req(&server, "198.51.100.3")).await.is_ok());
}

#[tokio::test]
async fn the_per_user_cap_counts_every_connection_of_the_user() {
    let config = Config::builder()
        .caps(Caps {
            per_user: 2,
            ..Caps::default()
        })
        .build()
        .unwrap();
    let server =
        TestServer::start_with(jwt_node(config, JwtKey::Hs256(SECRET.to_vec()), |_| {})).await;
    let t = hs256(&claims("ana"));
    let _tab = try_upgrade(with_query(&server, "/ws/chat", &t))
        .await
        .unwrap();
    let _phone = try_upgrade(with_query(&server, "/ws/notifications", &t))
        .await
        .unwrap();
    let (status, body) = try_upgrade(with_query(&server, "/ws/chat", &t))
        .await
        .unwrap_err();
    assert_eq!(status, 429);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this user")
    );
    assert!(
        try_upgrade(with_query(&server, "/ws/chat", &hs256(&claims("bob"))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn message_floods_get_error_frames_then_a_policy_close() {
    let config = Config::builder()
        .message_rate(Some(RateLimit {
            per_second: 0.01,
            burst: 2,
        }))
        .message_rate_strikes(3)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let mut c = connect(&server.ws("/ws/chat")).await;
    c.join("r").await;
    c.join("s").await;
    for _ in 0..3 {
        c.send(json!({"type":"join","room":"t"})).await;
        let e = c.next_json().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("rate_limited"))
        );
    }
    c.send(json!({"type":"join","room":"t"})).await;
    assert_eq!(c.expect_close().await.0, 4002);
}

#[tokio::test]
async fn the_api_key_guards_the_http_api_the_same_way() {
    let config = Config::builder().api_key("k".repeat(32)).build().unwrap();
    let server = TestServer::start(config).await;
    let (status, body) = post(
        &server.http("/api/broadcast"),
        r#"{"data":1}"#,
        Some("nope"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = post(
        &server.http("/api/broadcast"),
        r#"{"data":1}"#,
        Some(&"k".repeat(32)),
    )
    .await;
    assert_eq!(status, 200);
}

/// A validly signed token whose `exp` is beyond what the clock can hold (a
/// signer's bug, such as milliseconds sent as seconds, or `u64::MAX`) is
/// accepted as expiring far in the future, never a panic.
#[test]
fn an_expiry_beyond_the_clock_saturates() {
    let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
    for exp in [
        u64::MAX,
        u64::MAX - 5,
        i64::MAX as u64,
        1_800_000_000_000_000,
    ] {
        let token = hs256(&json!({"sub": "ana", "exp": exp}));
        let identity = auth.verify(&token).expect("valid token");
        let at = identity.expires_at.expect("an expiry");
        let far = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(at > far, "{exp}: {at:?}");
    }
}
