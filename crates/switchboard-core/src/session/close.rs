//! Closing: the close handshake the server starts, and what ends the
//! connection otherwise (the client's close, a missed pong, expired
//! credentials, a protocol error, a dropped socket).

use std::time::Duration;

use super::Event;
use super::channel::Channel;
use crate::conn::Conn;
use crate::endpoint::Disconnect;
use crate::transport::{Received, Transport};
use switchboard_protocol::CloseCode;

/// Longest wait for the peer during a close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

impl<T: Transport> Channel<T> {
    /// Server-initiated close: drop what the client will never read if the
    /// close is for a slow consumer, send the close frame, wait briefly for
    /// the client's close frame, then shut the socket.
    async fn close(&mut self, conn: &Conn, code: CloseCode, reason: &str, discard: bool) {
        if discard {
            self.discard_unwritten();
        }
        self.queue(conn, self.transport.close(code, reason));
        let deadline = CLOSE_GRACE.min(conn.node.config().heartbeat_timeout);
        if self.flush_within(conn, deadline).await.is_ok() && self.transport.answers_close() {
            let _ = tokio::time::timeout(deadline, self.await_peer_close()).await;
        }
        self.shutdown_within(deadline).await;
    }

    /// Fails the connection after a protocol error (RFC 6455, section
    /// 7.1.7): sends the close frame and ends the server's side of the
    /// stream at once, without waiting for the client's answer, which the
    /// client may not be able to send (it can be in the middle of a frame).
    /// Then, within the close grace, reads what the client still sends
    /// until its close frame or the end of its side: closing the socket
    /// with bytes unread, or with bytes still on their way, would reset the
    /// connection, and a client that is busy writing (the rest of a message
    /// over the size limit) could see the reset before the close frame.
    async fn fail(&mut self, conn: &Conn, code: CloseCode, reason: &str) {
        self.queue(conn, self.transport.close(code, reason));
        let deadline = CLOSE_GRACE.min(conn.node.config().heartbeat_timeout);
        let flushed = self.flush_within(conn, deadline).await.is_ok();
        self.shutdown_within(deadline).await;
        if flushed && self.transport.answers_close() {
            let _ = tokio::time::timeout(deadline, self.await_peer_close()).await;
        }
    }

    /// Ends the wire, waiting at most `limit`.
    async fn shutdown_within(&mut self, limit: Duration) {
        let shutdown = std::future::poll_fn(|cx| self.transport.poll_shutdown(cx));
        let _ = tokio::time::timeout(limit, shutdown).await;
    }
}

/// A server-initiated close with the close handshake; `discard` drops
/// queued frames first (for a client that is not reading them).
pub(super) async fn close_with<T: Transport>(
    t: &mut Channel<T>,
    conn: &mut Conn,
    code: CloseCode,
    reason: String,
    discard: bool,
) -> Disconnect {
    t.close(conn, code, &reason, discard).await;
    Disconnect {
        code: Some(code.0),
        reason,
        by_server: true,
    }
}

/// Handles an event that ends the connection.
pub(super) async fn end<T: Transport>(
    t: &mut Channel<T>,
    conn: &mut Conn,
    event: Event,
    config: &crate::Config,
) -> Disconnect {
    match event {
        Event::Expired => {
            let reason = "credentials expired; refresh them and reconnect";
            close_with(t, conn, CloseCode::TOKEN_EXPIRED, reason.into(), false).await
        }
        Event::Received(Received::Close(close)) => {
            let (code, reason) = close.unwrap_or((CloseCode::NORMAL.0, String::new()));
            t.queue(conn, t.transport.close(CloseCode(code), ""));
            let grace = CLOSE_GRACE.min(config.heartbeat_timeout);
            let _ = t.flush_within(conn, grace).await;
            t.shutdown_within(grace).await;
            Disconnect {
                code: Some(code),
                reason,
                by_server: false,
            }
        }
        Event::CloseRequested(req) => {
            let discard = req.code == CloseCode::SLOW_CONSUMER;
            close_with(t, conn, req.code, req.reason, discard).await
        }
        Event::HeartbeatDue => {
            conn.node.stats().heartbeat_timeouts.inc();
            let code = CloseCode::HEARTBEAT_TIMEOUT;
            let reason = "no pong within the heartbeat timeout";
            t.discard_unwritten();
            t.queue(conn, t.transport.close(code, reason));
            // The peer is presumed dead: one short attempt, no handshake.
            let _ = t.flush_within(conn, Duration::from_millis(100)).await;
            Disconnect {
                code: Some(code.0),
                reason: reason.into(),
                by_server: true,
            }
        }
        Event::Received(Received::Eof) => Disconnect {
            code: None,
            reason: "connection dropped without a close frame".into(),
            by_server: false,
        },
        Event::Received(Received::Invalid { code, reason }) => {
            t.fail(conn, code, &reason).await;
            Disconnect {
                code: Some(code.0),
                reason,
                by_server: true,
            }
        }
        Event::Io(e) => Disconnect {
            code: None,
            reason: format!("i/o error: {e}"),
            by_server: false,
        },
        // Data, pings, pongs and a heartbeat with no ping outstanding are
        // handled in the loop and never reach here.
        Event::Received(_) => Disconnect {
            code: None,
            reason: "unexpected event".into(),
            by_server: true,
        },
    }
}
