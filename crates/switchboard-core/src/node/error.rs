//! [`PublishError`]: why a publish was not delivered, with its protocol
//! error code and its HTTP API status in one place.

use switchboard_protocol::{ErrorCode, NameError};

use crate::broker::BrokerError;

/// A publish was not delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The room name breaks the naming rules.
    #[error("invalid room name: {0}")]
    InvalidRoom(NameError),
    /// The user id breaks the naming rules.
    #[error("invalid user id: {0}")]
    InvalidUser(NameError),
    /// The publisher's permissions do not allow this room.
    #[error("not allowed to publish to room {0:?}")]
    Forbidden(String),
    /// The payload (its size first) is larger than `max_message_size` (the
    /// second).
    #[error("payload of {0} bytes exceeds the {1}-byte limit (max_message_size)")]
    TooLarge(usize, usize),
    /// The idempotency key breaks its rules (1 to 128 visible ASCII
    /// characters).
    #[error("idempotency key {0}")]
    InvalidKey(NameError),
    /// The connection id to leave out is not one (a node id, `-`, and a
    /// number, as the `welcome` frame's `conn` gives it).
    #[error("except {0:?} is not a connection id (as the welcome frame's conn gives it)")]
    InvalidExcept(String),
    /// A typed value could not be serialized to JSON.
    #[error("the value cannot be serialized to JSON: {0}")]
    Unserializable(String),
    /// The broker did not accept the message; it was not delivered.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker is unreachable: the message was delivered to this node's
    /// members only, without an offset, and is not in the room's history. A
    /// retry delivers it to those members again; a publish with an
    /// idempotency key is never delivered this way (it fails with
    /// [`PublishError::Broker`] instead), so that its retry is safe.
    #[error(
        "broker unavailable ({0}); delivered to this node's members only, not to other nodes \
         and not into history"
    )]
    LocalOnly(String),
}

impl PublishError {
    /// The protocol's error code for this failure, the same in an `error`
    /// frame and in an HTTP API error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PublishError::InvalidRoom(_) => ErrorCode::InvalidRoom,
            PublishError::Forbidden(_) => ErrorCode::Forbidden,
            PublishError::InvalidUser(_)
            | PublishError::TooLarge(..)
            | PublishError::InvalidKey(_)
            | PublishError::InvalidExcept(_)
            | PublishError::Unserializable(_) => ErrorCode::InvalidField,
            PublishError::Broker(_) => ErrorCode::PublishFailed,
            PublishError::LocalOnly(_) => ErrorCode::PartiallyDelivered,
        }
    }

    /// The HTTP API's status and error code for this failure (see
    /// `docs/http-api.md`). The API names two failures more precisely than
    /// the protocol's `invalid_field`: `invalid_user` and `too_large`.
    pub fn http_status_and_code(&self) -> (u16, &'static str) {
        match self {
            PublishError::InvalidUser(_) => (400, "invalid_user"),
            PublishError::TooLarge(..) => (413, "too_large"),
            PublishError::Forbidden(_) => (403, self.code().as_str()),
            PublishError::Broker(_) | PublishError::LocalOnly(_) => (503, self.code().as_str()),
            PublishError::InvalidRoom(_)
            | PublishError::InvalidKey(_)
            | PublishError::InvalidExcept(_)
            | PublishError::Unserializable(_) => (400, self.code().as_str()),
        }
    }

    /// The message sent with the error: this error's text, worded for the
    /// client (`room name …`, `not delivered: …`).
    pub fn message(&self) -> String {
        match self {
            PublishError::InvalidRoom(e) => format!("room name {e}"),
            PublishError::InvalidUser(e) => format!("user id {e}"),
            PublishError::Broker(e) => format!("not delivered: {e}"),
            e => e.to_string(),
        }
    }
}
