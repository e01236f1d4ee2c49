//! The outbox and the flusher together: who writes, in what order, and who
//! is woken.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::noop_waker;
use parking_lot::Mutex;
use switchboard_protocol::CloseCode;

use super::flush::FlushShard;
use super::outbox::{DirectSink, Drained, FrameQueue, MAX_BATCH, Outbox, PushError};

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
