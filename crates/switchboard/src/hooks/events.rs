//! The events hook: connects, disconnects, joins, leaves, and users coming
//! online and going offline, delivered to the application in signed
//! batches, retried with backoff, without ever making a connection wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchboard_core::events::{Event, Events};
use tokio::sync::mpsc;

use super::{Application, Hook};

/// An event with the time it happened.
#[derive(Serialize)]
struct Stamped {
    /// Unix time in milliseconds.
    at: u64,
    #[serde(flatten)]
    event: Event,
}

/// The events hook, as the engine's [`Events`] sink. Events are queued (up
/// to `buffer` of them; beyond that they are dropped and counted, and the
/// next batch says how many in `dropped`) and posted in batches of up to
/// `batch`, each batch as soon as it is full or `linger` after its first
/// event. A batch the application does not take (no `2xx`) is posted again
/// after a backoff that doubles from 250 ms up to 30 s, with jitter, until
/// it is taken; events keep queueing meanwhile.
#[derive(Debug)]
pub struct EventsHook {
    app: Application,
    hook: Hook,
    batch: usize,
    linger: Duration,
    buffer: usize,
    queue: OnceLock<mpsc::Sender<Stamped>>,
    dropped: Arc<AtomicU64>,
}

impl EventsHook {
    /// Posts events to `hook` of `app`: batches of up to 100, sent at most
    /// 200 ms after their first event, with up to 10,000 events queued.
    pub fn new(app: Application, hook: Hook) -> Self {
        EventsHook {
            app,
            hook,
            batch: 100,
            linger: Duration::from_millis(200),
            buffer: 10_000,
            queue: OnceLock::new(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the largest batch (at least 1).
    pub fn batch(mut self, max: usize) -> Self {
        self.batch = max.max(1);
        self
    }

    /// Sets how long a batch waits for more events after its first.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets how many events may wait (at least 1).
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The queue, and the task that empties it, started on first use (on
    /// the runtime of the connection that records).
    fn queue(&self) -> Option<&mpsc::Sender<Stamped>> {
        if let Some(q) = self.queue.get() {
            return Some(q);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.buffer);
            let poster = Poster {
                app: self.app.clone(),
                hook: self.hook.clone(),
                batch: self.batch,
                linger: self.linger,
                dropped: self.dropped.clone(),
            };
            runtime.spawn(poster.run(rx));
            tx
        }))
    }
}

impl Events for EventsHook {
    fn record(&self, event: Event) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let queued = self
            .queue()
            .is_some_and(|q| q.try_send(Stamped { at, event }).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The task that posts the queue's batches.
struct Poster {
    app: Application,
    hook: Hook,
    batch: usize,
    linger: Duration,
    dropped: Arc<AtomicU64>,
}

/// A batch as posted.
#[derive(Serialize)]
struct Batch<'a> {
    events: &'a [Stamped],
    /// Events lost (queue full) since the last batch that was taken.
    dropped: u64,
}

impl Poster {
    async fn run(self, mut rx: mpsc::Receiver<Stamped>) {
        let mut batch = Vec::with_capacity(self.batch);
        // Ends when the node (the only sender) is gone and the queue is
        // empty.
        while let Some(first) = rx.recv().await {
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(event)) => batch.push(event),
                    Ok(None) | Err(_) => break,
                }
            }
            self.deliver(&batch, &rx).await;
            batch.clear();
        }
    }

    /// Posts `batch` until the application takes it (or the node is gone).
    async fn deliver(&self, batch: &[Stamped], rx: &mpsc::Receiver<Stamped>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let dropped = self.dropped.load(Ordering::Relaxed);
            let taken = match self
                .app
                .call(
                    &self.hook,
                    &Batch {
                        events: batch,
                        dropped,
                    },
                )
                .await
            {
                Ok(answer) if (200..300).contains(&answer.status) => true,
                Ok(answer) => {
                    tracing::warn!(url = %self.hook.url, status = answer.status, "events not taken");
                    false
                }
                Err(failure) => {
                    tracing::warn!(url = %self.hook.url, reason = %failure.0, "events not delivered");
                    false
                }
            };
            if taken {
                self.dropped.fetch_sub(dropped, Ordering::Relaxed);
                return;
            }
            if rx.is_closed() && rx.is_empty() {
                tracing::warn!(events = batch.len(), "node gone; events not delivered");
                return;
            }
            // Full jitter between half and all of the backoff, so that
            // nodes retrying the same application spread out.
            let jitter = rand_fraction();
            tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * jitter)).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

/// A number in [0, 1) from the clock's nanoseconds: spreading retries
/// needs no better randomness.
fn rand_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos % 1000) / 1000.0
}
