use async_trait::async_trait;
use switchboard_protocol::CloseCode;

use super::send_refusal;
use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};
use crate::hooks::Refusal;
use crate::json::Json;

/// Every message goes to the application: each text message is handed to
/// the endpoint's [`Hooks`](crate::hooks::Hooks) as an rpc of the method
/// `"message"`, with the message as its data (its JSON, or a JSON string
/// when the text is not JSON), and the application's answer, unless it is
/// `null`, is sent back as a text message of its own. A refusal comes back
/// as the protocol's `error` frame. This is the place for what a WebSocket
/// application's `on("message")` did, with the application in any
/// language. Binary messages close the connection with 1003.
#[derive(Clone, Copy, Debug, Default)]
pub struct App;

/// The method name an [`App`] endpoint's messages are sent under.
pub const APP_METHOD: &str = "message";

#[async_trait]
impl Handler for App {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        let text = match message {
            Inbound::Text(text) => text,
            Inbound::Binary(_) => {
                conn.close(
                    CloseCode::UNSUPPORTED_DATA,
                    "binary messages are not supported on this endpoint; send text",
                );
                return;
            }
        };
        let Some(hooks) = conn.endpoint.hooks.clone() else {
            let refusal = Refusal::Unsupported("this endpoint has no application to ask".into());
            return send_refusal(conn, None, &refusal);
        };
        let data = match serde_json::from_slice::<&serde_json::value::RawValue>(&text) {
            Ok(_) => Json::checked(text),
            // Text that is not JSON goes as a JSON string.
            Err(_) => match std::str::from_utf8(&text).map(Json::from_value) {
                Ok(Ok(json)) => json,
                _ => return,
            },
        };
        match hooks.rpc(conn, APP_METHOD, &data).await {
            Ok(answer) if answer.as_str() == "null" => {}
            Ok(answer) => {
                let _ = conn.send_text(answer.as_str());
            }
            Err(refusal) => send_refusal(conn, None, &refusal),
        }
    }
}
