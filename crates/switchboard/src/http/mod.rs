//! HTTP: the router that puts WebSocket endpoints, the publish API, `/health`
//! and `/metrics` on one port, and [`serve`], which runs it.
//!
//! - [`upgrade`]: the gate. Every check happens before the `101` response.
//! - [`api`]: the publish API for backends.

pub mod api;
pub mod upgrade;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http::header;
use tokio::net::TcpListener;

use crate::node::Node;

/// Builds the router: one route per endpoint, the publish API, `/health` and
/// `/metrics`. It has no fallback, so it merges into an application's own
/// router (`app.merge(node.router())`).
pub fn router(node: &Node) -> Router {
    ws_router(node).merge(api_router(node))
}

/// The WebSocket endpoints alone, so that layers can wrap the upgrade
/// routes only: `node.ws_router().layer(my_layer).merge(node.api_router())`.
pub fn ws_router(node: &Node) -> Router {
    let mut r = Router::new();
    for (index, endpoint) in node.endpoints().iter().enumerate() {
        let ep = upgrade::EndpointRoute {
            node: node.clone(),
            index,
        };
        r = r.route(&endpoint.path, get(upgrade::upgrade).with_state(ep));
    }
    r
}

/// The publish API, `/health` and `/metrics`.
pub fn api_router(node: &Node) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/rooms/{room}/messages", post(api::publish_room))
        .route("/api/users/{user}/messages", post(api::publish_user))
        .route("/api/broadcast", post(api::broadcast))
        .with_state(node.clone())
}

async fn health(State(node): State<Node>) -> impl IntoResponse {
    axum::Json(node.health())
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.stats().prometheus(),
    )
}

/// Serves `app` (which should include [`router`]) on `listener` until
/// `shutdown` completes, then shuts the node down gracefully: new upgrades
/// are refused, every connection gets 1001 "going away", and the call returns
/// once they are closed or `shutdown_timeout` passed.
///
/// Peer addresses are recorded (for logs, loopback checks and rate limits),
/// and `TCP_NODELAY` is set on every connection.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    node: Node,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let drain = node.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        drain.begin_shutdown();
    })
    .await?;
    if !node.shutdown().await {
        tracing::warn!("some connections did not close within the shutdown timeout");
    }
    Ok(())
}
