//! Counters a node keeps about itself, shown by `/health` and `/metrics`.
//! All are monotonic except `connections`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::broker::HistoryUsage;

/// Node counters, read through [`Stats::snapshot`]. Updated with relaxed atomics: they are for people and
/// dashboards, not for synchronization.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open WebSocket connections.
    pub(crate) connections: AtomicU64,
    /// Connections accepted since start.
    pub(crate) connections_total: AtomicU64,
    /// Messages accepted by the broker from this node's publishers.
    pub(crate) published: AtomicU64,
    /// Frames queued for local recipients by fan-out.
    pub(crate) deliveries: AtomicU64,
    /// Connections closed because their outbound queue overflowed.
    pub(crate) slow_consumers: AtomicU64,
    /// Connections terminated for a missed pong.
    pub(crate) heartbeat_timeouts: AtomicU64,
    /// Upgrades refused before the handshake (any status).
    pub(crate) rejected_upgrades: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Open connections.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Messages accepted by the broker from this node's publishers.
    pub published: u64,
    /// Frames queued for local recipients by fan-out.
    pub deliveries: u64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumers: u64,
    /// Connections terminated for a missed pong.
    pub heartbeat_timeouts: u64,
    /// Upgrades refused before the handshake (any status).
    pub rejected_upgrades: u64,
}

impl Stats {
    /// Counts an upgrade the gate refused before the handshake.
    pub fn count_rejected_upgrade(&self) {
        self.rejected_upgrades.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: r(&self.connections),
            connections_total: r(&self.connections_total),
            published: r(&self.published),
            deliveries: r(&self.deliveries),
            slow_consumers: r(&self.slow_consumers),
            heartbeat_timeouts: r(&self.heartbeat_timeouts),
            rejected_upgrades: r(&self.rejected_upgrades),
        }
    }

    /// The counters in the Prometheus text exposition format, with the
    /// broker's history usage when it keeps history in the node.
    pub fn prometheus(&self, history: Option<&HistoryUsage>) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\nswitchboard_{name} {v}\n"
            ));
        };
        metric(
            "connections",
            "gauge",
            "Open WebSocket connections.",
            s.connections,
        );
        metric(
            "connections_total",
            "counter",
            "Connections accepted.",
            s.connections_total,
        );
        metric(
            "published_total",
            "counter",
            "Messages accepted by the broker.",
            s.published,
        );
        metric(
            "deliveries_total",
            "counter",
            "Frames queued by fan-out.",
            s.deliveries,
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Slow-consumer closes.",
            s.slow_consumers,
        );
        metric(
            "heartbeat_timeouts_total",
            "counter",
            "Missed-pong closes.",
            s.heartbeat_timeouts,
        );
        metric(
            "rejected_upgrades_total",
            "counter",
            "Refused upgrades.",
            s.rejected_upgrades,
        );
        if let Some(h) = history {
            metric(
                "history_bytes",
                "gauge",
                "Bytes of room history and state held by this node's broker.",
                h.bytes,
            );
            metric(
                "history_budget_bytes",
                "gauge",
                "The most bytes of room history and state the broker may hold.",
                h.budget,
            );
            metric(
                "history_evicted_total",
                "counter",
                "Messages evicted from room history, oldest first, to stay within the budget.",
                h.evicted,
            );
        }
        out
    }
}
