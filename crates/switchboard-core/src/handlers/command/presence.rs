//! `presence`: who is in a room, on every node.

use switchboard_protocol::server::{Presence, PresenceMember, ServerFrame};

use crate::conn::Conn;
use crate::handlers::send_error;

/// Applies a `presence` query and queues the `presence` reply or an `error`.
pub(crate) async fn apply(conn: &mut Conn, room: &str, id: Option<u64>) {
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
        Err(e) => send_error(conn, id, e.code(), e.message()),
    }
}
