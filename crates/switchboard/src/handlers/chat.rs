use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use switchboard_protocol::client::{self, ClientFrame};

use switchboard_protocol::client::Since;
use switchboard_protocol::server::{Ack, Left, Presence, PresenceMember, ServerFrame};
use switchboard_protocol::{CloseCode, ErrorCode};

use super::send_error;
use crate::broker::Position;
use crate::conn::{Conn, JoinError};
use crate::endpoint::{Handler, Inbound};
use crate::node::PublishError;

/// Chat rooms over the Switchboard protocol.
///
/// - `join` answers `joined` with the room's current offset and epoch; with
///   `since`, it first replays what the client missed (see
///   `Conn::join_replying`); with `presence: true`, the connection also
///   receives the room's `presence_event` frames.
/// - `presence` answers who is in a room, across nodes.
/// - `leave` answers `left`, or `not_joined` for a room the connection is
///   not in.
/// - `publish` goes to the broker; with an `id`, the client gets `ack` (with
///   the offset) once the broker accepted it, or `error` if it did not.
///   Publishing does not require being in the room.
/// - `refresh` replaces the credentials (see [`Conn::refresh`]).
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
            } => join(conn, &room, id, since, presence).await,
            ClientFrame::Presence { room, id } => presence(conn, &room, id).await,
            ClientFrame::Leave { room, id } => leave(conn, &room, id).await,
            ClientFrame::Refresh { token, id } => super::refresh(conn, &token, id).await,
            ClientFrame::Publish {
                room,
                data,
                id,
                idempotency_key,
            } => {
                // `data` borrows from the frame text: slice the same bytes
                // instead of copying the payload.
                let data = text.slice_ref(data.get().as_bytes());
                publish(conn, &room, data, id, idempotency_key.as_deref()).await
            }
        }
    }
}

async fn join(
    conn: &mut Conn,
    room: &str,
    id: Option<u64>,
    since: Option<Since<'_>>,
    presence: bool,
) {
    let since = since.map(|since| Position {
        offset: since.offset,
        epoch: Arc::from(&*since.epoch),
    });
    let result = conn.join_replying(room, since.as_ref(), id).await;
    let result = match result {
        Ok(()) if presence => conn.watch_presence(room).await,
        other => other,
    };
    if let Err(e) = result {
        join_error(conn, id, e);
    }
}

fn join_error(conn: &Conn, id: Option<u64>, e: JoinError) {
    match e {
        JoinError::InvalidRoom(e) => {
            send_error(conn, id, ErrorCode::InvalidRoom, format!("room name {e}"))
        }
        e @ JoinError::TooManyRooms(_) => {
            send_error(conn, id, ErrorCode::TooManyRooms, e.to_string())
        }
        e @ JoinError::Forbidden(_) => send_error(conn, id, ErrorCode::Forbidden, e.to_string()),
        JoinError::Broker(e) => send_error(conn, id, ErrorCode::Unavailable, e.to_string()),
    }
}

async fn presence(conn: &mut Conn, room: &str, id: Option<u64>) {
    match conn.presence(room).await {
        Ok(entries) => {
            let members = entries
                .into_iter()
                .map(|e| PresenceMember {
                    user: e.user.to_string(),
                    connections: e.connections,
                })
                .collect();
            let frame = Presence {
                room: room.to_string(),
                id,
                members,
            };
            let _ = conn.send_frame(&ServerFrame::Presence(frame));
        }
        Err(e) => join_error(conn, id, e),
    }
}

async fn leave(conn: &mut Conn, room: &str, id: Option<u64>) {
    if let Err(e) =
        switchboard_protocol::validate_room(room, conn.node().config().max_room_name_len)
    {
        return send_error(conn, id, ErrorCode::InvalidRoom, format!("room name {e}"));
    }
    if conn.leave(room).await {
        let _ = conn.send_frame(&ServerFrame::Left(Left {
            room: room.to_string(),
            id,
        }));
    } else {
        send_error(
            conn,
            id,
            ErrorCode::NotJoined,
            format!("not in room {room:?}"),
        );
    }
}

async fn publish(conn: &mut Conn, room: &str, data: Bytes, id: Option<u64>, key: Option<&str>) {
    match conn.publish_keyed(room, data, key).await {
        Ok(receipt) => {
            if let Some(id) = id {
                let _ = conn.send_frame(&ServerFrame::Ack(Ack {
                    id,
                    offset: receipt.offset,
                    duplicate: receipt.duplicate,
                }));
            }
        }
        Err(e) => {
            let code = e.code();
            let message = match e {
                PublishError::InvalidRoom(e) => format!("room name {e}"),
                PublishError::Broker(e) => format!("not delivered: {e}"),
                e => e.to_string(),
            };
            send_error(conn, id, code, message)
        }
    }
}
