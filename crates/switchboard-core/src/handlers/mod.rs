//! The built-in endpoint behaviours.
//!
//! - [`Echo`]: every message comes back unchanged, same type.
//! - [`Chat`]: rooms over the Switchboard protocol (`join`, `leave`,
//!   `publish` with acknowledgements).
//! - [`Notifications`]: server push only; client messages are refused.
//! - [`App`]: every message goes to the application (the endpoint's hooks)
//!   and its answers come back.
//! - `command`: one module per client command (join, leave, publish,
//!   presence, refresh, rpc), shared by the endpoints that speak the
//!   protocol.

mod app;
mod chat;
mod command;
mod echo;
mod notifications;

pub use app::{APP_METHOD, App};
pub use chat::Chat;
pub use echo::Echo;
pub use notifications::Notifications;

use switchboard_protocol::ErrorCode;
use switchboard_protocol::server::{ErrorFrame, ServerFrame};

use crate::conn::Conn;
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
        reason: None,
    }));
}

/// Queues the `error` frame of a hook's refusal.
pub(crate) fn send_refusal(conn: &Conn, id: Option<u64>, refusal: &crate::hooks::Refusal) {
    let _ = conn.send_frame(&refusal.to_frame(id));
}
