//! `leave`: leave a room; answered `left`, or `not_joined` for a room the
//! connection is not in.

use switchboard_protocol::ErrorCode;
use switchboard_protocol::server::{Left, ServerFrame};

use crate::conn::Conn;
use crate::handlers::send_error;

/// Applies a `leave` and queues `left` or an `error`.
pub(crate) async fn apply(conn: &mut Conn, room: &str, id: Option<u64>) {
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
