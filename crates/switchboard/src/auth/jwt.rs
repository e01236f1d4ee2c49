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
//! can never be used as an HMAC secret. `exp` and `sub` are required; `nbf`,
//! `iss` and `aud` are checked when present or configured, with a small
//! leeway for clock skew. The user id is `sub`; the room claims are read by
//! [`Permissions`].

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

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
    validation: Validation,
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

#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing claim is reported as missing rather
    // than as a malformed token.
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    read_rooms: Option<Vec<String>>,
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
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(JwtAuthenticator {
            key,
            validation,
            cookie_name: config.cookie_name,
            require_room_claims: config.require_room_claims,
            leeway: config.leeway.as_secs(),
        })
    }

    /// Verifies a token and returns the identity it proves.
    pub fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        let data = jsonwebtoken::decode::<Claims>(token.as_bytes(), &self.key, &self.validation)
            .map_err(|e| Rejection::unauthorized(reason(e.kind())))?;
        let claims = data.claims;
        let (Some(sub), Some(exp)) = (claims.sub, claims.exp) else {
            return Err(Rejection::unauthorized(reason(
                &ErrorKind::MissingRequiredClaim("exp".into()),
            )));
        };
        switchboard_protocol::validate_user(&sub)
            .map_err(|e| Rejection::unauthorized(format!("invalid sub: {e}")))?;
        let permissions = match (&claims.rooms, &claims.read_rooms) {
            (None, None) if self.require_room_claims => Permissions::none(),
            (None, None) => Permissions::all(),
            (rooms, read) => {
                let rooms: Vec<&str> = rooms.iter().flatten().map(String::as_str).collect();
                let read: Vec<&str> = read.iter().flatten().map(String::as_str).collect();
                Permissions::restricted(&rooms, &read)
            }
        };
        Ok(Identity {
            user: sub.into(),
            guest: false,
            // The same leeway that admitted the token keeps it alive, so a token
            // accepted within the leeway is not closed on arrival.
            // An `exp` too far ahead for the clock (a signer's bug) saturates
            // to "far in the future" instead of overflowing.
            expires_at: SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(exp.saturating_add(self.leeway)))
                .or_else(|| {
                    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2))
                }),
            permissions,
            data: super::IdentityData::default(),
        })
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

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidAudience => "token audience not accepted",
        ErrorKind::InvalidIssuer => "token issuer not accepted",
        ErrorKind::InvalidSignature => "token signature invalid",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted"
        }
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp, sub)",
        _ => "token malformed",
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, parts: &http::request::Parts) -> Result<Identity, Rejection> {
        match self.token(parts) {
            Some(token) => self.verify(&token),
            None => Err(Rejection::unauthorized(
                "missing token: send Authorization: Bearer <jwt>, ?token=<jwt> or a cookie",
            )),
        }
    }

    async fn refresh(&self, token: &str) -> Result<Identity, Rejection> {
        self.verify(token)
    }
}
