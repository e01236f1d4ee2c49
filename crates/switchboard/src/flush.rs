//! Flusher tasks: they write fan-out frames to idle connections directly.
//!
//! A fan-out pushes one shared frame onto every recipient's [`Outbox`]. If
//! each push woke the recipient's own task, a message to 10,000 subscribers
//! would cost 10,000 task wake-ups and polls before the first byte reached a
//! socket. Instead, a push to an idle connection puts the connection on a
//! flush list, and one flusher task per list writes every listed
//! connection's queued frames with one vectored write each. The connection's
//! own task is only woken when its socket does not take everything.
//!
//! Frames that arrive while a flusher is busy pile up on the connections'
//! queues and go out together on the next pass, so under load one write
//! carries several messages; a lone message is written as soon as the
//! flusher runs, without waiting for company.
//!
//! There is one list (and task) per runtime worker, so the writes of a large
//! fan-out spread over the worker threads. A flusher gives the thread back
//! to the runtime's scheduler between connections when its cooperative
//! budget runs out, so a large fan-out does not hold up other tasks. The
//! tasks start with the first connection and end when their node is gone.

use std::future::poll_fn;
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::outbox::Outbox;

/// One flush list and its task's waker.
pub(crate) struct FlushShard {
    dirty: Mutex<Vec<Arc<Outbox>>>,
    waker: AtomicWaker,
}

impl FlushShard {
    pub(crate) fn new() -> Self {
        FlushShard {
            dirty: Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
        }
    }

    /// Puts a connection on the list; wakes the task if the list was empty.
    pub(crate) fn schedule(&self, outbox: Arc<Outbox>) {
        let mut dirty = self.dirty.lock();
        let first = dirty.is_empty();
        dirty.push(outbox);
        drop(dirty);
        if first {
            self.waker.wake();
        }
    }
}

#[cfg(test)]
impl FlushShard {
    /// Empties the list (tests drive flushing by hand).
    pub(crate) fn take(&self) -> Vec<Arc<Outbox>> {
        std::mem::take(&mut *self.dirty.lock())
    }
}

impl Drop for FlushShard {
    fn drop(&mut self) {
        // The task holds only a weak reference: wake it so that it sees the
        // node is gone and ends.
        self.waker.wake();
    }
}

/// The node's flush lists. See the module docs.
#[derive(Default)]
pub(crate) struct Flusher {
    shards: OnceLock<Box<[Arc<FlushShard>]>>,
}

impl Flusher {
    /// The list for a connection, starting the flusher tasks on first use.
    /// Must be called from within a Tokio runtime.
    pub(crate) fn shard_for(&self, conn: u64) -> Weak<FlushShard> {
        let shards = self.shards.get_or_init(|| {
            let workers = tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .max(1);
            let shards: Box<[Arc<FlushShard>]> =
                (0..workers).map(|_| Arc::new(FlushShard::new())).collect();
            for shard in shards.iter() {
                tokio::spawn(run(Arc::downgrade(shard)));
            }
            shards
        });
        Arc::downgrade(&shards[(conn % shards.len() as u64) as usize])
    }
}

/// One flusher task: waits for a non-empty list, takes it whole, and writes
/// each listed connection's frames.
async fn run(shard: Weak<FlushShard>) {
    let mut batch: Vec<Arc<Outbox>> = Vec::new();
    loop {
        let taken = poll_fn(|cx| {
            let Some(shard) = shard.upgrade() else {
                return Poll::Ready(false);
            };
            shard.waker.register(cx.waker());
            let mut dirty = shard.dirty.lock();
            if dirty.is_empty() {
                return Poll::Pending;
            }
            std::mem::swap(&mut *dirty, &mut batch);
            Poll::Ready(true)
        })
        .await;
        if !taken {
            return;
        }
        for i in 0..batch.len() {
            if let Some(next) = batch.get(i + 1) {
                next.prefetch();
            }
            batch[i].flush_direct();
            tokio::task::consume_budget().await;
        }
        batch.clear();
        if batch.capacity() > 4096 {
            // Do not keep a huge list after a one-off fan-out.
            batch = Vec::new();
        }
    }
}
