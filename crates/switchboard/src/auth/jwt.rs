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
mod tests;
