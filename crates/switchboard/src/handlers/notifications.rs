use async_trait::async_trait;
use switchboard_protocol::ErrorCode;

use super::send_error;
use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};

/// Server-to-user push: the connection receives its user's messages and
/// broadcasts. Anything the client sends is refused with a `read_only` error
/// frame; the connection stays open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notifications;

#[async_trait]
impl Handler for Notifications {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        // Echo the id back when the client sent a frame with one, so a client
        // library can fail the matching request.
        let id = message.as_text().and_then(|t| {
            switchboard_protocol::client::parse(t)
                .ok()
                .and_then(|f| f.id())
        });
        send_error(
            conn,
            id,
            ErrorCode::ReadOnly,
            "this endpoint only delivers messages; publish through /ws/chat or the HTTP API",
        );
    }
}
