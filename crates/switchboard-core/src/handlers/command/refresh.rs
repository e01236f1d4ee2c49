//! `refresh`: new credentials for the same user. Narrower claims take
//! effect at once: the rooms they no longer allow are left, each with a
//! `left` frame, before the `refreshed` reply.

use switchboard_protocol::server::{Left, Refreshed, ServerFrame};

use crate::conn::Conn;
use crate::handlers::send_error;

/// Applies a `refresh` and queues `left` frames and `refreshed`, or an
/// `error` (the old credentials then stay in force).
pub(crate) async fn apply(conn: &mut Conn, token: &str, id: Option<u64>) {
    match conn.refresh(token).await {
        Ok(expires_at) => {
            for room in conn.leave_forbidden_rooms().await {
                let _ = conn.send_frame(&ServerFrame::Left(Left {
                    room: room.to_string(),
                    id: None,
                }));
            }
            let expires_at = expires_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let _ = conn.send_frame(&ServerFrame::Refreshed(Refreshed { id, expires_at }));
        }
        Err(e) => send_error(conn, id, e.code(), e.to_string()),
    }
}
