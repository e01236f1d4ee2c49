//! [`Hooks`]: the application's say over what clients do. An endpoint with
//! hooks asks them before it lets a client's `join` or `publish` through,
//! and hands them its `rpc` frames to answer. The `switchboard` crate's
//! HTTP hooks ask an application over HTTP, in any language; a Rust
//! application can implement the trait in-process.
//!
//! A hook runs after the server's own checks (the frame's shape, the room's
//! name, the identity's permissions) and before anything is joined or
//! published: nothing the application refused is ever delivered. While a
//! hook runs, the connection's other frames wait (frames are handled one at
//! a time, in order), but what is delivered to the connection is still
//! written to it.

use async_trait::async_trait;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::server::{ErrorFrame, ServerFrame};

use crate::conn::Conn;
use crate::json::Json;

/// The application's decisions about one endpoint's clients. Each method
/// is called from the client's own task; a slow answer delays that client's
/// next frames only.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// A client asks to join `room` (its name is valid and its permissions
    /// allow it).
    async fn join(&self, conn: &Conn, room: &str) -> Result<(), Refusal>;

    /// A client publishes `data` to `room` (its permissions allow it):
    /// `Ok(None)` publishes it as sent, `Ok(Some(other))` publishes the
    /// application's replacement instead (with an id from its database, for
    /// example).
    async fn publish(&self, conn: &Conn, room: &str, data: &Json) -> Result<Option<Json>, Refusal>;

    /// A client calls `method` with `data` (JSON `null` when the frame had
    /// none); the answer goes back to it as `rpc_result`.
    async fn rpc(&self, conn: &Conn, method: &str, data: &Json) -> Result<Json, Refusal>;
}

#[async_trait]
impl<H: Hooks + ?Sized> Hooks for std::sync::Arc<H> {
    async fn join(&self, conn: &Conn, room: &str) -> Result<(), Refusal> {
        (**self).join(conn, room).await
    }

    async fn publish(&self, conn: &Conn, room: &str, data: &Json) -> Result<Option<Json>, Refusal> {
        (**self).publish(conn, room, data).await
    }

    async fn rpc(&self, conn: &Conn, method: &str, data: &Json) -> Result<Json, Refusal> {
        (**self).rpc(conn, method, data).await
    }
}

/// Why a hook said no, or could not say yes. Each becomes an `error` frame
/// that carries the client's `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The application refused: `refused`, with its message and, when it
    /// gave one, its own machine-readable code as `reason`.
    Refused {
        /// The application's explanation, shown to the client.
        message: String,
        /// The application's own code for it.
        reason: Option<String>,
    },
    /// The application could not be asked, did not answer in time, or
    /// answered something that is not an answer: `unavailable`. The client
    /// may try again later.
    Unavailable(String),
    /// The endpoint does not handle this at all (an `rpc` where no RPC
    /// handler is configured): `unknown_type`.
    Unsupported(String),
}

impl Refusal {
    /// A refusal with the application's message and optional code.
    pub fn refused(message: impl Into<String>, reason: Option<String>) -> Self {
        Refusal::Refused {
            message: message.into(),
            reason,
        }
    }

    /// The protocol's error code for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Refused { .. } => ErrorCode::Refused,
            Refusal::Unavailable(_) => ErrorCode::Unavailable,
            Refusal::Unsupported(_) => ErrorCode::UnknownType,
        }
    }

    /// The `error` frame that tells the client, answering `id`.
    pub fn to_frame(&self, id: Option<u64>) -> ServerFrame {
        let (message, reason) = match self {
            Refusal::Refused { message, reason } => (message.clone(), reason.clone()),
            Refusal::Unavailable(m) | Refusal::Unsupported(m) => (m.clone(), None),
        };
        ServerFrame::Error(ErrorFrame {
            id,
            code: self.code(),
            message,
            reason,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Refused { message, .. } => write!(f, "refused: {message}"),
            Refusal::Unavailable(m) => write!(f, "unavailable: {m}"),
            Refusal::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl std::error::Error for Refusal {}
