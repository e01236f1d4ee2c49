use async_trait::async_trait;
use switchboard_protocol::CloseCode;
use switchboard_protocol::client::{self, ClientFrame};

use super::{command, send_error};
use crate::conn::Conn;
use crate::endpoint::{Handler, Inbound};

/// Chat rooms over the Switchboard protocol.
///
/// - `join` answers `joined` with the room's current offset and epoch; with
///   `since`, it first replays what the client missed (see
///   the `join` command); with `presence: true`, the connection also
///   receives the room's `presence_event` frames.
/// - `presence` answers who is in a room, across nodes.
/// - `leave` answers `left`, or `not_joined` for a room the connection is
///   not in.
/// - `publish` goes to the broker; with an `id`, the client gets `ack` (with
///   the offset) once the broker accepted it, or `error` if it did not.
///   Publishing does not require being in the room.
/// - `refresh` replaces the credentials (see [`Conn::refresh`]).
/// - `rpc` is answered by the endpoint's [`Hooks`](crate::hooks::Hooks)
///   (`unknown_type` without them), which are also asked before a `join`
///   or a `publish` goes through.
/// - Binary frames have no meaning here: the connection is closed with 1003.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chat;

#[async_trait]
impl Handler for Chat {
    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        let text = match &message {
            Inbound::Text(bytes) => bytes.clone(),
            Inbound::Binary(_) => {
                conn.close(
                    CloseCode::UNSUPPORTED_DATA,
                    "binary frames are not supported on this endpoint; send JSON text frames",
                );
                return;
            }
        };
        let Some(text_str) = message.as_text() else {
            return;
        };
        let frame = match client::parse(text_str) {
            Ok(frame) => frame,
            Err(e) => return send_error(conn, e.id, e.code, e.message),
        };
        match frame {
            ClientFrame::Join {
                room,
                id,
                since,
                presence,
                replay_new_epoch,
            } => command::join::apply(conn, &room, id, since, presence, replay_new_epoch).await,
            ClientFrame::Presence { room, id } => command::presence::apply(conn, &room, id).await,
            ClientFrame::Leave { room, id } => command::leave::apply(conn, &room, id).await,
            ClientFrame::Refresh { token, id } => command::refresh::apply(conn, &token, id).await,
            ClientFrame::Publish {
                room,
                data,
                id,
                idempotency_key,
                except_self,
            } => {
                // `data` borrows from the frame text: slice the same bytes
                // instead of copying the payload.
                let data = text.slice_ref(data.get().as_bytes());
                let options = command::publish::Options {
                    key: idempotency_key.as_deref(),
                    except_self,
                };
                command::publish::apply(conn, &room, data, id, options).await
            }
            ClientFrame::Rpc { method, data, id } => {
                command::rpc::apply(conn, &method, data, id).await
            }
        }
    }
}
