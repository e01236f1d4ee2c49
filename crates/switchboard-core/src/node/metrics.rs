//! The node's metrics as `/metrics` serves them: what is kept up to date
//! as things happen ([`Stats`](crate::stats::Stats)), plus what is cheaper
//! to read at scrape time than to keep (rooms, users, queue depths, the
//! broker's state).

use std::time::Instant;

use super::Node;
use crate::broker::{BrokerError, Publication, Receipt};

impl Node {
    /// Hands `publication` to the broker, measuring how long it took and
    /// counting a failure.
    pub(super) async fn publish_measured(
        &self,
        publication: Publication,
    ) -> Result<Receipt, BrokerError> {
        let started = Instant::now();
        let published = self.inner.broker.publish(publication).await;
        let stats = &self.inner.stats;
        stats
            .broker_publish_latency
            .observe_duration(started.elapsed());
        if published.is_err() {
            stats.broker_errors.inc();
        }
        published
    }

    /// Every metric in the Prometheus text exposition format (version
    /// 0.0.4), the values read at scrape time refreshed first. A scrape
    /// visits each connection's outbound queue once.
    pub fn prometheus(&self) -> String {
        let inner = &self.inner;
        let scrape = &inner.stats.scrape;
        let (mut queued, mut longest) = (0usize, 0usize);
        for entry in inner.conns.iter() {
            let n = entry.value().len();
            queued += n;
            longest = longest.max(n);
        }
        scrape.queued_frames.set(gauge(queued as u64));
        scrape.queue_max_frames.set(gauge(longest as u64));
        scrape.rooms.set(gauge(inner.hub.room_count() as u64));
        scrape.users.set(gauge(inner.hub.user_count() as u64));
        let broker = inner.broker.health();
        scrape.broker_up.set(i64::from(broker.connected));
        store(&scrape.broker_reconnects, broker.reconnects);
        let history = broker.history.unwrap_or_default();
        scrape.history_bytes.set(gauge(history.bytes));
        scrape.history_budget_bytes.set(gauge(history.budget));
        store(&scrape.history_evicted, history.evicted);
        inner.stats.encode()
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sets a counter that mirrors a count kept elsewhere (which only grows).
fn store(counter: &prometheus_client::metrics::counter::Counter, v: u64) {
    counter
        .inner()
        .store(v, std::sync::atomic::Ordering::Relaxed);
}
