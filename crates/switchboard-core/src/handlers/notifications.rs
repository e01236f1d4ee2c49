use async_trait::async_trait;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::client::{self, ClientFrame};

use super::send_error;
use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};

/// Server-to-user push: the connection receives its user's messages and
/// broadcasts. A `refresh` text frame is accepted; anything else the client
/// sends, binary messages included, is refused with a `read_only` error frame
/// carrying the message's `id` when one can be read, and the connection stays
/// open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notifications;

#[async_trait]
impl Handler for Notifications {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        if let Some(Ok(ClientFrame::Refresh { token, id })) = message.as_text().map(client::parse) {
            return super::command::refresh::apply(conn, &token, id).await;
        }
        // Echo the id back when the message had one, text or binary, so a
        // client library can fail the matching request.
        let id = super::message_id(&message);
        send_error(
            conn,
            id,
            ErrorCode::ReadOnly,
            "this endpoint only delivers messages; publish through /ws/chat or the HTTP API",
        );
    }
}
