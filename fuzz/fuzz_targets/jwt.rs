//! JSON Web Token authentication, `switchboard::auth::jwt::JwtAuthenticator`:
//! `verify` on arbitrary and on properly signed tokens, and `authenticate`
//! on where a request carries its token.
//!
//! Input: byte 0 picks the mode (bits 0-1) and the settings (bit 2: issuer,
//! audience and room claims required, cookie `sb`; otherwise the
//! defaults), all with an HS256 secret known here. Checks, by mode:
//!
//! 0. The rest, as text, is a token. A token that is accepted carries the
//!    HMAC-SHA256 of its first two parts under the secret, spelled as the
//!    one canonical base64url text, and a header whose `alg` is `HS256`.
//! 1. Byte 1 is the length of a header; it and the claims after it, any
//!    bytes at all, are signed with the secret. Accepted means: the header
//!    is a JSON object (up to bytes that are not UTF-8 in strings that
//!    nothing reads) with `alg` `HS256`; the claims hold a valid `sub`
//!    (the identity's user), a numeric `exp` not past (the identity expires
//!    `leeway` after it), an `nbf` not ahead, the issuer and audience when
//!    they are required. The same token with its signature changed, cut off,
//!    or made with another secret is refused.
//! 2. Bytes 1-8 pick each claim from a menu (missing, wrong type, expired,
//!    within the leeway, valid...), the rest gives `sub` and room names; the
//!    token is accepted exactly when the menu says it should be, and its
//!    room claims grant what they list.
//! 3. The rest, as lines, is an `Authorization` value, a query string and a
//!    `Cookie` value, where `$T` stands for a valid token and `$J` for a
//!    refused one. The request is accepted exactly when the first place
//!    that holds a token, in the documented order (a `Bearer` credential,
//!    the `token` query parameter, the cookie), holds the valid one.

#![no_main]

use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::auth::{Authenticator, Identity, Rejection};

const SECRET: &[u8] = b"fuzzing secret, 32 bytes or more";
const OTHER_SECRET: &[u8] = b"another secret, 32 bytes or more";
const LEEWAY: u64 = 5;
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "switchboard";

struct Setup {
    plain: JwtAuthenticator,
    strict: JwtAuthenticator,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut config = JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()));
        config.leeway = Duration::from_secs(LEEWAY);
        let plain = JwtAuthenticator::new(config.clone()).expect("valid settings");
        config.issuer = Some(ISSUER.into());
        config.audience = Some(AUDIENCE.into());
        config.require_room_claims = true;
        config.cookie_name = "sb".into();
        let strict = JwtAuthenticator::new(config).expect("valid settings");
        Setup { plain, strict }
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let strict = mode & 0x04 != 0;
    let setup = setup();
    let auth = if strict { &setup.strict } else { &setup.plain };
    match mode & 0x03 {
        0 => raw(auth, rest),
        1 => signed(auth, strict, rest),
        2 => menu(auth, strict, rest),
        _ => placement(auth, strict, rest),
    }
});

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn hmac(secret: &[u8], input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A token of these header and claims bytes, signed with `secret`.
fn token(header: &[u8], claims: &[u8], secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = hmac(secret, &input);
    format!("{input}.{signature}")
}

fn raw(auth: &JwtAuthenticator, data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    if auth.verify(&token).is_err() {
        return;
    }
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    assert_eq!(
        signature,
        hmac(SECRET, input),
        "accepted a forged signature"
    );
    let (header, _) = input.split_once('.').expect("three parts");
    let header = URL_SAFE_NO_PAD.decode(header).expect("base64url header");
    let header: Value =
        serde_json::from_str(&String::from_utf8_lossy(&header)).expect("JSON header");
    assert_eq!(header["alg"], "HS256", "accepted another algorithm");
}

fn signed(auth: &JwtAuthenticator, strict: bool, data: &[u8]) {
    let [len, rest @ ..] = data else {
        return;
    };
    let (header, claims) = rest.split_at(usize::from(*len).min(rest.len()));
    let token = token(header, claims, SECRET);
    let Ok(identity) = auth.verify(&token) else {
        return;
    };
    // Bytes that are not UTF-8 get through inside strings nobody reads (the
    // signer is trusted); every string that is read was checked.
    let json = |bytes: &[u8]| serde_json::from_str::<Value>(&String::from_utf8_lossy(bytes));
    let header = json(header).expect("accepted a header that is not JSON");
    assert_eq!(header["alg"], "HS256", "accepted another algorithm");
    let claims = json(claims).expect("accepted claims that are not JSON");
    check_identity(&identity, &claims, strict);

    // Any change to the signature makes it a forgery.
    let cut = token.rfind('.').expect("three parts") + 1;
    let last = token.as_bytes()[token.len() - 1];
    let other = if last == b'A' { 'B' } else { 'A' };
    let changed = format!("{}{other}", &token[..token.len() - 1]);
    assert!(
        auth.verify(&changed).is_err(),
        "accepted a changed signature"
    );
    assert!(auth.verify(&token[..cut]).is_err(), "accepted no signature");
    assert!(
        auth.verify(&token[..cut - 1]).is_err(),
        "accepted two parts"
    );
    let forged = self::token(
        &serde_json::to_vec(&header).expect("JSON"),
        &serde_json::to_vec(&claims).expect("JSON"),
        OTHER_SECRET,
    );
    assert!(auth.verify(&forged).is_err(), "accepted another key");
}

/// What an accepted token's identity must be, from its claims.
fn check_identity(identity: &Identity, claims: &Value, strict: bool) {
    let sub = claims["sub"]
        .as_str()
        .expect("accepted without a string sub");
    assert_eq!(&*identity.user, sub, "user is not sub");
    assert!(
        switchboard_protocol::validate_user(sub).is_ok(),
        "invalid sub {sub:?}"
    );
    assert!(!identity.guest, "a token's user is no guest");
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted without a numeric exp");
    let now = now() as f64;
    let leeway = LEEWAY as f64;
    assert!(exp + leeway >= now - 1.0, "accepted an expired token");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted a malformed nbf");
        assert!(nbf <= now + leeway + 1.0, "accepted a token not valid yet");
    }
    let expires = identity.expires_at.expect("a token expires");
    match Duration::try_from_secs_f64(exp + leeway)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
    {
        Some(at) => assert_eq!(expires, at, "expiry is not exp + leeway"),
        None => assert!(expires > SystemTime::now(), "a far expiry is in the past"),
    }
    if strict {
        assert_eq!(claims["iss"], ISSUER, "accepted another issuer");
        let aud = &claims["aud"];
        let audience_ok = aud == AUDIENCE
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == AUDIENCE));
        assert!(audience_ok, "accepted another audience");
    }
    let list = |name: &str| -> Option<Vec<String>> {
        claims.get(name).and_then(Value::as_array).map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .expect("accepted a room that is not a string")
                        .to_string()
                })
                .collect()
        })
    };
    let (rooms, read) = (list("rooms"), list("read_rooms"));
    let p = &identity.permissions;
    match (&rooms, &read) {
        (None, None) if strict => assert!(!p.can_join("lobby"), "no room claims grant no room"),
        (None, None) => assert!(p.can_publish("lobby"), "no room claims grant every room"),
        _ => {
            for pattern in rooms.iter().flatten() {
                let room = pattern
                    .strip_suffix('*')
                    .map_or(pattern.clone(), |p| format!("{p}x"));
                assert!(
                    p.can_publish(&room) && p.can_join(&room),
                    "rooms {pattern:?}"
                );
            }
            for pattern in read.iter().flatten() {
                let room = pattern
                    .strip_suffix('*')
                    .map_or(pattern.clone(), |p| format!("{p}x"));
                assert!(p.can_join(&room), "read_rooms {pattern:?}");
            }
            let granted = rooms.iter().chain(read.iter()).flatten().any(|pattern| {
                pattern
                    .strip_suffix('*')
                    .is_some_and(|p| "unlisted-room".starts_with(p))
                    || pattern == "unlisted-room"
            });
            assert_eq!(
                p.can_join("unlisted-room"),
                granted,
                "a room no claim lists"
            );
        }
    }
}

/// Builds claims from a menu and checks the verdict against the menu.
fn menu(auth: &JwtAuthenticator, strict: bool, data: &[u8]) {
    let [
        alg_s,
        exp_s,
        nbf_s,
        iss_s,
        aud_s,
        rooms_s,
        read_s,
        sub_s,
        rest @ ..,
    ] = data
    else {
        return;
    };
    let [alg_s, exp_s, nbf_s, iss_s, aud_s, rooms_s, read_s, sub_s] =
        [alg_s, exp_s, nbf_s, iss_s, aud_s, rooms_s, read_s, sub_s].map(|b| *b);
    let text = String::from_utf8_lossy(rest);
    let mut words = text.split('\n');
    let now = now() as i64;
    let mut ok = true;

    let alg = match alg_s % 6 {
        0 | 1 => "HS256",
        2 => "none",
        3 => "HS384",
        4 => "hs256",
        _ => "RS256",
    };
    ok &= alg == "HS256";
    let header = json!({ "alg": alg, "typ": "JWT" });
    let mut claims = serde_json::Map::new();

    // exp: required, an integer, not past (with the leeway); well clear of
    // the edges so that a second ticking by changes nothing.
    let exp = match exp_s % 8 {
        0 => None,
        1 => Some(json!(now - 3600)),
        2 => Some(json!(now - LEEWAY as i64 + 2)),
        3 => Some(json!(now - LEEWAY as i64 - 3)),
        4 => Some(json!(u64::MAX)),
        5 => Some(json!((now + 60).to_string())),
        6 => Some(json!(now as f64 + 60.5)),
        _ => Some(json!(now + 3600)),
    };
    // A NumericDate may have a fraction (RFC 7519 section 2).
    ok &= matches!(exp_s % 8, 2 | 4 | 6 | 7);
    if let Some(v) = exp {
        claims.insert("exp".into(), v);
    }
    let nbf = match nbf_s % 5 {
        0 => None,
        1 => Some(json!(now - 60)),
        2 => Some(json!(now + LEEWAY as i64 - 2)),
        3 => Some(json!(now + 60)),
        _ => Some(json!("soon")),
    };
    ok &= nbf_s % 5 <= 2;
    if let Some(v) = nbf {
        claims.insert("nbf".into(), v);
    }
    let iss_value = match iss_s % 4 {
        0 => None,
        1 => Some(json!(ISSUER)),
        2 => Some(json!("https://other.example")),
        _ => Some(json!(42)),
    };
    if strict {
        ok &= iss_s % 4 == 1;
    }
    if let Some(v) = iss_value {
        claims.insert("iss".into(), v);
    }
    let aud_value = match aud_s % 5 {
        0 => None,
        1 => Some(json!(AUDIENCE)),
        2 => Some(json!("other")),
        3 => Some(json!(["other", AUDIENCE])),
        _ => Some(json!([])),
    };
    if strict {
        ok &= matches!(aud_s % 5, 1 | 3);
    }
    if let Some(v) = aud_value {
        claims.insert("aud".into(), v);
    }
    let names = words.by_ref();
    let mut room_list = |selector: u8| -> Option<Value> {
        match selector % 4 {
            0 => None,
            1 => Some(Value::Null),
            2 => Some(json!([])),
            _ => Some(json!(names.by_ref().take(3).collect::<Vec<_>>())),
        }
    };
    if let Some(v) = room_list(rooms_s) {
        claims.insert("rooms".into(), v);
    }
    if let Some(v) = room_list(read_s) {
        claims.insert("read_rooms".into(), v);
    }
    let sub_value = match sub_s % 4 {
        0 => None,
        1 => Some(json!(7)),
        _ => Some(json!(names.next().unwrap_or(""))),
    };
    match &sub_value {
        Some(Value::String(s)) => ok &= switchboard_protocol::validate_user(s).is_ok(),
        _ => ok = false,
    }
    if let Some(v) = sub_value {
        claims.insert("sub".into(), v);
    }

    let claims = Value::Object(claims);
    let token = token(
        &serde_json::to_vec(&header).expect("JSON"),
        &serde_json::to_vec(&claims).expect("JSON"),
        SECRET,
    );
    let verdict = auth.verify(&token);
    assert_eq!(
        verdict.is_ok(),
        ok,
        "claims {claims}, header {header}: {:?}",
        verdict.as_ref().err().map(|r| &r.reason)
    );
    match verdict {
        // `null` room claims are no claims.
        Ok(identity) => {
            let mut claims = claims;
            for name in ["rooms", "read_rooms"] {
                if claims[name].is_null() {
                    claims.as_object_mut().expect("object").remove(name);
                }
            }
            check_identity(&identity, &claims, strict);
        }
        Err(rejection) => assert_eq!(rejection.status, 401),
    }
}

/// Where a request carries its token: `Authorization`, query, cookie.
fn placement(auth: &JwtAuthenticator, strict: bool, data: &[u8]) {
    let valid = token(
        &serde_json::to_vec(&json!({ "alg": "HS256", "typ": "JWT" })).expect("JSON"),
        &serde_json::to_vec(&json!({
            "sub": "user-1",
            "exp": now() + 3600,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "rooms": ["lobby"],
        }))
        .expect("JSON"),
        SECRET,
    );
    let refused = token(b"{\"alg\":\"HS256\"}", b"{\"sub\":\"user-1\"}", SECRET);
    let text = String::from_utf8_lossy(data)
        .replace("$T", &valid)
        .replace("$J", &refused);
    let mut lines = text.split('\n');
    let (authorization, query, cookie) = (lines.next(), lines.next(), lines.next());

    let mut request = http::Request::builder();
    if let Some(uri) = query.and_then(|q| format!("/ws/chat?{q}").parse::<http::Uri>().ok()) {
        request = request.uri(uri);
    }
    let mut request = request.body(()).expect("a request");
    for (name, value) in [
        (http::header::AUTHORIZATION, authorization),
        (http::header::COOKIE, cookie),
    ] {
        if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(v).ok()) {
            request.headers_mut().insert(name, value);
        }
    }
    let (parts, ()) = request.into_parts();

    let cookie_name = if strict { "sb" } else { "switchboard_token" };
    let found = bearer(&parts)
        .or_else(|| query_token(&parts))
        .or_else(|| cookie_token(&parts, cookie_name));
    let expected = found.as_deref() == Some(valid.as_str());
    let verdict = authenticate(auth, &parts);
    assert_eq!(
        verdict.is_ok(),
        expected,
        "found {found:?} in {parts:?}: {:?}",
        verdict.as_ref().err().map(|r| &r.reason)
    );
    if let Ok(identity) = verdict {
        assert_eq!(&*identity.user, "user-1");
    }
}

fn authenticate(
    auth: &JwtAuthenticator,
    parts: &http::request::Parts,
) -> Result<Identity, Rejection> {
    let mut future = auth.authenticate(parts);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(verdict) => verdict,
        Poll::Pending => panic!("JWT authentication waited"),
    }
}

/// RFC 6750 section 2.1: `Bearer <token>`, the scheme in any case.
fn bearer(parts: &http::request::Parts) -> Option<String> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// The first `token` parameter of the query, form-decoded.
fn query_token(parts: &http::request::Parts) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(name) == "token").then(|| form_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte, anything else itself; bytes that are not UTF-8 become U+FFFD.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && hex(bytes[i + 1]).is_some()
                && hex(bytes[i + 2]).is_some() =>
            {
                out.push((hex(bytes[i + 1]).unwrap() * 16 + hex(bytes[i + 2]).unwrap()) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first cookie of that name (RFC 6265 section 5.4: `name=value`
/// pairs separated by `;`).
fn cookie_token(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}
