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
//! This crate is the HTTP side of Switchboard; the engine is
//! [`switchboard_core`], re-exported here module by module so that one
//! dependency is enough:
//!
//! - [`http`]: the router (endpoints, publish API, health, metrics),
//!   [`serve`] and [`serve_tls`], and the gate that turns an upgrade request into a session
//!   or refuses it with a status;
//! - [`tls`]: a certificate and key from PEM files, reloadable, for
//!   [`serve_tls`] (`wss://` and HTTP/2 without a proxy in front);
//! - [`hooks`]: hooks over HTTP, so that an application in any language
//!   decides who connects, what is joined and published, and answers
//!   `rpc` frames;
//! - [`auth`]: the engine's identities and the [`Authenticator`](auth::Authenticator)
//!   trait, and [`auth::jwt`], JSON Web Tokens;
//! - [`NodeRoutes`]: `node.router()` and its parts, on the engine's
//!   [`Node`];
//! - from the engine: [`node`], [`config`], [`endpoint`], [`handlers`],
//!   [`conn`], [`rooms`], [`json`], [`events`], [`transport`], [`broker`], [`gate`],
//!   [`stats`].
//!
//! # Embedding
//!
//! ```no_run
//! use switchboard::prelude::*;
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

#![forbid(unsafe_code)]

pub mod auth;
pub mod hooks;
pub mod http;
pub mod tls;

pub use switchboard_core::{
    Config, Conn, Disconnect, Endpoint, Handler, Inbound, Json, Node, broker, config, conn,
    endpoint, events, gate, handlers, json, node, protocol, rooms, stats, transport,
};

/// The axum version the router is built with, for applications that merge it.
pub use axum;
pub use http::{serve, serve_tls};

/// What an application that embeds Switchboard uses:
/// `use switchboard::prelude::*;`.
pub mod prelude {
    pub use crate::NodeRoutes as _;
    pub use crate::{Endpoint, Handler, Node, serve};
}

/// The HTTP side of a [`Node`]: its routes, to merge into an axum router.
/// In scope with `use switchboard::prelude::*`.
pub trait NodeRoutes {
    /// The router for this node's endpoints, publish API, `/health` and
    /// `/metrics`. See [`http::router`].
    fn router(&self) -> axum::Router;

    /// The WebSocket endpoints alone; see [`http::ws_router`].
    fn ws_router(&self) -> axum::Router;

    /// The publish API, `/health` and `/metrics`; see [`http::api_router`].
    fn api_router(&self) -> axum::Router;
}

impl NodeRoutes for Node {
    fn router(&self) -> axum::Router {
        http::router(self)
    }

    fn ws_router(&self) -> axum::Router {
        http::ws_router(self)
    }

    fn api_router(&self) -> axum::Router {
        http::api_router(self)
    }
}
