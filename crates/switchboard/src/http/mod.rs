//! HTTP: the router that puts WebSocket endpoints, the publish API, `/health`
//! and `/metrics` on one port, and [`serve`] and [`serve_tls`], which run it.
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
mod refusals;
mod serve;
mod signout;
pub mod upgrade;

pub use serve::{serve, serve_tls};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::header;

use crate::node::Node;

/// Every `X-Forwarded-For` field of a request as one list, in order: a
/// request may carry several (each proxy that appends a field instead of
/// extending the last one), and they mean the same as one field with their
/// values joined by commas (RFC 9110 section 5.3). Reading only the first
/// would let a client name its own address in a field that a trusted proxy
/// left ahead of the one it added. `None` without the header; a field that
/// is not text makes the whole list unusable (an empty one).
pub(crate) fn forwarded_for(headers: &http::HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    let mut fields = headers.get_all("x-forwarded-for").iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        return Some(first.to_str().unwrap_or("").into());
    };
    let mut all = Vec::new();
    for field in [first, second].into_iter().chain(fields) {
        match field.to_str() {
            Ok(text) => all.push(text),
            Err(_) => return Some("".into()),
        }
    }
    Some(all.join(",").into())
}

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
    let node = node.clone();
    app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let paths = paths.clone();
            let node = node.clone();
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
                    let peer = req
                        .extensions()
                        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                        .map(|c| c.0);
                    let client = peer.map(|peer| {
                        crate::gate::client_ip::client_ip(
                            peer.ip(),
                            forwarded_for(req.headers()).as_deref(),
                            &node.config().trusted_proxies,
                        )
                    });
                    refusals::log(http::StatusCode::NOT_FOUND, &message, path, client, peer);
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
