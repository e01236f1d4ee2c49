//! The WebSocket transport: RFC 6455 frames over a byte stream, after the
//! HTTP layer has answered the handshake with `101`.
//!
//! Bytes are read into a buffer on the stack and handed to the
//! frame decoder, which keeps a heap buffer only while a frame is incomplete:
//! an idle connection holds no read buffer.
//!
//! After a protocol error (reported once, as [`Received::Invalid`]) the
//! transport goes on reading and discarding what the client sends, until
//! the client's close frame ([`Received::Close`]), the end of the stream,
//! or 16 MiB discarded (an error). The session sends its close frame, ends
//! its side of the stream and waits for that, within its close grace,
//! before it closes the socket, so that bytes still in flight from the
//! client (the rest of a message over the size limit) do not turn the
//! close into a reset that the client may see before the close frame.

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
use crate::ws::{Decoder, Drained, Message, OpCode, frame};

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
        if self.decoder.has_failed() {
            return self.poll_drain(cx);
        }
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

impl<IO: AsyncRead + AsyncWrite + Send + Unpin> WebSocket<IO> {
    /// After a protocol error: reads and discards until the client's close
    /// frame, the end of the stream or the drain limit.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Received>> {
        let mut drained = self.decoder.drain(&[]);
        loop {
            match drained {
                Drained::More => {}
                Drained::PeerClosed => return Poll::Ready(Ok(Received::Close(None))),
                Drained::Limit => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the client went on sending after a protocol error",
                    )));
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Ok(Received::Eof));
                }
                Poll::Ready(Ok(())) => drained = self.decoder.drain(buf.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use super::WebSocket;
    use crate::auth::Identity;
    use crate::config::Config;
    use crate::endpoint::Endpoint;
    use crate::node::Node;
    use crate::session::{Channel, new_conn, run};

    /// An echo endpoint on a node whose messages are limited to
    /// `max_message_size` bytes.
    fn echo_node(max_message_size: usize) -> (Node, Arc<Endpoint>) {
        let endpoint = Arc::new(Endpoint::echo("/echo"));
        let config = Config {
            max_message_size,
            ..Config::default()
        };
        let node = Node::builder()
            .config(config)
            .endpoint((*endpoint).clone())
            .build()
            .unwrap();
        (node, endpoint)
    }

    /// Runs a session over `io`, as the HTTP layer does after the upgrade.
    fn serve<IO>(node: &Node, endpoint: Arc<Endpoint>, io: IO) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut conn = new_conn(
            node,
            Identity::guest(),
            &endpoint,
            None,
            None,
            Default::default(),
        );
        tokio::spawn(async move {
            let channel = Channel::new(WebSocket::new(io, &[], &conn), &conn);
            run(channel, &mut conn, &endpoint).await
        })
    }

    /// A masked client frame with FIN set.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    /// Reads one close frame from the server and returns its code.
    async fn read_close(client: &mut (impl AsyncRead + Unpin)) -> u16 {
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.expect("a close frame");
        assert_eq!(head[0], 0x88, "a close frame, not {head:?}");
        let mut reason = vec![0u8; usize::from(head[1]) - 2];
        client.read_exact(&mut reason).await.expect("its reason");
        u16::from_be_bytes([head[2], head[3]])
    }

    /// Answers the server's close and waits for the server to end the
    /// connection.
    async fn finish_close(client: &mut (impl AsyncRead + AsyncWrite + Unpin), code: u16) {
        client
            .write_all(&client_frame(0x8, &code.to_be_bytes()))
            .await
            .expect("the close answer is read");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("an orderly end");
        assert!(rest.is_empty(), "{} bytes after the close", rest.len());
    }

    #[tokio::test]
    async fn a_message_over_the_limit_gets_its_close_frame_while_the_client_still_sends() {
        let (node, endpoint) = echo_node(64 * 1024);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let session = serve(&node, endpoint, server);

        // A 12 MiB message, more than the socket buffers of both ends hold
        // on loopback: the client is still writing it, not reading, long
        // after the server refused it from its header. Then it reads.
        let frame = client_frame(0x2, &vec![b'x'; 12 << 20]);
        client
            .write_all(&frame)
            .await
            .expect("the server reads what is in flight instead of resetting");
        assert_eq!(read_close(&mut client).await, 1009);
        finish_close(&mut client, 1009).await;
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ends with the handshake")
            .unwrap();
        assert_eq!(node.connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_utf8_closes_with_1007_before_its_frame_is_complete() {
        let (node, endpoint) = echo_node(64 * 1024);
        let (server_io, mut client) = tokio::io::duplex(64 * 1024);
        let session = serve(&node, endpoint, server_io);

        // Autobahn|Testsuite's case 6.4.3: one text frame sent in three
        // parts a second apart, the second holding a code point past
        // U+10FFFF.
        let mut text = "κόσμε".as_bytes().to_vec();
        let bad_at = text.len();
        text.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
        text.extend_from_slice(b"edited");
        let frame = client_frame(0x1, &text);
        let bad_at = frame.len() - text.len() + bad_at;

        let start = tokio::time::Instant::now();
        client.write_all(&frame[..bad_at]).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), client.read(&mut byte)).await;
        assert!(read.is_err(), "the valid part is accepted");
        client.write_all(&frame[bad_at..bad_at + 4]).await.unwrap();
        let code = tokio::time::timeout(Duration::from_millis(100), read_close(&mut client))
            .await
            .expect("closed on the part that holds the bad byte");
        assert_eq!(code, 1007);
        // As the suite does, the client answers in the middle of its frame
        // (the server cannot tell that close frame from payload), then
        // closes its side once it sees the server's end: the session ends
        // then, not after its close grace.
        finish_close(&mut client, 1007).await;
        drop(client);
        session.await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(node.connection_count(), 0);
    }
}
