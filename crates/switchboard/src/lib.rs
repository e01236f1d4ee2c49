//! Switchboard: a realtime WebSocket engine for axum applications.
//!
//! HTTP routes and WebSocket endpoints share one port. Everything a plain
//! HTTP framework leaves out of the upgrade (identity, endpoint lookup,
//! handshake checks) is decided before the `101` response; after it, one task
//! per socket runs the connection with bounded queues and heartbeats. Messages
//! go through a [`Broker`](broker::Broker), the only seam between nodes, and
//! are encoded to one WebSocket frame per node, whose bytes every local
//! recipient shares.
//!
//! # Layout
//!
//! Dependencies point one way: wire types (`switchboard-protocol`) ← engine
//! modules ← HTTP integration.
//!
//! - [`node`]: [`Node`], the composition root and the handle you keep:
//!   configuration, hub, broker, endpoints; publish and shut down from here.
//! - [`config`]: [`Config`] and its validating builder; every default stated.
//! - [`endpoint`]: [`Endpoint`] (a path and its behaviour) and the
//!   [`Handler`] trait for your own behaviours.
//! - [`handlers`]: the built-in behaviours (echo, chat, notifications).
//! - [`conn`]: [`Conn`], one connection as a handler sees it: a thin handle.
//! - [`rooms`]: room membership as the node coordinates it (join with
//!   recovery, leave, presence), and [`JoinError`](rooms::JoinError).
//! - `session` (private): the per-socket task: open, read, heartbeat,
//!   rate limit, close.
//! - `write` (private): the write path, and the order of its locks: the
//!   [`outbox`] (the bounded outbound queue; overflow closes a slow
//!   consumer), the flusher tasks that write fan-out frames straight to idle
//!   connections' sockets (one task wake-up per fan-out), and the session's
//!   own writes.
//! - [`hub`]: local membership (rooms, users, broadcast) and fan-out.
//! - [`broker`]: the cross-node seams ([`Broker`](broker::Broker) and
//!   [`Presence`](broker::Presence)) and the in-memory broker.
//! - [`auth`]: [`Identity`](auth::Identity), permissions, JWT, and the
//!   [`Authenticator`](auth::Authenticator) trait the gate consults.
//! - [`gate`]: the other checks before a handshake: Origin, client IP behind
//!   trusted proxies, rate limits, connection caps.
//! - [`http`]: the router (endpoints, publish API, health, metrics) and
//!   [`serve`].
//! - [`ws`]: RFC 6455 framing.
//! - [`stats`]: counters for `/health` and `/metrics`.
//!
//! # Embedding
//!
//! ```no_run
//! use switchboard::{Endpoint, Node};
//!
//! # async fn run() -> std::io::Result<()> {
//! let node = Node::builder().default_endpoints().build().expect("valid config");
//! let app = axum::Router::new()
//!     .route("/hello", axum::routing::get(|| async { "hi" }))
//!     .merge(node.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! switchboard::serve(listener, app, node, std::future::pending()).await
//! # }
//! ```
//!
//! # Cancel safety
//!
//! [`Node::shutdown`] may be dropped midway: the node keeps draining and the
//! call can be made again. Handler calls are awaited to completion by the
//! session and are never cancelled mid-way except by process exit.

pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod gate;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod node;
pub mod rooms;
mod session;
pub mod stats;
mod write;
pub mod ws;

/// The outbound queue, at the path it has always had; it lives in the
/// write path's module with the flushers.
pub use write::outbox;
// The flushers, named as `crate::flush` by the node.
use write::flush;

/// The axum version the router is built with, for applications that merge it.
pub use axum;
pub use config::Config;
pub use conn::Conn;
pub use endpoint::{Disconnect, Endpoint, Handler, Inbound};
pub use http::serve;
pub use node::Node;
pub use switchboard_protocol as protocol;

impl Node {
    /// The router for this node's endpoints, publish API, `/health` and
    /// `/metrics`. See [`http::router`].
    pub fn router(&self) -> axum::Router {
        http::router(self)
    }

    /// The WebSocket endpoints alone; see [`http::ws_router`].
    pub fn ws_router(&self) -> axum::Router {
        http::ws_router(self)
    }

    /// The publish API, `/health` and `/metrics`; see [`http::api_router`].
    pub fn api_router(&self) -> axum::Router {
        http::api_router(self)
    }
}
