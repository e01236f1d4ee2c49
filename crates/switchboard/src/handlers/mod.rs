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

use crate::conn::Conn;

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
