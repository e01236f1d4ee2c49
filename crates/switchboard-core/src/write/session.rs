//! The connection's own writes: what its task writes itself, and how it
//! takes the socket's write side over from the flushers and gives it back.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::outbox::{CloseRequest, Drained, FrameQueue, MAX_BATCH, Outbox};
use crate::stats::Written;
use crate::transport::Transport;

/// The write queue of a connection's own task: frames moved from the
/// [`Outbox`] and frames of the task's own (replies to pings, pings,
/// close frames), written with one vectored write for as many as are ready.
///
/// There is one per connection, held by the connection's task, and it is
/// the only way to claim the socket's write side from outside this module:
/// a frame is queued here only after [`Outbox::claim`], so that no direct
/// write can overtake or interleave with it (see the
/// [module docs](super#who-may-call-what)).
#[derive(Debug, Default)]
pub(crate) struct SessionWrites {
    queue: FrameQueue,
}

impl SessionWrites {
    /// An empty queue; allocates nothing.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Makes the connection's task the writer before it does something that
    /// queues frames (sends `welcome`, runs the handler), so that those are
    /// written by the task right after, not handed to a flusher.
    pub(crate) fn claim(&self, outbox: &Outbox) {
        outbox.claim();
    }

    /// Queues a frame of the task's own (a reply to a ping, a ping, a close),
    /// after taking the socket's write side over from the flusher.
    pub(crate) fn queue(&mut self, outbox: &Outbox, frame: Bytes) {
        outbox.claim();
        self.queue.push_back(frame);
    }

    /// Moves frames from the outbox (when `refill`) and writes as much as the
    /// socket takes. `Ready(Ok)` means everything queued is written. What
    /// it wrote is added to `written_all`.
    pub(crate) fn poll_write_all<T: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        transport: &mut T,
        outbox: &Outbox,
        refill: bool,
        written_all: &mut Written,
    ) -> Poll<io::Result<()>> {
        loop {
            if refill && self.queue.len() < MAX_BATCH {
                let room = MAX_BATCH - self.queue.len();
                // A close request is picked up by `poll_close_request`.
                let _ = outbox.poll_drain(cx, &mut self.queue, room);
            }
            if self.queue.is_empty() {
                return transport.poll_flush(cx);
            }
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let (n, _) = self.queue.as_io_slices(&mut slices);
            let written = match transport.poll_write(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(w)) => w,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let queued = self.queue.len();
            self.queue.advance(written);
            written_all.add(queued - self.queue.len(), written);
        }
    }

    /// A close request, once everything queued before it is written; a slow
    /// consumer's at once, since its writes may never drain.
    pub(crate) fn poll_close_request(
        &mut self,
        cx: &mut Context<'_>,
        outbox: &Outbox,
    ) -> Option<CloseRequest> {
        if !self.queue.is_empty() {
            // A slow consumer's writes may never drain: close it now.
            return outbox.poll_slow_consumer_close(cx);
        }
        match outbox.poll_drain(cx, &mut self.queue, 0) {
            Poll::Ready(Drained::Close(req)) => Some(req),
            _ => None,
        }
    }

    /// Keeps a partially written frame (cutting it would corrupt the stream)
    /// and drops the rest.
    pub(crate) fn discard_unwritten(&mut self) {
        self.queue.truncate_to_front();
    }

    /// Releases the storage of the outbox's queue and of this one if they
    /// are empty: called when the connection has been quiet for a heartbeat
    /// interval, so that idle connections hold no buffer.
    pub(crate) fn release_idle_storage(&mut self, outbox: &Outbox) {
        outbox.release_idle_storage();
        self.queue.release_spare();
    }
}
