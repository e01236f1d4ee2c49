//! `publish`: a message to a room, as the connection's user; answered `ack`
//! (when it has an `id`) once the broker accepted it, or `error`.

use bytes::Bytes;
use switchboard_protocol::server::{Ack, ServerFrame};

use crate::conn::Conn;
use crate::handlers::{send_error, send_refusal};
use crate::json::Json;

/// What a `publish` frame asks for beyond its room and data.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options<'a> {
    /// The idempotency key, checked against the protocol's rules.
    pub(crate) key: Option<&'a str>,
    /// Leave the publishing connection out of the delivery.
    pub(crate) except_self: bool,
}

/// Applies a `publish` of `data` (JSON text, a slice of the client's frame)
/// and queues the `ack` or an `error`. An endpoint's hooks are asked first,
/// once the server's own checks pass, and may replace `data`.
pub(crate) async fn apply(
    conn: &mut Conn,
    room: &str,
    data: Bytes,
    id: Option<u64>,
    options: Options<'_>,
) {
    let mut data = data;
    if let Some(hooks) = conn.endpoint.hooks.clone() {
        let checked = conn.check_may_publish(room).and_then(|()| {
            switchboard_protocol::validate_room(room, conn.node.config().max_room_name_len)
                .map_err(crate::node::PublishError::InvalidRoom)
        });
        if let Err(e) = checked {
            return send_error(conn, id, e.code(), e.message());
        }
        match hooks
            .publish(conn, room, &Json::checked(data.clone()))
            .await
        {
            Ok(None) => {}
            Ok(Some(replacement)) => data = replacement.into_bytes(),
            Err(refusal) => return send_refusal(conn, id, &refusal),
        }
    }
    match conn
        .publish_keyed(room, data, options.key, options.except_self)
        .await
    {
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
