//! The transport seam: how one connection's frames reach its client and how
//! what the client sends comes back. The session (rooms, acks, recovery,
//! heartbeats, slow-consumer close, rate limits) runs over any
//! [`Transport`] unchanged.
//!
//! - [`websocket`]: RFC 6455 over a byte stream, the first transport. The
//!   HTTP layer makes one from an upgraded socket with
//!   [`WebSocket::over_tcp`] (whose socket the node's flushers also write to
//!   directly) or [`WebSocket::over_io`].
//!
//! # Frames
//!
//! What a transport is asked to write are server frames in one canonical
//! form: unmasked RFC 6455 frames (a 2 to 10 byte header, then the
//! payload), built once per message and shared, byte for byte, by every
//! recipient on the node. The WebSocket transport writes them as they are;
//! a transport that frames differently (an HTTP stream, say) takes the
//! payload from behind the header ([`frame_payload`]) and frames it its own
//! way. Payloads are the protocol's JSON ([`Encoding::Json`]).
//!
//! # Adding a transport
//!
//! Implement [`Transport`] for the new wire, build a [`Conn`]
//! with [`Node::admit`](crate::Node::admit) once the request has passed the
//! gate, and run the session with [`run`]. Frames are
//! queued in the connection's outbox and handed to
//! [`Transport::poll_write`] by the session's task; only a transport over a
//! TCP socket takes the flushers' direct writes as well.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use switchboard_protocol::CloseCode;

use crate::conn::Conn;
use crate::endpoint::{Endpoint, Inbound};

pub mod websocket;

pub use websocket::WebSocket;

/// The encoding of the payloads a transport carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// The protocol's JSON frames as text (`docs/protocol.md`); binary
    /// messages pass through to handlers as they are.
    Json,
}

/// What a client sent, as a transport reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Received {
    /// A data message, for the endpoint's handler.
    Data(Inbound),
    /// A transport-level ping: answer with [`Transport::pong`].
    Ping(Bytes),
    /// A transport-level pong: the client is alive.
    Pong,
    /// The client closes, with its code and reason if it gave them; the
    /// session answers with a close frame of the same code.
    Close(Option<(u16, String)>),
    /// The client went away without closing.
    Eof,
    /// The client broke the transport's rules: close with this code.
    Invalid {
        /// The close code to send.
        code: CloseCode,
        /// What was wrong, sent as the close reason.
        reason: String,
    },
}

/// One connection's wire, as the session uses it. See the module docs.
///
/// Every method is called by the connection's own task only, and none may
/// block: `poll_*` methods return `Pending` (with the waker registered) when
/// the wire is not ready.
pub trait Transport: Send + Unpin {
    /// The transport's name, as logs and metrics give it (`"websocket"`).
    fn name(&self) -> &'static str;

    /// The encoding of the payloads it carries.
    fn encoding(&self) -> Encoding;

    /// The next thing the client sent.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Received>>;

    /// Writes one or many frames (see [Frames](self#frames)), as much as the
    /// wire takes now; returns how many bytes of them it took. A frame may
    /// be taken in part: the rest is offered again by the next call.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        frames: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Pushes out what earlier writes buffered.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Ends the wire once the close frame is written.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The frame that asks the client to prove it is alive: sent every
    /// heartbeat interval, answered by [`Received::Pong`].
    fn ping(&self) -> Bytes;

    /// The answer to a [`Received::Ping`].
    fn pong(&self, payload: &[u8]) -> Bytes;

    /// The frame that closes the connection with `code` and `reason`.
    fn close(&self, code: CloseCode, reason: &str) -> Bytes;

    /// Whether the client answers a close frame with its own (the
    /// WebSocket closing handshake), which the session then waits for,
    /// briefly, before it shuts the wire.
    fn answers_close(&self) -> bool;
}

/// The payload of a canonical frame (see [Frames](self#frames)), for a
/// transport that frames payloads its own way. `None` if `frame` is not a
/// whole unmasked frame.
pub fn frame_payload(frame: &[u8]) -> Option<&[u8]> {
    let len7 = usize::from(*frame.get(1)? & 0x7f);
    if frame[1] & 0x80 != 0 {
        return None;
    }
    let (start, len) = match len7 {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
        ),
        127 => {
            let b: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(b)).ok()?)
        }
        n => (2, n),
    };
    frame.get(start..)?.get(..len)
}

/// Runs one admitted connection over `transport`, from open to close: the
/// future is what the connection costs while it is open, so spawn it on the
/// node's session tracker with [`Node::spawn_session`](crate::Node::spawn_session).
///
/// The connection and endpoint are borrowed from the task that owns them,
/// so that they are stored once in the task.
pub fn run<'a, T: Transport + 'a>(
    transport: T,
    conn: &'a mut Conn,
    endpoint: &'a Arc<Endpoint>,
) -> impl Future<Output = ()> + Send + 'a {
    crate::session::run(
        crate::session::Channel::new(transport, conn),
        conn,
        endpoint,
    )
}

#[cfg(test)]
mod tests {
    use super::frame_payload;
    use crate::ws::{OpCode, frame};

    #[test]
    fn frame_payload_finds_the_payload_behind_every_header_length() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let encoded = frame::encode(OpCode::Text, &payload);
            assert_eq!(frame_payload(&encoded), Some(&payload[..]), "{len} bytes");
        }
        assert_eq!(frame_payload(&[0x81]), None, "no length byte");
        assert_eq!(frame_payload(&[0x81, 5, b'a']), None, "cut short");
        assert_eq!(
            frame_payload(&[0x81, 0x81, 0, 0, 0, 0, b'a']),
            None,
            "masked"
        );
    }
}
