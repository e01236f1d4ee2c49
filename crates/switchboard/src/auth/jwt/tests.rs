//! The JWT authenticator's checks, one refusal at a time.

use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret of 32 bytes or more";

fn token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("encodes")
}

fn far() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 3600
}

/// With an issuer and an audience configured, a token must name both:
/// one that left them out (or gave an `iss` that is not a string) used
/// to pass, since they were only compared when present (found by the
/// `jwt` fuzz target).
#[test]
fn a_configured_issuer_and_audience_are_required() {
    let mut config = JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()));
    config.issuer = Some("https://issuer.example".into());
    config.audience = Some("switchboard".into());
    let auth = JwtAuthenticator::new(config).expect("valid settings");
    let exp = far();
    let good =
        json!({"sub": "u", "exp": exp, "iss": "https://issuer.example", "aud": "switchboard"});
    assert!(auth.verify(&token(&good)).is_ok());
    for (claims, reason) in [
        (
            json!({"sub": "u", "exp": exp, "aud": "switchboard"}),
            "token lacks a required claim: iss",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": 42, "aud": "switchboard"}),
            "token claim iss is not a string",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "https://issuer.example"}),
            "token lacks a required claim: aud",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "https://issuer.example", "aud": ["a", "b"]}),
            "token audience not accepted",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "https://issuer.example", "aud": 7}),
            "token claim aud is not a string or an array of strings",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "https://other.example", "aud": "switchboard"}),
            "token issuer not accepted",
        ),
    ] {
        let rejection = auth.verify(&token(&claims)).expect_err("refused");
        assert_eq!(rejection.reason, reason, "{claims}");
    }
    // Without them configured, neither is needed.
    let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec())))
        .expect("valid settings");
    assert!(
        auth.verify(&token(&json!({"sub": "u", "exp": exp})))
            .is_ok()
    );
}

fn plain() -> JwtAuthenticator {
    JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).expect("valid")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Each refusal names the check that failed, not "malformed".
#[test]
fn every_refusal_says_which_check_failed() {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let exp = far();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "u", "exp": exp}))
    );
    let auth = plain();
    let reason = |t: &str| auth.verify(t).expect_err("refused").reason;
    assert_eq!(
        reason(&unsigned),
        "token algorithm not accepted: none (this server accepts HS256)"
    );
    let no_alg = format!(
        "{}.{}.x",
        b64(&json!({"typ": "JWT"})),
        b64(&json!({"sub": "u", "exp": exp}))
    );
    assert_eq!(
        reason(&no_alg),
        "token algorithm not accepted: no alg (this server accepts HS256)"
    );
    for bad in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x"] {
        assert_eq!(
            reason(bad),
            "token malformed: not three base64url parts with a JSON header",
            "{bad:?}"
        );
    }
    let mut forged = token(&json!({"sub": "u", "exp": exp}));
    forged.push('A');
    assert_eq!(reason(&forged), "token signature invalid");
    for (claims, expected) in [
        (
            json!({"sub": 42, "exp": exp}),
            "token claim sub is not a string",
        ),
        (json!({"exp": exp}), "token lacks a required claim: sub"),
        (json!({"sub": "u"}), "token lacks a required claim: exp"),
        (
            json!({"sub": "u", "exp": exp.to_string()}),
            "token claim exp is not a number (seconds since 1970)",
        ),
        (json!({"sub": "u", "exp": now() - 60.0}), "token expired"),
        (
            json!({"sub": "u", "exp": exp, "nbf": now() + 600.0}),
            "token not valid yet",
        ),
        (
            json!({"sub": "u", "exp": exp, "nbf": "soon"}),
            "token claim nbf is not a number (seconds since 1970)",
        ),
        (
            json!({"sub": "u", "exp": exp, "rooms": "chat:*"}),
            "token claim rooms is not an array of strings",
        ),
        (
            json!({"sub": "u", "exp": exp, "read_rooms": ["a", 1]}),
            "token claim read_rooms is not an array of strings",
        ),
        (
            json!([1, 2]),
            "token malformed: its header or claims are not a JSON object of the right shape",
        ),
    ] {
        assert_eq!(reason(&token(&claims)), expected, "{claims}");
    }
}

/// RFC 7519's NumericDate may have a fraction: such an `exp` is
/// accepted, and the connection lives until it (plus the leeway).
#[test]
fn a_fractional_exp_is_accepted() {
    let exp = now().floor() + 600.5;
    let identity = plain()
        .verify(&token(&json!({"sub": "u", "exp": exp, "nbf": now() - 1.5})))
        .expect("accepted");
    let expires = identity
        .expires_at
        .expect("expires")
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert_eq!(expires, exp + 5.0);
    let identity = plain()
        .verify(&token(&json!({"sub": "u", "exp": 1e300})))
        .expect("a far exp is accepted");
    assert!(identity.expires_at.expect("expires") > SystemTime::now());
}

fn parts(headers: &[(&str, &str)], uri: &str) -> http::request::Parts {
    let mut request = http::Request::builder().uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request").into_parts().0
}

/// With no token, the refusal names the cookie the server looks for,
/// and what the request sent instead.
#[tokio::test]
async fn a_missing_token_names_what_was_sent_instead() {
    let refusal = |p: http::request::Parts| async move {
        plain().authenticate(&p).await.expect_err("refused").reason
    };
    assert_eq!(
        refusal(parts(&[], "/ws/chat")).await,
        "missing token: send Authorization: Bearer <jwt>, ?token=<jwt> or the cookie switchboard_token"
    );
    assert_eq!(
        refusal(parts(&[("cookie", "session=abc; token=xyz")], "/ws/chat")).await,
        "missing token: send Authorization: Bearer <jwt>, ?token=<jwt> or the cookie switchboard_token; \
         the request's cookies are named session, token (the token's cookie name is the jwt_cookie setting)"
    );
    assert_eq!(
        refusal(parts(&[("authorization", "Token abc")], "/ws/chat")).await,
        "missing token: send Authorization: Bearer <jwt>, ?token=<jwt> or the cookie switchboard_token; \
         the Authorization header's scheme is \"Token\", not Bearer"
    );
    let valid = token(&json!({"sub": "u", "exp": far()}));
    let cookie = format!("other=1; switchboard_token={valid}");
    let identity = plain()
        .authenticate(&parts(&[("cookie", cookie.as_str())], "/ws/chat"))
        .await
        .expect("the named cookie is read");
    assert_eq!(&*identity.user, "u");
}
