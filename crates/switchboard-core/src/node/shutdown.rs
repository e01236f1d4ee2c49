//! Draining and shutting down a node.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_protocol::CloseCode;

use super::Node;
use crate::hub::ConnId;
use crate::outbox::Outbox;

impl Node {
    /// Whether a shutdown has begun; new upgrades are then refused with 503.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Number of open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.len()
    }

    /// Starts a graceful shutdown without waiting: new upgrades are refused
    /// and every connection is asked to close with 1001, at once or spread
    /// evenly over [`Config::shutdown_spread`](crate::Config::shutdown_spread) (in the order they opened).
    /// A second call does not start the closes again.
    pub fn begin_shutdown(&self) {
        self.inner.sessions.close();
        if self.inner.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut open: Vec<(ConnId, Arc<Outbox>)> = self
            .inner
            .conns
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        let spread = self.inner.config.shutdown_spread;
        let runtime = tokio::runtime::Handle::try_current();
        let (Ok(runtime), false) = (runtime, spread.is_zero() || open.len() < 2) else {
            for (_, outbox) in &open {
                outbox.close(CloseCode::GOING_AWAY, "server shutting down");
            }
            return;
        };
        open.sort_unstable_by_key(|(id, _)| *id);
        runtime.spawn(async move {
            let start = tokio::time::Instant::now();
            let n = open.len() as u32;
            for (i, (_, outbox)) in open.into_iter().enumerate() {
                tokio::time::sleep_until(start + spread * i as u32 / n).await;
                outbox.close(CloseCode::GOING_AWAY, "server shutting down");
            }
        });
    }

    /// Graceful shutdown: refuse new upgrades, close every connection with
    /// 1001 "going away" (after what was already queued for it), and wait up
    /// to `shutdown_timeout` for the sessions to finish. Returns whether all
    /// finished in time.
    pub async fn shutdown(&self) -> bool {
        self.begin_shutdown();
        let timeout: Duration = self.inner.config.shutdown_timeout;
        tokio::time::timeout(timeout, self.inner.sessions.wait())
            .await
            .is_ok()
    }
}
