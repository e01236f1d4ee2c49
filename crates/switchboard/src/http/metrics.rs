//! `GET /metrics`: the node's metrics in the Prometheus text format
//! ([`Node::prometheus`]), on the main port behind the API's access check,
//! or open on a listener of its own.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use tokio::net::TcpListener;

use super::api::authorize;
use crate::node::Node;

/// The content type of the Prometheus text format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn scrape(node: &Node) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], node.prometheus()).into_response()
}

/// `/metrics` on the main port: callers need API access (the API key, or a
/// loopback address without one), and are refused as the API refuses them.
pub(super) async fn protected(State(node): State<Node>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match authorize(&node, req.headers(), peer) {
        Ok(()) => scrape(&node),
        Err(refusal) => refusal.into_response(),
    }
}

/// A router with `/metrics` alone, open to every caller: for a listener
/// that only the monitoring network reaches ([`serve_metrics`]).
pub fn metrics_router(node: &Node) -> Router {
    Router::new().route(
        "/metrics",
        get(|State(node): State<Node>| async move { scrape(&node) }).with_state(node.clone()),
    )
}

/// Serves [`metrics_router`] on `listener` until `shutdown` completes. Pair
/// it with [`router_without_metrics`](super::router_without_metrics) on the
/// main port, so that the metrics are served in one place only.
pub async fn serve_metrics<F>(listener: TcpListener, node: Node, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, metrics_router(&node))
        .with_graceful_shutdown(shutdown)
        .await
}
