//! `join`: enter a room (see `docs/protocol.md#join`). With `since`, the
//! messages published after it are replayed before the `joined` reply; with
//! `presence: true`, the room's presence events follow.

use std::sync::Arc;

use switchboard_protocol::client::Since;

use crate::broker::Position;
use crate::conn::Conn;
use crate::handlers::{send_error, send_refusal};

/// Applies a `join` and queues `joined` (after any replay) or an `error`.
/// An endpoint's hooks are asked first, when the connection is not in the
/// room yet and the server's own checks pass.
pub(crate) async fn apply(
    conn: &mut Conn,
    room: &str,
    id: Option<u64>,
    since: Option<Since<'_>>,
    presence: bool,
    replay_new_epoch: bool,
) {
    if let Some(hooks) = conn.endpoint.hooks.clone()
        && !conn.rooms.contains_key(room)
    {
        if let Err(e) = crate::rooms::check_may_join(&conn.node, &conn.identity, room) {
            return send_error(conn, id, e.code(), e.message());
        }
        if let Err(refusal) = hooks.join(conn, room).await {
            return send_refusal(conn, id, &refusal);
        }
    }
    let since = since.map(|since| Position {
        offset: since.offset,
        epoch: Arc::from(&*since.epoch),
    });
    let mut member = conn.member();
    let mut result = member
        .join(room, since.as_ref(), Some(id), replay_new_epoch)
        .await
        .map(drop);
    if result.is_ok() && presence {
        result = member.watch_presence(room).await;
    }
    if let Err(e) = result {
        send_error(conn, id, e.code(), e.message());
    }
}
