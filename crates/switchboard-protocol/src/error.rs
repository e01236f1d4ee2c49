//! The `code` strings of error frames. They are part of the protocol: stable,
//! machine-readable, and documented in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// Why the server refused a client frame. Serialized as a snake_case string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text frame is not valid JSON, or not a JSON object.
    BadJson,
    /// The frame has no `type`, or a `type` this endpoint does not know.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type or an out-of-range value.
    InvalidField,
    /// The room name is empty, too long, or has a forbidden character.
    InvalidRoom,
    /// The connection is not in the room it tried to leave.
    NotJoined,
    /// The connection is already in as many rooms as the server allows.
    TooManyRooms,
    /// This endpoint does not accept messages from clients.
    ReadOnly,
    /// The user may not join or publish to this room, or a refreshed token
    /// names another user.
    Forbidden,
    /// A refreshed token is invalid or expired.
    Unauthorized,
    /// The client sent too many messages too fast.
    RateLimited,
    /// The broker did not accept the publish; it was not delivered.
    PublishFailed,
    /// The broker is unreachable: the publish was delivered to the members
    /// on the node that took it only, without an offset and not into the
    /// room's history. A retry without an idempotency key delivers it to
    /// those members again.
    PartiallyDelivered,
    /// A join could not be completed because the broker is unreachable; try
    /// again later.
    Unavailable,
    /// Something failed inside the server.
    Internal,
    /// The application refused it (a publish, a join or an rpc sent to it
    /// through a hook): the error's `message` is the application's, and its
    /// `reason`, when present, the application's own machine-readable code.
    Refused,
    /// A code this version of the protocol crate does not know (sent by a
    /// newer server). Never sent by this server.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire string of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PublishFailed => "publish_failed",
            ErrorCode::PartiallyDelivered => "partially_delivered",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Refused => "refused",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_newer_servers_parse_as_unknown() {
        let code: ErrorCode = serde_json::from_str("\"brand_new\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
        let frame = crate::server::ServerFrame::parse(
            r#"{"type":"error","id":1,"code":"brand_new","message":"x"}"#,
        );
        assert!(matches!(frame, Ok(crate::server::ServerFrame::Error(e)) if e.id == Some(1)));
    }

    #[test]
    fn wire_strings_match_serde() {
        for code in [
            ErrorCode::BadJson,
            ErrorCode::UnknownType,
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::InvalidRoom,
            ErrorCode::NotJoined,
            ErrorCode::TooManyRooms,
            ErrorCode::ReadOnly,
            ErrorCode::Forbidden,
            ErrorCode::Unauthorized,
            ErrorCode::RateLimited,
            ErrorCode::PublishFailed,
            ErrorCode::PartiallyDelivered,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
