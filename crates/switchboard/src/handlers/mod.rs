//! The built-in endpoint behaviours.
//!
//! - [`Echo`]: every message comes back unchanged, same type.
//! - [`Chat`]: rooms over the Switchboard protocol (`join`, `leave`,
//!   `publish` with acknowledgements).
//! - [`Notifications`]: server push only; client messages are refused.

mod chat;
mod echo;
mod notifications;

pub use chat::Chat;
pub use echo::Echo;
pub use notifications::Notifications;

use switchboard_protocol::ErrorCode;
use switchboard_protocol::server::{ErrorFrame, ServerFrame};

use switchboard_protocol::server::Refreshed;

use crate::conn::{Conn, RefreshError};
use crate::endpoint::Inbound;

/// The `id` of a client message, whenever one can be read: from a valid
/// client frame, and also from a frame that is not otherwise valid but has a
/// valid `id`. A binary message is read like a text one when its payload is
/// UTF-8, so that an error about it can name the request it answers.
pub(crate) fn message_id(message: &Inbound) -> Option<u64> {
    let (Inbound::Text(bytes) | Inbound::Binary(bytes)) = message;
    let text = std::str::from_utf8(bytes).ok()?;
    match switchboard_protocol::client::parse(text) {
        Ok(frame) => frame.id(),
        Err(e) => e.id,
    }
}

/// Queues an `error` frame. A full queue already closes the connection, so
/// the push result needs no handling here.
pub(crate) fn send_error(
    conn: &Conn,
    id: Option<u64>,
    code: ErrorCode,
    message: impl Into<String>,
) {
    let _ = conn.send_frame(&ServerFrame::Error(ErrorFrame {
        id,
        code,
        message: message.into(),
    }));
}

/// Handles a `refresh` frame: new credentials for the same user.
pub(crate) async fn refresh(conn: &mut Conn, token: &str, id: Option<u64>) {
    match conn.refresh(token).await {
        Ok(expires_at) => {
            // Narrower claims take effect at once: leave what they no longer
            // allow, and say so.
            for room in conn.leave_forbidden_rooms().await {
                let _ = conn.send_frame(&ServerFrame::Left(switchboard_protocol::server::Left {
                    room: room.to_string(),
                    id: None,
                }));
            }
            let expires_at = expires_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let _ = conn.send_frame(&ServerFrame::Refreshed(Refreshed { id, expires_at }));
        }
        Err(e @ RefreshError::Invalid(_)) => {
            send_error(conn, id, ErrorCode::Unauthorized, e.to_string())
        }
        Err(e @ RefreshError::OtherUser) => {
            send_error(conn, id, ErrorCode::Forbidden, e.to_string())
        }
    }
}
