//! The socket, as the two parties that write it see it: a flusher writes
//! through a [`Direct`] without waiting, from any thread; the connection's
//! own task writes through [`SharedTcp`], waiting for the socket when it is
//! full. Both hold the same TCP stream. Which of them may write at a given
//! moment is decided under the outbox's lock (see the
//! [module docs](super)).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::flush::FlushShard;
use crate::sys::StreamFd;

/// A socket that can be written without waiting, from any thread: the
/// flusher writes fan-out frames through it. Tests stand one in for a TCP
/// stream to control what the socket takes.
#[cfg(test)]
pub(crate) trait DirectSink: Send + Sync + 'static {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// One `send` (one buffer) or `sendmsg` on `sock`.
fn send(sock: socket2::SockRef<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    match bufs {
        [one] => sock.send_with_flags(one, SEND_FLAGS),
        _ => sock.send_vectored_with_flags(bufs, SEND_FLAGS),
    }
}

/// A write to a socket the peer has closed fails with `EPIPE` instead of
/// raising `SIGPIPE`, whatever the embedding program does with that signal.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SEND_FLAGS: libc::c_int = 0;

/// The socket and the flush list of a connection whose frames the flusher
/// may write.
pub(super) struct Direct {
    sink: Sink,
    /// The flush list the connection is put on when a frame is pushed to
    /// it while it is idle.
    pub(super) shard: Weak<FlushShard>,
}

/// What a flusher writes to.
enum Sink {
    /// A TCP stream, written through its descriptor with `send`/`sendmsg`.
    /// The runtime's readiness flag is not consulted or cleared: a write
    /// that finds the socket full hands the rest to the connection's task,
    /// whose own write then sees `WouldBlock` and waits for the socket
    /// properly.
    Tcp(StreamFd),
    /// A socket a test controls.
    #[cfg(test)]
    Other(Arc<dyn DirectSink>),
}

impl Direct {
    /// Direct writes through a test's sink.
    #[cfg(test)]
    pub(super) fn new(sink: Arc<dyn DirectSink>, shard: Weak<FlushShard>) -> Self {
        Direct {
            sink: Sink::Other(sink),
            shard,
        }
    }

    /// Direct writes to a TCP stream, through its descriptor.
    pub(super) fn tcp(stream: Arc<tokio::net::TcpStream>, shard: Weak<FlushShard>) -> Self {
        Direct {
            sink: Sink::Tcp(StreamFd::new(stream)),
            shard,
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub(super) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.sink {
            Sink::Tcp(fd) => fd.with_sock(|sock| send(sock, bufs)),
            #[cfg(test)]
            Sink::Other(sink) => sink.try_write_vectored(bufs),
        }
    }
}

/// A TCP stream whose write side the connection's task shares with the
/// node's flushers; all its I/O goes through `&TcpStream`. Made by
/// [`WebSocket::over_tcp`](crate::transport::WebSocket::over_tcp).
#[derive(Debug)]
pub struct SharedTcp(Arc<tokio::net::TcpStream>);

impl SharedTcp {
    pub(crate) fn new(stream: Arc<tokio::net::TcpStream>) -> Self {
        SharedTcp(stream)
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            // `try_read` clears the readiness when the socket is drained, so
            // the next `poll_read_ready` waits for new data.
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sock = socket2::SockRef::from(&*self.0);
        match sock.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
