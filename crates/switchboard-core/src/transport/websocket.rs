//! The WebSocket transport: RFC 6455 frames over a byte stream, after the
//! HTTP layer has answered the handshake with `101`.
//!
//! Bytes are read into a buffer on the stack and handed to the
//! frame decoder, which keeps a heap buffer only while a frame is incomplete:
//! an idle connection holds no read buffer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use switchboard_protocol::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::either::Either;

use super::{Encoding, Received, Transport};
use crate::conn::Conn;
use crate::endpoint::Inbound;
use crate::ws::{Decoder, Message, OpCode, frame};

/// Size of the on-stack read buffer.
const READ_CHUNK: usize = 8 * 1024;

/// A byte stream a WebSocket can run over: what an HTTP server hands back
/// from an upgrade when it is not a plain TCP stream (a TLS stream, or a
/// stream a layer wrapped).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A WebSocket's stream: a TCP stream shared with the node's flushers, or
/// (rarely) any other stream. One type, so that the session's code exists
/// once.
pub type Stream = Either<SharedTcp, Box<dyn Io>>;

pub use crate::write::SharedTcp;

/// The WebSocket transport. See the module docs.
pub struct WebSocket<IO = Stream> {
    io: IO,
    decoder: Decoder,
}

impl<IO> std::fmt::Debug for WebSocket<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").finish_non_exhaustive()
    }
}

impl WebSocket {
    /// A WebSocket over a TCP stream, whose write side `conn`'s outbox
    /// shares with the node's flushers: a fan-out frame to an idle
    /// connection is written straight to the socket, without waking the
    /// connection's task. `read_ahead` holds bytes the HTTP layer read past
    /// the handshake (frames a client sent without waiting).
    pub fn over_tcp(stream: tokio::net::TcpStream, read_ahead: &[u8], conn: &Conn) -> Self {
        let stream = Arc::new(stream);
        let shard = conn.node.flusher().shard_for(conn.id);
        conn.outbox.attach_tcp(stream.clone(), shard);
        Self::new(Either::Left(SharedTcp::new(stream)), read_ahead, conn)
    }

    /// A WebSocket over any other stream; every write goes through the
    /// connection's task.
    pub fn over_io(io: impl Io, read_ahead: &[u8], conn: &Conn) -> Self {
        Self::new(Either::Right(Box::new(io)), read_ahead, conn)
    }
}

impl<IO: AsyncRead + AsyncWrite + Send + Unpin> WebSocket<IO> {
    /// A WebSocket over `io`, with frames up to the node's
    /// `max_message_size`.
    pub fn new(io: IO, read_ahead: &[u8], conn: &Conn) -> Self {
        let mut decoder = Decoder::new(conn.node.config().max_message_size);
        if !read_ahead.is_empty() {
            decoder.push(read_ahead);
        }
        WebSocket { io, decoder }
    }
}

impl<IO: AsyncRead + AsyncWrite + Send + Unpin> Transport for WebSocket<IO> {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Received>> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(msg)) => return Poll::Ready(Ok(received(msg))),
                Ok(None) => {}
                Err(e) => {
                    return Poll::Ready(Ok(Received::Invalid {
                        code: CloseCode(e.close_code()),
                        reason: e.to_string(),
                    }));
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Ok(Received::Eof));
                }
                Poll::Ready(Ok(())) => self.decoder.push(buf.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        frames: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, frames)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn ping(&self) -> Bytes {
        frame::encode(OpCode::Ping, b"")
    }

    fn pong(&self, payload: &[u8]) -> Bytes {
        frame::encode(OpCode::Pong, payload)
    }

    fn close(&self, code: CloseCode, reason: &str) -> Bytes {
        frame::encode_close(code.0, reason)
    }

    fn answers_close(&self) -> bool {
        true
    }
}

fn received(msg: Message) -> Received {
    match msg {
        Message::Text(text) => Received::Data(Inbound::Text(text)),
        Message::Binary(data) => Received::Data(Inbound::Binary(data)),
        Message::Ping(payload) => Received::Ping(payload),
        Message::Pong(_) => Received::Pong,
        Message::Close(close) => Received::Close(close.map(|c| (c.code, c.reason))),
    }
}
