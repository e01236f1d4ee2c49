//! Switchboard's fault and abuse scenarios, run against real processes:
//! the `switchboard` binary (several nodes), a `redis-server` of their own
//! and a real nginx in front, all on loopback, driven by raw-protocol
//! WebSocket clients that deduplicate nothing and by our Rust and
//! JavaScript clients. Each scenario prints one
//! line of figures and fails when a must-be-zero figure is not zero.
//! `docs/reliability.md` states the promises these check and the latest
//! figures.
//!
//! # Layout
//!
//! - [`cluster`]: the processes (nodes, Redis, nginx), stopped on drop.
//! - [`http`]: a minimal HTTP client for the publish API and `/health`.
//! - [`subscriber`]: one room subscriber that reconnects and recovers as
//!   `docs/protocol.md` says, and records every message it gets.
//! - [`rust_client`]: the same on the Rust client, which reconnects and
//!   recovers on its own.
//! - [`js_client`]: the same on the JavaScript client, many of them in
//!   one Node process (`js/subscribers.mjs`).
//! - [`stream`]: many subscribers, one publisher, and the tally of lost,
//!   duplicated and reordered messages.
//! - [`sampler`]: CPU and memory of the server processes over a run.
//! - [`scenario`]: the scenarios themselves.
//! - [`soak`]: the clients, backend traffic and leak check of the soak.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod http;
pub mod js_client;
pub mod rust_client;
pub mod sampler;
pub mod scenario;
pub mod soak;
pub mod stream;
pub mod subscriber;

/// Raises this process's open-file limit to its hard limit, so that
/// thousands of client sockets fit; returns the new soft limit.
pub fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    }
}
