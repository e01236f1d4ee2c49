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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use super::outbox::Outbox;
use crate::stats::{Stats, Written};

/// One flush list and its task's waker.
pub(crate) struct FlushShard {
    dirty: Mutex<Vec<Arc<Outbox>>>,
    waker: AtomicWaker,
    /// Whether the list's task is alive. It is not once its runtime has shut
    /// down (a node kept past its runtime) or if it panicked: connections
    /// then write their frames themselves.
    running: AtomicBool,
}

impl FlushShard {
    pub(crate) fn new() -> Self {
        FlushShard {
            dirty: Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
            running: AtomicBool::new(true),
        }
    }

    /// Whether a task is serving this list.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
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

    /// Marks the list unserved, as when its task has ended.
    pub(crate) fn stop(&self) {
        self.running.store(false, Ordering::Release);
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
pub(crate) struct Flusher {
    shards: OnceLock<Box<[Arc<FlushShard>]>>,
    /// The node's metrics, where the tasks count what they write.
    stats: Arc<Stats>,
}

impl Flusher {
    /// Flush lists that count their writes in `stats`; the tasks start with
    /// the first connection.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Flusher {
            shards: OnceLock::new(),
            stats,
        }
    }

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
                tokio::spawn(run(Arc::downgrade(shard), self.stats.clone()));
            }
            shards
        });
        Arc::downgrade(&shards[(conn % shards.len() as u64) as usize])
    }
}

/// One flusher task: waits for a non-empty list, takes it whole, and writes
/// each listed connection's frames.
async fn run(shard: Weak<FlushShard>, stats: Arc<Stats>) {
    /// The task's state; when the task ends for any reason (its runtime shut
    /// down, a panic), the list is marked unserved and every connection
    /// still listed is handed back to its own task.
    struct Task {
        shard: Weak<FlushShard>,
        batch: Vec<Arc<Outbox>>,
    }
    impl Drop for Task {
        fn drop(&mut self) {
            for outbox in self.batch.drain(..) {
                outbox.abandon_direct();
            }
            if let Some(shard) = self.shard.upgrade() {
                shard.running.store(false, Ordering::Release);
                let listed = std::mem::take(&mut *shard.dirty.lock());
                for outbox in listed {
                    outbox.abandon_direct();
                }
            }
        }
    }
    let mut task = Task {
        shard,
        batch: Vec::new(),
    };
    loop {
        let taken = poll_fn(|cx| {
            let Some(shard) = task.shard.upgrade() else {
                return Poll::Ready(false);
            };
            shard.waker.register(cx.waker());
            let mut dirty = shard.dirty.lock();
            if dirty.is_empty() {
                return Poll::Pending;
            }
            std::mem::swap(&mut *dirty, &mut task.batch);
            Poll::Ready(true)
        })
        .await;
        if !taken {
            return;
        }
        let mut written = Written::default();
        for i in 0..task.batch.len() {
            if let Some(next) = task.batch.get(i + 1) {
                next.prefetch();
            }
            let w = task.batch[i].flush_direct();
            written.add(w.frames as usize, w.bytes as usize);
            tokio::task::consume_budget().await;
        }
        stats.sent.add(written);
        task.batch.clear();
        if task.batch.capacity() > 4096 {
            // Do not keep a huge list after a one-off fan-out.
            task.batch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_runtime_is_gone_connections_write_their_own_frames() {
        let shard = Arc::new(FlushShard::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(run(Arc::downgrade(&shard), Arc::new(Stats::default())));
            tokio::task::yield_now().await;
        });
        assert!(shard.is_running());
        drop(rt);
        assert!(!shard.is_running(), "the task is gone with its runtime");
    }
}
