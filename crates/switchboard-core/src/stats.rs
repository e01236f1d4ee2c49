//! What a node measures about itself, shown by `/health` (a few counters)
//! and `/metrics` (everything, in the Prometheus text format; every metric
//! is described in `docs/metrics.md`).
//!
//! The metrics are `prometheus-client` counters and gauges (an atomic
//! each) and [`Histogram`]s (atomics only), registered once in a
//! [`Registry`] that the crate's encoder writes out. Labelled series that
//! hot paths touch are resolved when the node starts (per endpoint) or when
//! a connection opens, never per delivery; the few resolved on the spot
//! (an upgrade refused, an error frame) are on paths that are already
//! slow.

mod histogram;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

pub use histogram::{Histogram, HistogramSnapshot};

use crate::endpoint::Endpoint;

/// Labels of a labelled series: static names, values that come from a
/// bounded set (endpoint paths, transport names, reasons, error codes).
type Labels = Vec<(&'static str, String)>;

/// Bounds of the latency histograms, in nanoseconds: 10 µs to 10 s.
static LATENCY_BOUNDS_NS: [u64; 14] = [
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Bounds of the fan-out histogram, in recipients.
static FANOUT_BOUNDS: [u64; 11] = [0, 1, 2, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000];

/// The transport every built-in endpoint speaks; its series are resolved
/// when the node starts.
const WEBSOCKET: &str = "websocket";

/// One endpoint's series for one transport.
#[derive(Debug)]
struct EndpointSeries {
    path: String,
    transport: &'static str,
    open: Gauge,
    accepted: Counter,
}

/// Frames and bytes written to clients' sockets.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    frames: Counter,
    bytes: Counter,
}

impl Sent {
    /// Counts what a write loop added up (nothing when it wrote nothing).
    #[inline]
    pub(crate) fn add(&self, written: Written) {
        if written.bytes > 0 {
            self.frames.inc_by(written.frames);
            self.bytes.inc_by(written.bytes);
        }
    }
}

/// Frames and bytes a write loop wrote, added up in plain integers and
/// counted once with [`Sent::add`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Frames whose last byte was written.
    pub(crate) frames: u64,
    /// Bytes written.
    pub(crate) bytes: u64,
}

impl Written {
    /// Adds one write: `frames` completed, `bytes` taken by the socket.
    #[inline]
    pub(crate) fn add(&mut self, frames: usize, bytes: usize) {
        self.frames += frames as u64;
        self.bytes += bytes as u64;
    }
}

/// Values read when `/metrics` is scraped, not kept up to date on any path.
#[derive(Debug, Default)]
pub(crate) struct ScrapeGauges {
    pub(crate) rooms: Gauge,
    pub(crate) users: Gauge,
    pub(crate) queued_frames: Gauge,
    pub(crate) queue_max_frames: Gauge,
    pub(crate) broker_up: Gauge,
    pub(crate) broker_reconnects: Counter,
    pub(crate) history_bytes: Gauge,
    pub(crate) history_budget_bytes: Gauge,
    pub(crate) history_evicted: Counter,
}

/// A node's metrics. Updated with relaxed atomics: they are for people and
/// dashboards, not for synchronization.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    /// Per endpoint and transport; a handful, scanned at connect and
    /// disconnect.
    endpoints: parking_lot::RwLock<Vec<EndpointSeries>>,
    connections: Family<Labels, Gauge>,
    connections_accepted: Family<Labels, Counter>,
    refused_upgrades: Family<Labels, Counter>,
    /// Upgrades refused, any reason, for `/health`.
    refused_total: Counter,
    client_errors: Family<Labels, Counter>,
    pub(crate) published: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) heartbeat_timeouts: Counter,
    pub(crate) frames_received: Counter,
    pub(crate) received_bytes: Counter,
    pub(crate) sent: Sent,
    pub(crate) fanout: Histogram,
    pub(crate) delivery_latency: Histogram,
    pub(crate) broker_publish_latency: Histogram,
    pub(crate) broker_errors: Counter,
    pub(crate) client_reconnects: Counter,
    pub(crate) presence_entries: Gauge,
    pub(crate) scrape: ScrapeGauges,
}

/// A point-in-time copy of the counters `/health` shows.
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

impl Default for Stats {
    fn default() -> Self {
        Stats::new(&[])
    }
}

impl Stats {
    /// The metrics of a node serving `endpoints`, each endpoint's series
    /// present (at zero) from the start.
    pub(crate) fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let latency = || Histogram::new(&LATENCY_BOUNDS_NS, 1e-9);
        let stats = Stats {
            registry: Registry::with_prefix("switchboard"),
            endpoints: parking_lot::RwLock::new(Vec::new()),
            connections: Family::default(),
            connections_accepted: Family::default(),
            refused_upgrades: Family::default(),
            refused_total: Counter::default(),
            client_errors: Family::default(),
            published: Counter::default(),
            deliveries: Counter::default(),
            slow_consumers: Counter::default(),
            heartbeat_timeouts: Counter::default(),
            frames_received: Counter::default(),
            received_bytes: Counter::default(),
            sent: Sent::default(),
            fanout: Histogram::new(&FANOUT_BOUNDS, 1.0),
            delivery_latency: latency(),
            broker_publish_latency: latency(),
            broker_errors: Counter::default(),
            client_reconnects: Counter::default(),
            presence_entries: Gauge::default(),
            scrape: ScrapeGauges::default(),
        };
        for e in endpoints {
            stats.series(e.path(), WEBSOCKET, |_| ());
        }
        stats.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "connections",
            "Open connections, by endpoint path and transport",
            self.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "Connections accepted since start, by endpoint path and transport",
            self.connections_accepted.clone(),
        );
        r.register(
            "upgrades_refused",
            "Upgrade requests refused before the handshake, by HTTP status and error code",
            self.refused_upgrades.clone(),
        );
        r.register(
            "frames_received",
            "Data frames (messages) received from clients",
            self.frames_received.clone(),
        );
        r.register_with_unit(
            "received",
            "Payload bytes of the data frames received from clients",
            prometheus_client::registry::Unit::Bytes,
            self.received_bytes.clone(),
        );
        r.register(
            "frames_sent",
            "Frames written to clients' sockets, of every kind",
            self.sent.frames.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes written to clients' sockets, framing included",
            prometheus_client::registry::Unit::Bytes,
            self.sent.bytes.clone(),
        );
        r.register(
            "published",
            "Messages the broker accepted from this node's publishers",
            self.published.clone(),
        );
        r.register(
            "deliveries",
            "Frames queued for this node's connections by fan-out",
            self.deliveries.clone(),
        );
        r.register(
            "fanout_recipients",
            "Connections on this node that one message was queued for",
            self.fanout.clone(),
        );
        r.register_with_unit(
            "delivery_latency",
            "From a message reaching this node's fan-out (published here, or received from the broker) to its frame queued for every local recipient",
            prometheus_client::registry::Unit::Seconds,
            self.delivery_latency.clone(),
        );
        r.register(
            "outbound_queued_frames",
            "Frames waiting in the outbound queues of all connections, read at scrape time",
            self.scrape.queued_frames.clone(),
        );
        r.register(
            "outbound_queue_max_frames",
            "Frames waiting in the longest outbound queue, read at scrape time",
            self.scrape.queue_max_frames.clone(),
        );
        r.register(
            "slow_consumer_closes",
            "Connections closed because their outbound queue overflowed (close code 4000)",
            self.slow_consumers.clone(),
        );
        r.register(
            "heartbeat_timeout_closes",
            "Connections terminated for a missed pong",
            self.heartbeat_timeouts.clone(),
        );
        r.register_with_unit(
            "broker_publish_latency",
            "How long the broker took to accept a publish from this node, failures included",
            prometheus_client::registry::Unit::Seconds,
            self.broker_publish_latency.clone(),
        );
        r.register(
            "broker_errors",
            "Publishes the broker refused or could not take",
            self.broker_errors.clone(),
        );
        r.register(
            "broker_reconnects",
            "Times the broker connection was lost and reconnection began",
            self.scrape.broker_reconnects.clone(),
        );
        r.register(
            "broker_up",
            "1 while the broker is connected, 0 while it is not",
            self.scrape.broker_up.clone(),
        );
        r.register(
            "client_reconnects",
            "Room joins that asked to recover missed messages: clients coming back after a disconnect",
            self.client_reconnects.clone(),
        );
        r.register(
            "client_errors",
            "Error frames sent to clients, by error code",
            self.client_errors.clone(),
        );
        r.register(
            "rooms",
            "Rooms with at least one member on this node",
            self.scrape.rooms.clone(),
        );
        r.register(
            "users",
            "Users with at least one connection on this node that takes user messages",
            self.scrape.users.clone(),
        );
        r.register(
            "presence_entries",
            "Presence entries this node's connections hold (one per connection and room with presence)",
            self.presence_entries.clone(),
        );
        r.register_with_unit(
            "history",
            "Bytes of room history and state held by the broker in this node (the built-in broker only)",
            prometheus_client::registry::Unit::Bytes,
            self.scrape.history_bytes.clone(),
        );
        r.register_with_unit(
            "history_budget",
            "The most bytes of room history and state the built-in broker may hold",
            prometheus_client::registry::Unit::Bytes,
            self.scrape.history_budget_bytes.clone(),
        );
        r.register(
            "history_evicted",
            "Messages evicted from room history, oldest first, to stay within the budget",
            self.scrape.history_evicted.clone(),
        );
        self
    }

    /// Runs `f` on the series of `path` over `transport`, created (at zero)
    /// the first time.
    fn series<R>(
        &self,
        path: &str,
        transport: &'static str,
        f: impl Fn(&EndpointSeries) -> R,
    ) -> R {
        let find = |v: &[EndpointSeries]| {
            v.iter()
                .position(|s| s.path == path && s.transport == transport)
        };
        {
            let list = self.endpoints.read();
            if let Some(i) = find(&list) {
                return f(&list[i]);
            }
        }
        let mut list = self.endpoints.write();
        let i = match find(&list) {
            Some(i) => i,
            None => {
                let labels = vec![
                    ("endpoint", path.to_string()),
                    ("transport", transport.to_string()),
                ];
                list.push(EndpointSeries {
                    path: path.to_string(),
                    transport,
                    open: self.connections.get_or_create_owned(&labels),
                    accepted: self.connections_accepted.get_or_create_owned(&labels),
                });
                list.len() - 1
            }
        };
        f(&list[i])
    }

    /// Counts a connection opened on `path` over `transport`.
    pub(crate) fn connection_opened(&self, path: &str, transport: &'static str) {
        self.series(path, transport, |s| {
            s.open.inc();
            s.accepted.inc();
        });
    }

    /// Counts a connection closed on `path` over `transport`.
    pub(crate) fn connection_closed(&self, path: &str, transport: &'static str) {
        self.series(path, transport, |s| {
            s.open.dec();
        });
    }

    /// Counts an upgrade refused before the handshake with HTTP `status`
    /// and the error `code` its JSON body carries (`"other"` without one).
    pub fn count_refused_upgrade(&self, status: u16, code: &'static str) {
        self.refused_total.inc();
        let labels = vec![("status", status.to_string()), ("reason", code.to_string())];
        self.refused_upgrades.get_or_create(&labels).inc();
    }

    /// Counts an `error` frame sent to a client.
    pub(crate) fn count_client_error(&self, code: &'static str) {
        let labels = vec![("code", code.to_string())];
        self.client_errors.get_or_create(&labels).inc();
    }

    /// Reads the counters `/health` shows.
    pub fn snapshot(&self) -> StatsSnapshot {
        let (connections, connections_total) =
            self.endpoints
                .read()
                .iter()
                .fold((0, 0), |(open, total), s| {
                    (
                        open + u64::try_from(s.open.get()).unwrap_or(0),
                        total + s.accepted.get(),
                    )
                });
        StatsSnapshot {
            connections,
            connections_total,
            published: self.published.get(),
            deliveries: self.deliveries.get(),
            slow_consumers: self.slow_consumers.get(),
            heartbeat_timeouts: self.heartbeat_timeouts.get(),
            rejected_upgrades: self.refused_total.get(),
        }
    }

    /// Every metric in the Prometheus text exposition format (version
    /// 0.0.4), as last updated. [`Node::prometheus`](crate::Node::prometheus)
    /// refreshes the values read at scrape time first.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
