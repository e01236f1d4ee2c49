//! HTTP: the router that puts WebSocket endpoints, the publish API, `/health`
//! and `/metrics` on one port, and [`serve`], which runs it.
//!
//! - [`upgrade`]: the gate. Every check happens before the `101` response.
//! - [`api`]: the publish API for backends.
//! - [`presence`]: who is in a room, and whether a user is online, for
//!   backends.
//! - `/metrics`: Prometheus metrics, behind the API's access check, or on a
//!   listener of their own with [`serve_metrics`] (see `docs/metrics.md`).

pub mod api;
mod metrics;
pub mod presence;
mod signout;
pub mod upgrade;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::header;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::node::Node;

pub use metrics::{metrics_router, serve_metrics};

/// Builds the router: one route per endpoint, the publish API, `/health` and
/// `/metrics`. It has no fallback, so it merges into an application's own
/// router (`app.merge(node.router())`).
pub fn router(node: &Node) -> Router {
    ws_router(node).merge(api_router(node))
}

/// Wraps a whole application router so that a WebSocket upgrade to a path
/// that is no endpoint (an unknown path, `/`, `/health`, a page of the
/// application) is refused with `404` and a JSON error naming this node's
/// endpoints, instead of whatever the path answers a plain `GET` with (an
/// empty `404`, or a `200` page that a WebSocket client reports as a bare
/// handshake failure). Other requests pass through untouched. Apply it
/// last, to the merged router: `refuse_stray_upgrades(app.merge(node.router()), &node)`.
pub fn refuse_stray_upgrades(app: Router, node: &Node) -> Router {
    let paths: std::sync::Arc<[String]> = node
        .endpoints()
        .iter()
        .map(|e| e.path().to_string())
        .collect();
    app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let paths = paths.clone();
            async move {
                let upgrade = req
                    .headers()
                    .get(header::UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
                let path = req.uri().path();
                if upgrade && !paths.iter().any(|p| p == path) {
                    let message = format!(
                        "no WebSocket endpoint at {path}; this server's endpoints are {}",
                        paths.join(", ")
                    );
                    tracing::info!(path, "refused an upgrade to a path that is no endpoint");
                    return api::error_response(http::StatusCode::NOT_FOUND, "not_found", &message);
                }
                next.run(req).await
            }
        },
    ))
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
        r = r.route(endpoint.path(), get(upgrade::upgrade).with_state(ep));
    }
    r
}

/// The publish and presence API, `/health`, `/health/ready` and `/metrics`
/// (behind the API's access check).
pub fn api_router(node: &Node) -> Router {
    api_routes(node).route("/metrics", get(metrics::protected).with_state(node.clone()))
}

/// Everything [`router`] serves but `/metrics`: for a server that serves
/// its metrics on a listener of their own ([`serve_metrics`]).
pub fn router_without_metrics(node: &Node) -> Router {
    ws_router(node).merge(api_routes(node))
}

/// The publish and presence API, `/health` and `/health/ready`.
fn api_routes(node: &Node) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/api/rooms/{room}/messages", post(api::publish_room))
        .route("/api/users/{user}/messages", post(api::publish_user))
        .route("/api/users/{user}/disconnect", post(signout::disconnect))
        .route("/api/broadcast", post(api::broadcast))
        .route("/api/rooms/{room}/presence", get(presence::room))
        .route("/api/users/{user}/presence", get(presence::user))
        .with_state(node.clone())
}

async fn health(State(node): State<Node>) -> impl IntoResponse {
    axum::Json(node.health())
}

/// Readiness, for load balancers and orchestrators: `200` while the node
/// takes new clients, `503` while it is draining (shutting down) or its
/// broker is not connected, with the reasons. `/health` stays the liveness
/// answer: `200` while the process serves at all.
async fn ready(State(node): State<Node>) -> axum::response::Response {
    let broker = node.broker().health();
    let mut reasons = Vec::new();
    if node.is_draining() {
        reasons.push("draining: the node is shutting down".to_string());
    }
    if !broker.connected {
        let detail = broker.detail.as_deref().unwrap_or("not connected");
        reasons.push(format!("broker ({}) not connected: {detail}", broker.kind));
    }
    let body = if reasons.is_empty() {
        serde_json::json!({ "status": "ready", "node": node.id() })
    } else {
        serde_json::json!({ "status": "not_ready", "node": node.id(), "reasons": reasons })
    };
    let status = if reasons.is_empty() {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// How long a client may take to send its request head (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` (which should include [`router`]) on `listener` until
/// `shutdown` completes, then shuts the node down gracefully: the listener
/// closes, every connection gets 1001 "going away", and the call returns
/// once they are closed or `shutdown_timeout` passed.
///
/// Each TCP connection is served by hyper's HTTP/1.1 server with upgrades;
/// the peer address is recorded (for logs, loopback checks and rate limits),
/// `TCP_NODELAY` is set, and a request head must arrive within 10 s. After a
/// WebSocket upgrade the session takes the TCP stream back from hyper, so no
/// HTTP buffer stays allocated for the life of the connection (with another
/// server loop, such as `axum::serve`, everything works the same but each
/// connection keeps hyper's read buffer, 8-16 KiB).
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    node: Node,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    // HTTP connections (not yet upgraded) are told to finish their current
    // request and close; upgraded ones belong to sessions, which the node
    // closes with 1001.
    let closing = tokio_util::sync::CancellationToken::new();
    let http_conns = tokio_util::task::TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
            .with_upgrades();
        let closing = closing.clone();
        http_conns.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    node.begin_shutdown();
    closing.cancel();
    http_conns.close();
    let timeout = node.config().shutdown_timeout;
    if tokio::time::timeout(timeout, http_conns.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within the shutdown timeout");
    }
    if !node.shutdown().await {
        tracing::warn!("some connections did not close within the shutdown timeout");
    }
    Ok(())
}
