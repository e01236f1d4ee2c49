use async_trait::async_trait;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::client::{self, ClientFrame};

use super::send_error;
use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};

/// Server-to-user push: the connection receives its user's messages and
/// broadcasts. A `refresh` frame is accepted; anything else the client sends
/// is refused with a `read_only` error frame, and the connection stays open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notifications;

#[async_trait]
impl Handler for Notifications {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        let parsed = message.as_text().map(client::parse);
        if let Some(Ok(ClientFrame::Refresh { token, id })) = &parsed {
            return super::refresh(conn, token, *id).await;
        }
        // Echo the id back when the frame had one, so a client library can
        // fail the matching request.
        let id = match parsed {
            Some(Ok(frame)) => frame.id(),
            Some(Err(e)) => e.id,
            None => None,
        };
        send_error(
            conn,
            id,
            ErrorCode::ReadOnly,
            "this endpoint only delivers messages; publish through /ws/chat or the HTTP API",
        );
    }
}
