//! JSON Web Token authentication.
//!
//! The token is looked for, in order, in:
//!
//! 1. `Authorization: Bearer <token>` (non-browser clients);
//! 2. the `token` query parameter (browsers cannot set headers on a
//!    WebSocket);
//! 3. a cookie, `switchboard_token` by default.
//!
//! It must be signed with the configured key and algorithm (HS256 with a
//! shared secret, or RS256 / ES256 with a public key in PEM). A token that
//! names any other algorithm, `none` included, is refused, so a public key
//! can never be used as an HMAC secret. `exp` and `sub` are required, and
//! `iss` and `aud` when configured; `nbf` is checked when present; dates may
//! have a fraction (RFC 7519 NumericDate); a small leeway allows for clock
//! skew. The user id is `sub`; the room claims are read by [`Permissions`].
//! Each refusal names the check that failed.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{Authenticator, Identity, Permissions, Rejection};

/// The verification key.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with this shared secret (at least 32 bytes recommended; fewer
    /// than 16 is refused).
    Hs256(Vec<u8>),
    /// RS256 with this RSA public key (PEM).
    Rs256Pem(String),
    /// ES256 with this P-256 public key (PEM).
    Es256Pem(String),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            JwtKey::Hs256(_) => "Hs256(..)",
            JwtKey::Rs256Pem(_) => "Rs256Pem(..)",
            JwtKey::Es256Pem(_) => "Es256Pem(..)",
        })
    }
}

impl JwtKey {
    /// A public key in PEM, RSA (RS256) or EC P-256 (ES256), detected from
    /// the key itself.
    pub fn public_pem(pem: &str) -> Result<JwtKey, JwtConfigError> {
        if DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
            Ok(JwtKey::Rs256Pem(pem.to_string()))
        } else if DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() {
            Ok(JwtKey::Es256Pem(pem.to_string()))
        } else {
            Err(JwtConfigError("not an RSA or EC public key in PEM".into()))
        }
    }
}

/// JWT settings. Defaults are stated on each field.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The verification key and, through it, the only algorithm accepted.
    pub key: JwtKey,
    /// Required `iss`, when set. Default: not checked.
    pub issuer: Option<String>,
    /// Required `aud`, when set. Default: not checked.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default: 5 s.
    pub leeway: Duration,
    /// Name of the cookie the token may come in. Default: `switchboard_token`.
    pub cookie_name: String,
    /// Refuse tokens that carry neither `rooms` nor `read_rooms` (they then
    /// grant no room) instead of treating them as unrestricted. Default: false.
    pub require_room_claims: bool,
}

impl JwtConfig {
    /// Settings with the defaults and this key.
    pub fn new(key: JwtKey) -> Self {
        JwtConfig {
            key,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            cookie_name: "switchboard_token".into(),
            require_room_claims: false,
        }
    }
}

/// A JWT setting is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JWT configuration: {0}")]
pub struct JwtConfigError(pub String);

/// Authenticates upgrades (and `refresh` frames) with JSON Web Tokens.
pub struct JwtAuthenticator {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    cookie_name: String,
    require_room_claims: bool,
    leeway: u64,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("cookie_name", &self.cookie_name)
            .finish()
    }
}

impl JwtAuthenticator {
    /// Builds the authenticator; checks the key.
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        let bad = |e: jsonwebtoken::errors::Error| JwtConfigError(e.to_string());
        let (key, alg) = match &config.key {
            JwtKey::Hs256(secret) if secret.len() < 16 => {
                return Err(JwtConfigError(
                    "HS256 secret must be at least 16 bytes".into(),
                ));
            }
            JwtKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            JwtKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::RS256,
            ),
            JwtKey::Es256Pem(pem) => (
                DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::ES256,
            ),
        };
        // jsonwebtoken checks the algorithm and the signature; every claim
        // is checked here, so that each refusal says which check failed.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(JwtAuthenticator {
            key,
            algorithm: alg,
            validation,
            issuer: config.issuer,
            audience: config.audience,
            cookie_name: config.cookie_name,
            require_room_claims: config.require_room_claims,
            leeway: config.leeway.as_secs(),
        })
    }

    /// Verifies a token and returns the identity it proves. A refusal's
    /// reason says which check failed (docs/configuration.md lists them).
    pub fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        let refuse = |reason: String| Rejection::unauthorized(reason);
        self.check_algorithm(token).map_err(refuse)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token.as_bytes(),
            &self.key,
            &self.validation,
        )
        .map_err(|e| Rejection::unauthorized(reason(e.kind())))?;
        let claims = data.claims;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.leeway as f64;
        let exp = numeric_date(&claims, "exp")
            .map_err(refuse)?
            .ok_or_else(|| refuse(lacks("exp")))?;
        if exp + leeway < now {
            return Err(refuse("token expired".into()));
        }
        if let Some(nbf) = numeric_date(&claims, "nbf").map_err(refuse)?
            && nbf > now + leeway
        {
            return Err(refuse("token not valid yet".into()));
        }
        let sub = match claims.get("sub") {
            None => return Err(refuse(lacks("sub"))),
            Some(Value::String(sub)) => sub,
            Some(_) => return Err(refuse("token claim sub is not a string".into())),
        };
        switchboard_protocol::validate_user(sub)
            .map_err(|e| Rejection::unauthorized(format!("invalid sub: {e}")))?;
        if let Some(issuer) = &self.issuer {
            match claims.get("iss") {
                None => return Err(refuse(lacks("iss"))),
                Some(Value::String(iss)) if iss == issuer => {}
                Some(Value::String(_)) => return Err(refuse("token issuer not accepted".into())),
                Some(_) => return Err(refuse("token claim iss is not a string".into())),
            }
        }
        if let Some(audience) = &self.audience {
            let names: Option<Vec<&str>> = match claims.get("aud") {
                None => return Err(refuse(lacks("aud"))),
                Some(Value::String(aud)) => Some(vec![aud.as_str()]),
                Some(Value::Array(auds)) => auds.iter().map(Value::as_str).collect(),
                Some(_) => None,
            };
            let Some(names) = names else {
                return Err(refuse(
                    "token claim aud is not a string or an array of strings".into(),
                ));
            };
            if !names.contains(&audience.as_str()) {
                return Err(refuse("token audience not accepted".into()));
            }
        }
        let rooms = string_list(&claims, "rooms").map_err(refuse)?;
        let read_rooms = string_list(&claims, "read_rooms").map_err(refuse)?;
        let permissions = match (&rooms, &read_rooms) {
            (None, None) if self.require_room_claims => Permissions::none(),
            (None, None) => Permissions::all(),
            (rooms, read) => {
                let rooms: Vec<&str> = rooms.iter().flatten().copied().collect();
                let read: Vec<&str> = read.iter().flatten().copied().collect();
                Permissions::restricted(&rooms, &read)
            }
        };
        // The same leeway that admitted the token keeps it alive, so a token
        // accepted within the leeway is not closed on arrival. An `exp` too
        // far ahead for the clock (a signer's bug) saturates to "far in the
        // future" instead of overflowing.
        let expires_at = Duration::try_from_secs_f64(exp + leeway)
            .ok()
            .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
            .or_else(|| {
                SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2))
            });
        Ok(Identity {
            user: sub.as_str().into(),
            guest: false,
            expires_at,
            permissions,
            data: super::IdentityData::default(),
        })
    }

    /// Why no token was found, naming what the request sent instead: an
    /// `Authorization` header of another scheme, or cookies of other names.
    fn missing(&self, parts: &http::request::Parts) -> String {
        let mut reason = format!(
            "missing token: send Authorization: Bearer <jwt>, ?token=<jwt> or the cookie {}",
            self.cookie_name
        );
        if let Some(v) = parts.headers.get(http::header::AUTHORIZATION) {
            let scheme = v.to_str().unwrap_or("").split(' ').next().unwrap_or("");
            reason.push_str(&format!(
                "; the Authorization header's scheme is {:?}, not Bearer",
                scheme
            ));
        }
        let names: Vec<&str> = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('=').map(|(name, _)| name))
            .collect();
        if !names.is_empty() {
            reason.push_str(&format!(
                "; the request's cookies are named {} (the token's cookie name is the jwt_cookie setting)",
                names.join(", ")
            ));
        }
        reason
    }

    /// Reads the header's `alg` before anything else, so that `none` or
    /// another algorithm is named as such rather than as a malformed token.
    fn check_algorithm(&self, token: &str) -> Result<(), String> {
        use base64::Engine as _;
        let malformed =
            || "token malformed: not three base64url parts with a JSON header".to_string();
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed())?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header).map_err(|_| malformed())?;
        let expected = format!("{:?}", self.algorithm);
        match header.get("alg") {
            Some(Value::String(alg)) if *alg == expected => Ok(()),
            Some(Value::String(alg)) => Err(format!(
                "token algorithm not accepted: {alg} (this server accepts {expected})"
            )),
            _ => Err(format!(
                "token algorithm not accepted: no alg (this server accepts {expected})"
            )),
        }
    }

    pub(crate) fn token<'a>(
        &self,
        parts: &'a http::request::Parts,
    ) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(v) = parts.headers.get(http::header::AUTHORIZATION)
            && let Some(t) = v.to_str().ok().and_then(super::bearer_token)
        {
            return Some(t.into());
        }
        if let Some(query) = parts.uri.query()
            && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            && let Some((_, t)) = pairs.into_iter().find(|(k, _)| k == "token")
        {
            return Some(t.into());
        }
        parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie_name)
            .map(|(_, value)| value.into())
    }
}

/// Why jsonwebtoken refused a token; with claim checks off, only the
/// encoding, the algorithm and the signature remain.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "token signature invalid",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted"
        }
        ErrorKind::Base64(_) => "token malformed: a part is not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "token malformed: its header or claims are not a JSON object of the right shape"
        }
        _ => "token malformed",
    }
}

fn lacks(claim: &str) -> String {
    format!("token lacks a required claim: {claim}")
}

/// A NumericDate claim (RFC 7519 section 2): seconds since the epoch, an
/// integer or not. `Ok(None)` when the claim is absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("token claim {name} is not a number")),
        Some(_) => Err(format!(
            "token claim {name} is not a number (seconds since 1970)"
        )),
    }
}

/// A claim that lists room patterns. `Ok(None)` when it is absent (or
/// `null`).
fn string_list<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<&'a str>>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| format!("token claim {name} is not an array of strings")),
        Some(_) => Err(format!("token claim {name} is not an array of strings")),
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, parts: &http::request::Parts) -> Result<Identity, Rejection> {
        match self.token(parts) {
            Some(token) => self.verify(&token),
            None => Err(Rejection::unauthorized(self.missing(parts))),
        }
    }

    async fn refresh(&self, token: &str) -> Result<Identity, Rejection> {
        self.verify(token)
    }
}

#[cfg(test)]
mod tests {
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
}
