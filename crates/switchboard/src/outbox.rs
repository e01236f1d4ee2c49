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

use crate::flush::FlushShard;

/// Most frames handed to one vectored write.
pub(crate) const MAX_BATCH: usize = 64;

/// A socket that can be written without waiting, from any thread: the
/// flusher writes fan-out frames through it.
pub trait DirectSink: Send + Sync + 'static {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl DirectSink for tokio::net::TcpStream {
    /// Writes with `send` (one buffer) or `sendmsg` straight on the socket.
    /// The runtime's readiness flag is not consulted or cleared: a write that
    /// finds the socket full hands the rest to the connection's task, whose
    /// own write then sees `WouldBlock` and waits for the socket properly.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send(socket2::SockRef::from(self), bufs)
    }
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

/// Why a connection is being closed by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
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
pub struct Outbox {
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
pub struct FrameQueue {
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Appends a frame.
    pub fn push_back(&mut self, frame: Bytes) {
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.rest.get_or_insert_default().push_back(frame);
        }
    }

    /// Removes the front frame.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.head.take();
        if front.is_some() {
            self.head = self.rest.as_mut().and_then(|r| r.pop_front());
        }
        front
    }

    /// The frames, front first.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.head
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Fills `slices` with the front frames; returns how many and their
    /// total length.
    pub fn as_io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> (usize, usize) {
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
    pub fn advance(&mut self, written: usize) -> usize {
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
    pub fn truncate_to_front(&mut self) {
        self.rest = None;
    }

    /// Empties the queue and releases its storage.
    pub fn clear(&mut self) {
        self.head = None;
        self.rest = None;
    }

    /// Releases spare storage if at most one frame is queued.
    pub fn release_spare(&mut self) {
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

/// The socket and the flush list of a connection whose frames the flusher
/// may write.
struct Direct {
    sink: Arc<dyn DirectSink>,
    shard: Weak<FlushShard>,
    /// When `sink` is a TCP stream: its descriptor, kept here so that a
    /// flusher walking thousands of connections does not load each socket
    /// object (a cache miss per connection) just to read this number.
    /// `sink` owns the descriptor, so it stays open while this `Direct`
    /// exists.
    #[cfg(unix)]
    fd: Option<std::os::fd::RawFd>,
}

impl Direct {
    #[allow(unsafe_code)]
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(unix)]
        if let Some(fd) = self.fd {
            // SAFETY: `BorrowedFd::borrow_raw` needs `fd` to stay open while
            // the borrow lives, which is this call. `fd` was read from the
            // stream that `self.sink` holds (`Outbox::attach_tcp` is the only
            // place that sets it), a stream closes its descriptor only when
            // dropped, and `self` is borrowed for this call, so `self.sink`
            // (an `Arc` owning a count on the stream) outlives the borrow.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            return send(socket2::SockRef::from(&borrowed), bufs);
        }
        self.sink.try_write_vectored(bufs)
    }
}

/// What the owning task found when it polled the outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Frames were moved out (the count).
    Frames(usize),
    /// A close was requested; queued frames are still handed out first by
    /// [`Outbox::poll_drain`] unless the close was for a slow consumer.
    Close(CloseRequest),
}

impl Outbox {
    /// An empty outbox with the given bounds.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
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
    pub(crate) fn attach_direct(&self, sink: Arc<dyn DirectSink>, shard: Weak<FlushShard>) {
        self.state.lock().direct = Some(Direct {
            sink,
            shard,
            #[cfg(unix)]
            fd: None,
        });
    }

    /// [`Outbox::attach_direct`] for a TCP stream, written to through its
    /// descriptor.
    pub(crate) fn attach_tcp(&self, stream: Arc<tokio::net::TcpStream>, shard: Weak<FlushShard>) {
        #[cfg(unix)]
        let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&*stream));
        self.state.lock().direct = Some(Direct {
            sink: stream,
            shard,
            #[cfg(unix)]
            fd,
        });
    }

    /// Stops direct writes and lets go of the socket (so that it closes when
    /// the connection's task drops it).
    pub(crate) fn detach_direct(&self) {
        let mut st = self.state.lock();
        st.direct = None;
        st.owner = Owner::Session;
    }

    /// Queues one frame. Never waits.
    pub fn push(self: &Arc<Self>, frame: Bytes) -> Result<(), PushError> {
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
    pub(crate) fn claim(&self) {
        self.state.lock().owner = Owner::Session;
    }

    /// Gives listed frames back to the connection's task when no flusher
    /// will write them (its task ended).
    pub(crate) fn abandon_direct(&self) {
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
    #[allow(unsafe_code)]
    pub(crate) fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let at = std::ptr::from_ref(&self.state).cast::<i8>();
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has
            // (it is part of the target's baseline). A prefetch is only a
            // hint: it reads nothing architecturally and never faults, so any
            // address is sound; these two point into `self` and just past it.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(at);
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
            }
        }
    }

    /// Writes queued frames straight to the socket, if the flusher still owns
    /// them. What the socket does not take is handed to the connection's
    /// task, which is woken to wait for the socket to drain.
    pub(crate) fn flush_direct(&self) {
        let mut st = self.state.lock();
        if st.owner != Owner::Flusher {
            return;
        }
        let st = &mut *st;
        loop {
            if st.frames.is_empty() {
                // The queue's storage is kept for the next message; the
                // connection's task releases it once the connection has been
                // quiet for a while (see `release_idle_storage`).
                st.owner = Owner::Idle;
                return;
            }
            let Some(direct) = &st.direct else {
                break;
            };
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let (n, total) = st.frames.as_io_slices(&mut slices);
            match direct.try_write_vectored(&slices[..n]) {
                Ok(written) => {
                    st.bytes -= st.frames.advance(written) as u32;
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
    }

    /// Releases the queue's storage if nothing is queued: called by the
    /// connection's task when the connection has been quiet for a heartbeat
    /// interval, so that idle connections hold no buffer while busy ones do
    /// not allocate one per message.
    pub(crate) fn release_idle_storage(&self) {
        self.state.lock().frames.release_spare();
    }

    /// Asks the owning task to close the connection. The first request wins.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
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
    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// The close request, if it is for a slow consumer: such a close must
    /// not wait for queued writes that will never drain. Registers the
    /// waker, so that the owner is woken when one arrives later.
    pub fn poll_slow_consumer_close(&self, cx: &mut Context<'_>) -> Option<CloseRequest> {
        self.waker.register(cx.waker());
        self.state
            .lock()
            .close
            .as_deref()
            .filter(|c| c.code == CloseCode::SLOW_CONSUMER)
            .cloned()
    }

    /// The most frames the queue holds.
    pub fn max_frames(&self) -> usize {
        self.max_frames as usize
    }

    /// Frames currently queued.
    pub fn len(&self) -> usize {
        self.state.lock().frames.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
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
    pub fn poll_drain(
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker;

    use crate::flush::FlushShard;

    fn drain(o: &Outbox, max: usize) -> (Poll<Drained>, FrameQueue) {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = FrameQueue::new();
        let p = o.poll_drain(&mut cx, &mut out, max);
        (p, out)
    }

    #[test]
    fn frames_come_out_in_order_and_bounded_by_max() {
        let o = Arc::new(Outbox::new(10, 1000));
        for i in 0..5u8 {
            o.push(Bytes::from(vec![i])).unwrap();
        }
        let (p, out) = drain(&o, 3);
        assert_eq!(p, Poll::Ready(Drained::Frames(3)));
        assert_eq!(out.iter().map(|b| b[0]).collect::<Vec<_>>(), vec![0, 1, 2]);
        let (p, out) = drain(&o, 10);
        assert_eq!(p, Poll::Ready(Drained::Frames(2)));
        assert_eq!(out.len(), 2);
        assert!(drain(&o, 10).0.is_pending());
    }

    #[test]
    fn overflow_by_count_closes_as_slow_consumer() {
        let o = Arc::new(Outbox::new(2, 1000));
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"c")), Err(PushError::Overflow));
        assert_eq!(o.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        match drain(&o, 10).0 {
            Poll::Ready(Drained::Close(c)) => assert_eq!(c.code, CloseCode::SLOW_CONSUMER),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn overflow_by_bytes_closes_as_slow_consumer() {
        let o = Arc::new(Outbox::new(100, 10));
        o.push(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(
            o.push(Bytes::from_static(b"123456")),
            Err(PushError::Overflow)
        );
        assert!(o.is_closing());
    }

    /// A socket stand-in that takes at most `room` more bytes.
    struct Sink {
        taken: Mutex<Vec<u8>>,
        room: Mutex<usize>,
    }

    impl Sink {
        fn with_room(room: usize) -> Arc<Self> {
            Arc::new(Sink {
                taken: Mutex::new(Vec::new()),
                room: Mutex::new(room),
            })
        }
        fn taken(&self) -> Vec<u8> {
            self.taken.lock().clone()
        }
    }

    impl DirectSink for Sink {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut room = self.room.lock();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(*room);
                self.taken.lock().extend_from_slice(&buf[..take]);
                *room -= take;
                n += take;
            }
            Ok(n)
        }
    }

    /// Counts wake-ups of the connection's own task.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Harness {
        outbox: Arc<Outbox>,
        sink: Arc<Sink>,
        shard: Arc<FlushShard>,
        wakes: Arc<Wakes>,
        writing: FrameQueue,
    }

    impl Harness {
        fn new(room: usize) -> Self {
            let outbox = Arc::new(Outbox::new(100, 1 << 20));
            let sink = Sink::with_room(room);
            let shard = Arc::new(FlushShard::new());
            outbox.attach_direct(sink.clone(), Arc::downgrade(&shard));
            let mut d = Harness {
                outbox,
                sink,
                shard,
                wakes: Arc::new(Wakes(Default::default())),
                writing: FrameQueue::new(),
            };
            // The session's first poll: nothing to do, waker registered.
            assert!(d.session_poll().is_pending());
            d
        }
        fn wakes(&self) -> usize {
            self.wakes.0.load(std::sync::atomic::Ordering::SeqCst)
        }
        /// One poll of the connection's task: move queued frames to its
        /// write queue.
        fn session_poll(&mut self) -> Poll<Drained> {
            let waker = std::task::Waker::from(self.wakes.clone());
            let mut cx = Context::from_waker(&waker);
            self.outbox
                .poll_drain(&mut cx, &mut self.writing, MAX_BATCH)
        }
        /// What a flusher task does with its list.
        fn flush(&self) -> usize {
            let listed = self.shard.take();
            for o in &listed {
                o.flush_direct();
            }
            listed.len()
        }
    }

    #[test]
    fn a_push_to_an_idle_connection_is_written_by_the_flusher_without_waking_its_task() {
        let d = Harness::new(1 << 20);
        d.outbox.push(Bytes::from_static(b"one")).unwrap();
        d.outbox.push(Bytes::from_static(b"two")).unwrap();
        assert_eq!(d.wakes(), 0);
        assert_eq!(d.flush(), 1, "listed once for both frames");
        assert_eq!(d.sink.taken(), b"onetwo");
        assert!(d.outbox.is_empty());
        // Idle again: the next push is listed again.
        d.outbox.push(Bytes::from_static(b"three")).unwrap();
        assert_eq!(d.flush(), 1);
        assert_eq!(d.sink.taken(), b"onetwothree");
        assert_eq!(d.wakes(), 0);
    }

    #[test]
    fn what_the_socket_does_not_take_is_handed_to_the_session_in_order() {
        let mut d = Harness::new(4);
        d.outbox.push(Bytes::from_static(b"abcdef")).unwrap();
        d.flush();
        assert_eq!(d.sink.taken(), b"abcd");
        assert_eq!(d.wakes(), 1, "the session is woken to wait for the socket");
        // Pushes now queue behind the session; nothing is listed.
        d.outbox.push(Bytes::from_static(b"gh")).unwrap();
        assert_eq!(d.flush(), 0);
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(2)));
        let queued: Vec<&[u8]> = d.writing.iter().map(|b| &b[..]).collect();
        assert_eq!(queued, vec![&b"ef"[..], &b"gh"[..]], "the tail first");
        // The session writes them; with its queue empty it gives the socket
        // back, and the next push goes to the flusher again.
        d.writing.clear();
        assert!(d.session_poll().is_pending());
        *d.sink.room.lock() = 100;
        d.outbox.push(Bytes::from_static(b"ij")).unwrap();
        assert_eq!(d.flush(), 1);
        assert_eq!(d.sink.taken(), b"abcdij");
    }

    #[test]
    fn a_full_socket_hands_everything_to_the_session() {
        let mut d = Harness::new(0);
        d.outbox.push(Bytes::from_static(b"x")).unwrap();
        d.flush();
        assert_eq!(d.wakes(), 1);
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(1)));
        assert!(d.sink.taken().is_empty());
    }

    #[test]
    fn frames_of_the_session_are_never_overtaken_by_direct_writes() {
        let mut d = Harness::new(1 << 20);
        // The session is about to write a reply of its own.
        d.outbox.claim();
        d.writing.push_back(Bytes::from_static(b"pong"));
        d.outbox.push(Bytes::from_static(b"fanout")).unwrap();
        assert_eq!(d.flush(), 0, "not listed while the session writes");
        assert_eq!(d.wakes(), 1);
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(1)));
        assert!(d.sink.taken().is_empty());
    }

    #[test]
    fn a_session_that_takes_listed_frames_first_leaves_the_flusher_nothing() {
        let mut d = Harness::new(1 << 20);
        d.outbox.push(Bytes::from_static(b"m")).unwrap();
        // The connection's task runs (for a read, say) before the flusher.
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(1)));
        assert_eq!(d.flush(), 1);
        assert!(d.sink.taken().is_empty(), "written once, by the session");
    }

    #[test]
    fn without_a_running_flusher_the_session_writes() {
        let mut d = Harness::new(1 << 20);
        d.shard.stop();
        d.outbox.push(Bytes::from_static(b"m")).unwrap();
        assert_eq!(d.flush(), 0, "not listed");
        assert_eq!(d.wakes(), 1);
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(1)));
    }

    #[test]
    fn listed_frames_are_handed_back_when_the_flusher_ends() {
        let mut d = Harness::new(1 << 20);
        d.outbox.push(Bytes::from_static(b"m")).unwrap();
        assert_eq!(d.wakes(), 0);
        for listed in d.shard.take() {
            listed.abandon_direct();
        }
        assert_eq!(d.wakes(), 1);
        assert_eq!(d.session_poll(), Poll::Ready(Drained::Frames(1)));
        assert!(d.sink.taken().is_empty());
    }

    #[test]
    fn a_detached_connection_gets_no_direct_writes() {
        let d = Harness::new(1 << 20);
        d.outbox.detach_direct();
        d.outbox.push(Bytes::from_static(b"late")).unwrap();
        assert_eq!(d.flush(), 0);
        assert!(d.sink.taken().is_empty());
        assert_eq!(d.wakes(), 1);
    }

    #[test]
    fn going_away_delivers_queued_frames_first() {
        let o = Arc::new(Outbox::new(10, 100));
        o.push(Bytes::from_static(b"x")).unwrap();
        o.close(CloseCode::GOING_AWAY, "shutdown");
        o.close(CloseCode::NORMAL, "second request loses");
        assert_eq!(drain(&o, 10).0, Poll::Ready(Drained::Frames(1)));
        match drain(&o, 10).0 {
            Poll::Ready(Drained::Close(c)) => assert_eq!(c.code, CloseCode::GOING_AWAY),
            other => panic!("unexpected {other:?}"),
        }
    }
}
