//! Who is connecting, and what they may do. The gate asks an
//! [`Authenticator`] for an [`Identity`] before the handshake completes; a
//! refusal never reaches a session.
//!
//! - [`Guests`]: the default when no credentials are configured; every
//!   connection gets a generated guest id and may use every room.
//! - `switchboard::auth::jwt::JwtAuthenticator` (in the `switchboard`
//!   crate): JSON Web Tokens (HS256, RS256, ES256) from a header, a query
//!   parameter or a cookie.
//! - [`permissions`]: which rooms a token lets its user join and publish to.
//!
//! Identity always comes from the gate, never from a message, so a client
//! cannot claim to be someone else.

pub mod permissions;

use std::any::Any;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::StatusCode;

pub use permissions::{Pattern, Permissions};

/// The authenticated party behind a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id. Sending to this user reaches every connection that has it.
    pub user: Arc<str>,
    /// Whether the id was generated for an anonymous guest.
    pub guest: bool,
    /// When the credentials stop being valid. The session closes the
    /// connection then (4004) unless the client refreshed them.
    pub expires_at: Option<SystemTime>,
    /// The rooms the user may join and publish to.
    pub permissions: Permissions,
    /// Data the authenticator attached for the application (a database id,
    /// a tenant, roles): handlers read it with [`Identity::data`] through
    /// [`Conn::identity`](crate::Conn::identity). Empty by default.
    pub data: IdentityData,
}

/// Typed data attached to an [`Identity`] by an authenticator. Cheap to
/// clone (one `Arc`), one pointer wide when empty. Two identities' data
/// compare equal when they are the same attachment.
#[derive(Clone, Default)]
pub struct IdentityData(Option<Arc<Box<dyn Any + Send + Sync>>>);

impl IdentityData {
    /// Wraps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        IdentityData(Some(Arc::new(Box::new(value))))
    }

    /// The value, if one of type `T` is attached.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|b| b.downcast_ref())
    }
}

impl PartialEq for IdentityData {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for IdentityData {}

impl std::fmt::Debug for IdentityData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "IdentityData(..)"
        } else {
            "IdentityData(empty)"
        })
    }
}

impl Identity {
    /// An identity for a known user, with no expiry and every room allowed.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Identity {
            user: id.into(),
            guest: false,
            expires_at: None,
            permissions: Permissions::all(),
            data: IdentityData::default(),
        }
    }

    /// A fresh guest identity: `guest-` and 16 random hex digits.
    pub fn guest() -> Self {
        Identity {
            user: Arc::from(format!("guest-{:016x}", rand::random::<u64>())),
            guest: true,
            expires_at: None,
            permissions: Permissions::all(),
            data: IdentityData::default(),
        }
    }

    /// Attaches `value` for the handlers to read with [`Identity::data`].
    /// An identity holds one attachment; attaching again replaces it.
    pub fn with_data<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.data = IdentityData::new(value);
        self
    }

    /// The attached value, if one of type `T` is attached.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.get()
    }
}

/// Why the gate refused a request. Answered with its status and a short
/// reason before any handshake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Rejection {
    /// The HTTP status (401, 403, 429, ...).
    pub status: StatusCode,
    /// A short reason, sent as the body.
    pub reason: String,
}

impl Rejection {
    /// A 401 with a reason.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    /// A 403 with a reason.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

/// Decides who an upgrade request is. Implement it to plug in your own
/// credentials (sessions, API tokens, headers set by a trusted proxy).
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the identity, or the rejection to answer with.
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection>;

    /// Checks fresh credentials sent over an open connection (the `refresh`
    /// frame). Default: refresh is not supported.
    async fn refresh(&self, token: &str) -> Result<Identity, Rejection> {
        let _ = token;
        Err(Rejection::unauthorized(
            "this server does not accept refreshed credentials",
        ))
    }

    /// Asked when a connection's credentials expire, before it is closed:
    /// new credentials for the same user (with a later expiry), or a
    /// refusal, after which the connection closes with 4004 as before.
    /// Default: no renewal (a JWT is renewed by the client's `refresh`).
    async fn renew(&self, identity: &Identity) -> Result<Identity, Rejection> {
        let _ = identity;
        Err(Rejection::unauthorized(
            "credentials expired; refresh them and reconnect",
        ))
    }
}

/// The default when no credentials are configured: everyone is a guest with a
/// generated id.
#[derive(Clone, Copy, Debug, Default)]
pub struct Guests;

#[async_trait]
impl Authenticator for Guests {
    async fn authenticate(&self, _request: &http::request::Parts) -> Result<Identity, Rejection> {
        Ok(Identity::guest())
    }
}

/// The credentials of an `Authorization: Bearer <token>` header value. The
/// scheme is case-insensitive (RFC 9110 section 11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
