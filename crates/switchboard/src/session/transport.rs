//! A session's socket with its decoder, write queue and timers, and the
//! one poll that turns them into the next [`Event`].

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::Event;
use crate::conn::Conn;
use crate::write::SessionWrites;
use crate::ws::{Decoder, Message};

/// Size of the on-stack read buffer.
const READ_CHUNK: usize = 8 * 1024;

pin_project_lite::pin_project! {
    /// The credentials' expiry and the timer armed for it.
    struct Expiry {
        at: SystemTime,
        #[pin]
        sleep: Sleep,
    }
}

impl Expiry {
    fn project_sleep(self: Pin<&mut Self>) -> Pin<&mut Sleep> {
        self.project().sleep
    }
}

/// A session's socket with its decoder, write queue and timers.
pub(crate) struct Transport<IO> {
    pub(super) io: IO,
    decoder: Decoder,
    /// What this task writes: see [`SessionWrites`].
    pub(super) writes: SessionWrites,
    pub(super) heartbeat: Pin<Box<Sleep>>,
    /// A ping is out: the heartbeat timer is then armed for its deadline
    /// (the ping was sent `heartbeat_timeout` before it).
    pub(super) awaiting_pong: bool,
    /// Fires when the credentials expire; only connections whose credentials
    /// expire have one, boxed with the time it was armed for.
    expiry: Option<Pin<Box<Expiry>>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Transport<IO> {
    /// A transport over `io`; `read_ahead` holds bytes the HTTP layer read
    /// past the handshake (frames a client sent without waiting).
    pub(crate) fn new(io: IO, read_ahead: &[u8], conn: &Conn) -> Self {
        let config = conn.node.config();
        let mut transport = Transport {
            io,
            decoder: Decoder::new(config.max_message_size),
            writes: SessionWrites::new(),
            heartbeat: Box::pin(tokio::time::sleep(config.heartbeat_interval)),
            awaiting_pong: false,
            expiry: None,
        };
        transport.arm_expiry(conn.identity.expires_at);
        if !read_ahead.is_empty() {
            transport.decoder.push(read_ahead);
        }
        transport
    }

    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>, conn: &Conn) -> Poll<Event> {
        if let Poll::Ready(Err(e)) = self.poll_write_all(cx, conn, true) {
            return Poll::Ready(Event::Io(e));
        }
        if let Some(ev) = self.drained_close(cx, conn) {
            return Poll::Ready(ev);
        }
        if let Poll::Ready(ev) = self.poll_read(cx) {
            return Poll::Ready(ev);
        }
        if self.heartbeat.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::HeartbeatDue);
        }
        if let Some(expiry) = &mut self.expiry
            && expiry.as_mut().project_sleep().poll(cx).is_ready()
        {
            return Poll::Ready(Event::Expired);
        }
        Poll::Pending
    }

    /// Arms (or re-arms, after a refresh) the expiry timer.
    pub(super) fn arm_expiry(&mut self, expires_at: Option<SystemTime>) {
        if self.expiry.as_ref().map(|e| e.at) == expires_at {
            return;
        }
        self.expiry = expires_at.map(|at| {
            // Wall-clock expiry, converted once to the runtime's clock.
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Box::pin(Expiry {
                at,
                sleep: tokio::time::sleep(left),
            })
        });
    }

    /// Reports a close request once everything queued before it is written.
    fn drained_close(&mut self, cx: &mut Context<'_>, conn: &Conn) -> Option<Event> {
        self.writes
            .poll_close_request(cx, &conn.outbox)
            .map(Event::CloseRequested)
    }

    /// Moves frames from the outbox (when `refill`) and writes as much as the
    /// socket takes. `Ready(Ok)` means everything queued is written.
    fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        conn: &Conn,
        refill: bool,
    ) -> Poll<io::Result<()>> {
        self.writes
            .poll_write_all(cx, &mut self.io, &conn.outbox, refill)
    }

    /// Queues a frame of the session's own (a reply to a ping, a ping, a
    /// close), after taking the socket's write side over from the flusher.
    pub(super) fn queue(&mut self, conn: &Conn, frame: Bytes) {
        self.writes.queue(&conn.outbox, frame);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(msg)) => return Poll::Ready(Event::Message(msg)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Event::Decode(e)),
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Event::Eof),
                Poll::Ready(Ok(())) => self.decoder.push(buf.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Io(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes everything queued (without taking more from the outbox), within
    /// `limit`.
    pub(super) async fn flush_within(&mut self, conn: &Conn, limit: Duration) -> io::Result<()> {
        let write = poll_fn(|cx| self.poll_write_all(cx, conn, false));
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Keeps a partially written frame (cutting it would corrupt the stream)
    /// and drops the rest.
    pub(super) fn discard_unwritten(&mut self) {
        self.writes.discard_unwritten();
    }

    pub(super) async fn await_peer_close(&mut self) {
        poll_fn(|cx| {
            loop {
                match self.poll_read(cx) {
                    Poll::Ready(Event::Message(Message::Close(_))) => return Poll::Ready(()),
                    Poll::Ready(Event::Message(_)) => continue,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }
}
