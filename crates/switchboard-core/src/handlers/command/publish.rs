//! `publish`: a message to a room, as the connection's user; answered `ack`
//! (when it has an `id`) once the broker accepted it, or `error`.

use bytes::Bytes;
use switchboard_protocol::server::{Ack, ServerFrame};

use crate::conn::Conn;
use crate::handlers::send_error;

/// Applies a `publish` of `data` (JSON text, a slice of the client's frame)
/// and queues the `ack` or an `error`.
pub(crate) async fn apply(
    conn: &mut Conn,
    room: &str,
    data: Bytes,
    id: Option<u64>,
    key: Option<&str>,
) {
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
        Err(e) => send_error(conn, id, e.code(), e.message()),
    }
}
