//! The bounded outbound queue of one connection.
//!
//! Anyone may push a ready-made WebSocket frame (shared [`Bytes`], so a
//! fan-out pushes the same allocation to every recipient); only the
//! connection's own task drains it. The queue is bounded by frame count and by
//! bytes. A push that would exceed either bound does not wait and does not
//! drop silently: it marks the connection for closing with "slow consumer"
//! (4000), so one client that stops reading never slows anyone else down and
//! never grows the server's memory.
//!
//! # Closing
//!
//! [`Outbox::close`] asks the owning task to close the connection with a code.
//! The first request wins; later pushes are refused with
//! [`PushError::Closed`].
//!
//! # Memory
//!
//! An idle outbox holds no buffer: the queue's storage is released when it
//! drains.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use switchboard_protocol::CloseCode;

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

/// A connection's outbound queue. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    max_frames: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseRequest>,
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
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// Queues one frame. Never waits.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return Err(PushError::Closed);
        }
        if st.frames.len() >= self.max_frames || st.bytes + frame.len() > self.max_bytes {
            st.close = Some(CloseRequest {
                code: CloseCode::SLOW_CONSUMER,
                reason: "slow consumer: outbound queue full".into(),
            });
            st.frames = VecDeque::new();
            st.bytes = 0;
            drop(st);
            self.waker.wake();
            return Err(PushError::Overflow);
        }
        let was_empty = st.frames.is_empty();
        st.bytes += frame.len();
        st.frames.push_back(frame);
        drop(st);
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    /// Asks the owning task to close the connection. The first request wins.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let mut st = self.state.lock();
        if st.close.is_none() {
            st.close = Some(CloseRequest {
                code,
                reason: reason.into(),
            });
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
            .clone()
            .filter(|c| c.code == CloseCode::SLOW_CONSUMER)
    }

    /// The most frames the queue holds.
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// Frames currently queued.
    pub fn len(&self) -> usize {
        self.state.lock().frames.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves up to `max` queued frames into `out`. Returns `Pending` (and
    /// registers the waker) when there is nothing to do. Queued frames are
    /// handed out before a close request is reported, so a "going away" close
    /// still delivers what was already queued.
    pub fn poll_drain(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
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

    fn try_drain(&self, out: &mut VecDeque<Bytes>, max: usize) -> Option<Drained> {
        let mut st = self.state.lock();
        if !st.frames.is_empty() && max > 0 {
            let n = st.frames.len().min(max);
            let st = &mut *st;
            for frame in st.frames.drain(..n) {
                st.bytes -= frame.len();
                out.push_back(frame);
            }
            if st.frames.is_empty() {
                // Give the storage back: idle connections hold no buffers.
                st.frames = VecDeque::new();
            }
            return Some(Drained::Frames(n));
        }
        match &st.close {
            Some(close) if st.frames.is_empty() => Some(Drained::Close(close.clone())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker;

    fn drain(o: &Outbox, max: usize) -> (Poll<Drained>, VecDeque<Bytes>) {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        let p = o.poll_drain(&mut cx, &mut out, max);
        (p, out)
    }

    #[test]
    fn frames_come_out_in_order_and_bounded_by_max() {
        let o = Outbox::new(10, 1000);
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
        let o = Outbox::new(2, 1000);
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
        let o = Outbox::new(100, 10);
        o.push(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(
            o.push(Bytes::from_static(b"123456")),
            Err(PushError::Overflow)
        );
        assert!(o.is_closing());
    }

    #[test]
    fn going_away_delivers_queued_frames_first() {
        let o = Outbox::new(10, 100);
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
