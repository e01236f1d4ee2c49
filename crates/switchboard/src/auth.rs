//! Who is connecting. The gate asks an [`Authenticator`] for an [`Identity`]
//! before the handshake completes; a refusal never reaches a session.
//!
//! With no credentials configured, [`Guests`] gives every connection a
//! generated guest id. Identity always comes from the gate, never from a
//! message, so a client cannot claim to be someone else.

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;

/// The authenticated party behind a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id. Sending to this user reaches every connection that has it.
    pub user: Arc<str>,
    /// Whether the id was generated for an anonymous guest.
    pub guest: bool,
}

impl Identity {
    /// An identity for a known user.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Identity {
            user: id.into(),
            guest: false,
        }
    }

    /// A fresh guest identity: `guest-` and 16 random hex digits.
    pub fn guest() -> Self {
        Identity {
            user: Arc::from(format!("guest-{:016x}", rand::random::<u64>())),
            guest: true,
        }
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
/// credentials (sessions, API tokens, mTLS headers from a proxy).
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the identity, or the rejection to answer with.
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection>;
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
