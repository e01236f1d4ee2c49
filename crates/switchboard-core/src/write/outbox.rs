//! The bounded outbound queue of one connection.
//!
//! Anyone may push a ready-made WebSocket frame (shared [`Bytes`], so a
//! fan-out pushes the same allocation to every recipient). The queue is
//! bounded by frame count and by bytes. A push that would exceed either bound
//! does not wait and does not drop silently: it marks the connection for
//! closing with "slow consumer" (4000), so one client that stops reading never
//! slows anyone else down and never grows the server's memory.
//!
//! # Who writes
//!
//! At any moment one party owns the socket's write side, recorded under the
//! queue's lock, so frames are written in order and never interleaved:
//!
//! - **idle**: nothing is queued or being written;
//! - **flusher**: frames were pushed to an idle connection that has a
//!   [`DirectSink`]; the connection is on a flush list, and
//!   a flusher task writes its frames straight to the socket, without waking
//!   the connection's own task. A fan-out to 10,000 idle connections then
//!   costs one task wake-up, not 10,000;
//! - **session**: the connection's own task is writing (its replies and
//!   control frames, or what the socket did not take at once). Pushes queue
//!   behind it and wake it.
//!
//! When the socket does not take everything (its buffer is full), the
//! flusher hands the rest to the session, which waits for the socket to be
//! writable; when the session has written everything, the connection is idle
//! again.
//!
//! # Closing
//!
//! [`Outbox::close`] asks the owning task to close the connection with a code.
//! The first request wins; later pushes are refused with
//! [`PushError::Closed`].
//!
//! # Memory
//!
//! An idle outbox holds no buffer: the queue's storage is kept while
//! messages flow and released by the connection's task when the connection
//! has been quiet for a heartbeat interval.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use switchboard_protocol::CloseCode;

use super::flush::FlushShard;
use super::socket::Direct;
#[cfg(test)]
pub(crate) use super::socket::DirectSink;
use crate::stats::Written;

/// Most frames handed to one vectored write.
pub(super) const MAX_BATCH: usize = 64;

/// Why a connection is being closed by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    /// The close code to send.
    pub code: CloseCode,
    /// The close reason to send (at most 123 bytes are sent).
    pub reason: String,
}

/// A frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue was full: the connection is now being closed as a slow
    /// consumer.
    #[error("outbound queue full; connection closed as slow consumer")]
    Overflow,
    /// The connection is already closing.
    #[error("connection is closing")]
    Closed,
}

/// A connection's outbound queue. Shared behind an `Arc`.
pub(crate) struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    // 32 bits each (bounds above 4 Gi are clamped): the outbox is part of
    // every idle connection.
    max_frames: u32,
    max_bytes: u32,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Outbox")
            .field("frames", &st.frames.len())
            .field("bytes", &st.bytes)
            .field("owner", &st.owner)
            .field("close", &st.close)
            .finish_non_exhaustive()
    }
}

/// Who writes to the socket now. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Idle,
    Flusher,
    Session,
}

/// A queue of frames that holds the first one inline: a connection with one
/// message in flight (the common case of a fan-out) needs no allocation, and
/// the frame sits next to the lock that guards it.
#[derive(Debug, Default)]
pub(crate) struct FrameQueue {
    /// The front frame; `None` only when the queue is empty.
    head: Option<Bytes>,
    /// The frames behind it, if any have been queued since the storage was
    /// last released.
    #[allow(
        clippy::box_collection,
        reason = "boxed to keep every idle connection's queue small"
    )]
    rest: Option<Box<VecDeque<Bytes>>>,
}

impl FrameQueue {
    /// An empty queue; allocates nothing.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Frames queued.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Whether no frame is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Appends a frame.
    pub(crate) fn push_back(&mut self, frame: Bytes) {
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.rest.get_or_insert_default().push_back(frame);
        }
    }

    /// Removes the front frame.
    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.head.take();
        if front.is_some() {
            self.head = self.rest.as_mut().and_then(|r| r.pop_front());
        }
        front
    }

    /// The frames, front first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.head
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Fills `slices` with the front frames; returns how many and their
    /// total length.
    pub(crate) fn as_io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> (usize, usize) {
        let mut n = 0;
        let mut total = 0;
        for (slot, frame) in slices.iter_mut().zip(self.iter()) {
            *slot = IoSlice::new(frame);
            total += frame.len();
            n += 1;
        }
        (n, total)
    }

    /// Drops `written` bytes from the front, keeping the unwritten tail of a
    /// partly written frame. Returns the bytes dropped.
    pub(crate) fn advance(&mut self, written: usize) -> usize {
        let mut left = written;
        while left > 0 {
            let Some(front) = self.head.as_mut() else {
                break;
            };
            if left >= front.len() {
                left -= front.len();
                self.pop_front();
            } else {
                let rest = front.slice(left..);
                *front = rest;
                left = 0;
            }
        }
        written - left
    }

    /// Keeps only the front frame (a partly written frame cannot be cut
    /// without corrupting the stream).
    pub(crate) fn truncate_to_front(&mut self) {
        self.rest = None;
    }

    /// Empties the queue and releases its storage.
    pub(crate) fn clear(&mut self) {
        self.head = None;
        self.rest = None;
    }

    /// Releases spare storage if at most one frame is queued.
    pub(crate) fn release_spare(&mut self) {
        if self.rest.as_ref().is_some_and(|r| r.is_empty()) {
            self.rest = None;
        }
    }
}

struct State {
    frames: FrameQueue,
    /// Bytes queued; at most `max_bytes`.
    bytes: u32,
    /// Boxed: a close is requested once, at the end, and the state is part
    /// of every idle connection.
    close: Option<Box<CloseRequest>>,
    owner: Owner,
    direct: Option<Direct>,
}

/// What the owning task found when it polled the outbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Frames were moved out (the count).
    Frames(usize),
    /// A close was requested; queued frames are still handed out first by
    /// [`Outbox::poll_drain`] unless the close was for a slow consumer.
    Close(CloseRequest),
}

impl Outbox {
    /// An empty outbox with the given bounds.
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State {
                frames: FrameQueue::new(),
                bytes: 0,
                close: None,
                owner: Owner::Idle,
                direct: None,
            }),
            waker: AtomicWaker::new(),
            max_frames: u32::try_from(max_frames.max(1)).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
        }
    }

    /// Lets flusher tasks write this connection's frames straight to `sink`
    /// while its own task is not writing.
    #[cfg(test)]
    pub(super) fn attach_direct(&self, sink: Arc<dyn DirectSink>, shard: Weak<FlushShard>) {
        self.state.lock().direct = Some(Direct::new(sink, shard));
    }

    /// Lets flusher tasks write this connection's frames straight to its TCP
    /// stream, through its descriptor, while its own task is not writing.
    pub(crate) fn attach_tcp(&self, stream: Arc<tokio::net::TcpStream>, shard: Weak<FlushShard>) {
        let direct = Direct::tcp(stream, shard);
        self.state.lock().direct = Some(direct);
    }

    /// Stops direct writes and lets go of the socket (so that it closes when
    /// the connection's task drops it).
    pub(crate) fn detach_direct(&self) {
        let mut st = self.state.lock();
        st.direct = None;
        st.owner = Owner::Session;
    }

    /// Queues one frame. Never waits.
    pub(crate) fn push(self: &Arc<Self>, frame: Bytes) -> Result<(), PushError> {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return Err(PushError::Closed);
        }
        // A frame of 4 GiB or more never fits.
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if st.frames.len() >= self.max_frames as usize
            || len == u32::MAX
            || st.bytes.saturating_add(len) > self.max_bytes
        {
            st.close = Some(Box::new(CloseRequest {
                code: CloseCode::SLOW_CONSUMER,
                reason: "slow consumer: outbound queue full".into(),
            }));
            st.frames.clear();
            st.bytes = 0;
            drop(st);
            self.waker.wake();
            return Err(PushError::Overflow);
        }
        let was_empty = st.frames.is_empty();
        st.bytes += len;
        st.frames.push_back(frame);
        if st.owner == Owner::Idle
            && let Some(shard) = st.direct.as_ref().and_then(|d| d.shard.upgrade())
            && shard.is_running()
        {
            st.owner = Owner::Flusher;
            drop(st);
            shard.schedule(self.clone());
            return Ok(());
        }
        let wake = was_empty && st.owner != Owner::Flusher;
        drop(st);
        if wake {
            self.waker.wake();
        }
        Ok(())
    }

    /// Makes the connection's own task the writer: the frames it is about to
    /// write (replies, control frames) must not be overtaken by a direct
    /// write. The task gives the socket back by draining the queue empty.
    pub(super) fn claim(&self) {
        self.state.lock().owner = Owner::Session;
    }

    /// Gives listed frames back to the connection's task when no flusher
    /// will write them (its task ended).
    pub(super) fn abandon_direct(&self) {
        let mut st = self.state.lock();
        if st.owner == Owner::Flusher {
            st.owner = Owner::Session;
            drop(st);
            self.waker.wake();
        }
    }

    /// Hints the CPU to load this outbox's lock and inline frame into the
    /// cache: a flusher calls it for the next connection on its list while
    /// the current one's write runs, so that walking 10,000 connections does
    /// not stall on a cache miss for each.
    pub(crate) fn prefetch(&self) {
        crate::sys::prefetch(&self.state);
    }

    /// Writes queued frames straight to the socket, if the flusher still owns
    /// them. What the socket does not take is handed to the connection's
    /// task, which is woken to wait for the socket to drain. Returns what
    /// it wrote.
    pub(super) fn flush_direct(&self) -> Written {
        let mut written_all = Written::default();
        let mut st = self.state.lock();
        if st.owner != Owner::Flusher {
            return written_all;
        }
        let st = &mut *st;
        loop {
            if st.frames.is_empty() {
                // The queue's storage is kept for the next message; the
                // connection's task releases it once the connection has been
                // quiet for a while (see `release_idle_storage`).
                st.owner = Owner::Idle;
                return written_all;
            }
            let Some(direct) = &st.direct else {
                break;
            };
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let (n, total) = st.frames.as_io_slices(&mut slices);
            match direct.try_write_vectored(&slices[..n]) {
                Ok(written) => {
                    let queued = st.frames.len();
                    st.bytes -= st.frames.advance(written) as u32;
                    written_all.add(queued - st.frames.len(), written);
                    if written < total {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Full, or failing: the connection's task waits for the
                // socket, or finds the error when it writes.
                Err(_) => break,
            }
        }
        st.owner = Owner::Session;
        self.waker.wake();
        written_all
    }

    /// Releases the queue's storage if nothing is queued: called by the
    /// connection's task when the connection has been quiet for a heartbeat
    /// interval, so that idle connections hold no buffer while busy ones do
    /// not allocate one per message.
    pub(super) fn release_idle_storage(&self) {
        self.state.lock().frames.release_spare();
    }

    /// Asks the owning task to close the connection. The first request wins.
    pub(crate) fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let mut st = self.state.lock();
        if st.close.is_none() {
            st.close = Some(Box::new(CloseRequest {
                code,
                reason: reason.into(),
            }));
            drop(st);
            self.waker.wake();
        }
    }

    /// Whether a close was requested.
    #[cfg(test)]
    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// The close request, if it is for a slow consumer: such a close must
    /// not wait for queued writes that will never drain. Registers the
    /// waker, so that the owner is woken when one arrives later.
    pub(crate) fn poll_slow_consumer_close(&self, cx: &mut Context<'_>) -> Option<CloseRequest> {
        self.waker.register(cx.waker());
        self.state
            .lock()
            .close
            .as_deref()
            .filter(|c| c.code == CloseCode::SLOW_CONSUMER)
            .cloned()
    }

    /// The most frames the queue holds.
    pub(crate) fn max_frames(&self) -> usize {
        self.max_frames as usize
    }

    /// Frames currently queued (for tests and the metrics' scrape).
    pub(crate) fn len(&self) -> usize {
        self.state.lock().frames.len()
    }

    /// Whether no frame is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves up to `max` queued frames into `out`, the owning task's write
    /// queue. Returns `Pending` (and registers the waker) when there is
    /// nothing to do. Queued frames are handed out before a close request is
    /// reported, so a "going away" close still delivers what was already
    /// queued.
    ///
    /// The task owns the socket's write side while `out` holds frames; when
    /// it calls this with `out` empty and nothing is queued, the connection
    /// is idle again and later frames may be written directly.
    pub(crate) fn poll_drain(
        &self,
        cx: &mut Context<'_>,
        out: &mut FrameQueue,
        max: usize,
    ) -> Poll<Drained> {
        if let Some(d) = self.try_drain(out, max) {
            return Poll::Ready(d);
        }
        self.waker.register(cx.waker());
        match self.try_drain(out, max) {
            Some(d) => Poll::Ready(d),
            None => Poll::Pending,
        }
    }

    fn try_drain(&self, out: &mut FrameQueue, max: usize) -> Option<Drained> {
        let mut st = self.state.lock();
        if !st.frames.is_empty() && max > 0 {
            let st = &mut *st;
            let mut n = 0;
            while n < max
                && let Some(frame) = st.frames.pop_front()
            {
                st.bytes -= frame.len() as u32;
                out.push_back(frame);
                n += 1;
            }
            st.owner = Owner::Session;
            return Some(Drained::Frames(n));
        }
        if out.is_empty() && st.frames.is_empty() && st.owner == Owner::Session {
            st.owner = Owner::Idle;
        }
        match &st.close {
            Some(close) if st.frames.is_empty() => Some(Drained::Close((**close).clone())),
            _ => None,
        }
    }
}
