//! A session's transport with its write queue and timers, and the one poll
//! that turns them into the next [`Event`].

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Sleep;

use super::Event;
use crate::conn::Conn;
use crate::stats::Written;
use crate::transport::{Received, Transport};
use crate::write::SessionWrites;

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

/// A session's transport with its write queue and timers.
pub(crate) struct Channel<T> {
    pub(super) transport: T,
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

impl<T: Transport> Channel<T> {
    /// A channel over `transport`, its timers armed for `conn`.
    pub(crate) fn new(transport: T, conn: &Conn) -> Self {
        let config = conn.node.config();
        let mut channel = Channel {
            transport,
            writes: SessionWrites::new(),
            heartbeat: Box::pin(tokio::time::sleep(config.heartbeat_interval)),
            awaiting_pong: false,
            expiry: None,
        };
        channel.arm_expiry(conn.identity.expires_at);
        channel
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
        let mut written = Written::default();
        let r =
            self.writes
                .poll_write_all(cx, &mut self.transport, &conn.outbox, refill, &mut written);
        conn.node.stats().sent.add(written);
        r
    }

    /// Moves frames from `outbox` (the connection's, held apart from its
    /// `Conn` while a handler has that) and writes what the socket takes,
    /// adding it to `written`.
    pub(super) fn poll_write_outbox(
        &mut self,
        cx: &mut Context<'_>,
        outbox: &crate::outbox::Outbox,
        written: &mut Written,
    ) -> Poll<io::Result<()>> {
        self.writes
            .poll_write_all(cx, &mut self.transport, outbox, true, written)
    }

    /// Queues a frame of the session's own (a reply to a ping, a ping, a
    /// close), after taking the socket's write side over from the flusher.
    pub(super) fn queue(&mut self, conn: &Conn, frame: Bytes) {
        self.writes.queue(&conn.outbox, frame);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        self.transport.poll_recv(cx).map(|r| match r {
            Ok(received) => Event::Received(received),
            Err(e) => Event::Io(e),
        })
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
                    Poll::Ready(Event::Received(
                        Received::Data(_) | Received::Ping(_) | Received::Pong,
                    )) => continue,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }
}
