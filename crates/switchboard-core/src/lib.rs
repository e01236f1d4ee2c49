//! Switchboard's engine: everything between a connection's transport and
//! the broker, and nothing of HTTP. The `switchboard` crate puts it behind
//! an axum router and a hyper server; a broker crate needs only this one.
//!
//! Each WebSocket connection (or any other [`Transport`](transport::Transport))
//! is one task with bounded queues and heartbeats. Messages go through a
//! [`Broker`](broker::Broker), the only seam between nodes, and are encoded
//! to one frame per node, whose bytes every local recipient shares.
//!
//! # Layout
//!
//! Dependencies point one way: wire types (`switchboard-protocol`) ← this
//! crate ← HTTP integration (`switchboard`). The only HTTP this crate knows
//! is the `http` crate's types: a handshake is an HTTP request, whatever the
//! transport.
//!
//! - [`node`]: [`Node`], the composition root and the handle you keep:
//!   configuration, hub, broker, endpoints; publish, admit connections and
//!   shut down from here.
//! - [`config`]: [`Config`] and its validating builder; every default stated.
//! - [`endpoint`]: [`Endpoint`] (a path and its behaviour) and the
//!   [`Handler`] trait for your own behaviours.
//! - [`handlers`]: the built-in behaviours (echo, chat, notifications), and
//!   the client commands, one module each.
//! - [`events`]: [`Events`](events::Events), what happens to connections
//!   (connect, disconnect, join, leave, a user online or offline), told to
//!   the application.
//! - [`hooks`]: [`Hooks`](hooks::Hooks), the application's say over joins
//!   and publishes, and its answers to `rpc` frames.
//! - [`conn`]: [`Conn`], one connection as a handler sees it: a thin handle.
//! - [`rooms`]: room membership as the node coordinates it (join with
//!   recovery, leave, presence), and [`JoinError`](rooms::JoinError).
//! - [`json`]: [`Json`], checked JSON text, the only thing published.
//! - [`transport`]: the [`Transport`](transport::Transport) seam and the
//!   WebSocket transport, and [`transport::run`], which runs a session.
//! - `session` (private): the per-connection task: open, read, heartbeat,
//!   rate limit, close, written against any transport.
//! - `write` (private): the write path, and the order of its locks: the
//!   outbox (the bounded outbound queue; overflow closes a slow consumer),
//!   the flusher tasks that write fan-out frames straight to idle
//!   connections' sockets (one task wake-up per fan-out), and the session's
//!   own writes.
//! - `hub` (private): local membership (rooms, users, broadcast) and
//!   fan-out.
//! - `ws` (private): RFC 6455 framing.
//! - `sys` (private): the only `unsafe` code, with its proofs.
//! - [`broker`]: the cross-node seams ([`Broker`](broker::Broker) and
//!   [`Presence`](broker::Presence)) and the in-memory broker.
//! - [`auth`]: [`Identity`](auth::Identity), permissions, and the
//!   [`Authenticator`](auth::Authenticator) trait the gate consults.
//! - [`gate`]: the admission policies a gate applies before a handshake:
//!   Origin, client IP behind trusted proxies, rate limits, connection caps.
//! - [`stats`]: counters for `/health` and `/metrics`.
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
pub mod events;
// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod handlers;
pub mod hooks;
mod hub;
pub mod json;
pub mod node;
pub mod rooms;
mod session;
pub mod stats;
pub mod streams;
mod sys;
pub mod transport;
mod write;
mod ws;

// The write path's parts, named as `crate::outbox` and `crate::flush`.
use write::{flush, outbox};

pub use config::Config;
pub use conn::Conn;
pub use endpoint::{Disconnect, Endpoint, Handler, Inbound};
pub use json::Json;
pub use node::Node;
pub use streams::StreamRequest;
pub use switchboard_protocol as protocol;
