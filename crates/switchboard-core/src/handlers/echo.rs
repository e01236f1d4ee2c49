use async_trait::async_trait;

use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};

/// Echo: every text or binary message comes back unchanged, same type.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        // A full queue closes the connection as a slow consumer; nothing
        // else to do with the error.
        let _ = match message {
            Inbound::Text(text) => {
                conn.send_encoded(crate::ws::frame::encode(crate::ws::OpCode::Text, &text))
            }
            Inbound::Binary(data) => conn.send_binary(&data),
        };
    }
}
