//! The gate: turns an HTTP request into a WebSocket session, or refuses it
//! with a status, before any handshake.
//!
//! In order: the request must be a WebSocket upgrade (`426` otherwise, with a
//! body that says so), well formed (`400`), for a node that is not shutting
//! down (`503`), and from someone the [`Authenticator`](crate::auth::Authenticator)
//! accepts (its status, `401` by default). Only then is `101` sent and the
//! session started. Unknown paths never get here: they are `404`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};

use super::api::error_response;
use crate::node::Node;
use crate::session;

/// The GUID of RFC 6455 section 1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Routing state of one endpoint.
#[derive(Clone)]
pub(crate) struct EndpointRoute {
    pub(crate) node: Node,
    pub(crate) index: usize,
}

/// Whether a comma-separated header contains `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn upgrade_required(path: &str) -> Response {
    let body = format!(
        "426 Upgrade Required: {path} is a WebSocket endpoint. Connect with a WebSocket \
         client, for example from a browser console: new WebSocket(\"ws://\" + location.host + \"{path}\")\n"
    );
    (
        StatusCode::UPGRADE_REQUIRED,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Picks the first subprotocol the client offers that the endpoint accepts.
fn negotiate(headers: &HeaderMap, accepted: &[String]) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| accepted.iter().any(|a| a == offered))
        .map(str::to_string)
}

/// The upgrade handler of every endpoint.
pub(crate) async fn upgrade(State(route): State<EndpointRoute>, req: Request) -> Response {
    let node = route.node.clone();
    let response = gate(route, req).await;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        node.stats()
            .rejected_upgrades
            .fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn gate(route: EndpointRoute, req: Request) -> Response {
    let EndpointRoute { node, index } = route;
    let endpoint = node.endpoints()[index].clone();
    let headers = req.headers();
    let is_upgrade = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket");
    if !is_upgrade {
        return upgrade_required(&endpoint.path);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return upgrade_required(&endpoint.path);
    }
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16) =>
        {
            k.clone()
        }
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "missing or malformed Sec-WebSocket-Key",
            );
        }
    };
    if node.is_draining() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "server is shutting down; reconnect to another node",
        );
    }
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (mut parts, body) = req.into_parts();
    let identity = match node.inner.authenticator.authenticate(&parts).await {
        Ok(identity) => identity,
        Err(rejection) => {
            tracing::info!(remote = ?remote, status = %rejection.status, reason = %rejection.reason, "upgrade refused");
            let code = if rejection.status == StatusCode::UNAUTHORIZED {
                "unauthorized"
            } else {
                "forbidden"
            };
            let mut resp = error_response(rejection.status, code, &rejection.reason);
            if rejection.status == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return resp;
        }
    };
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_unavailable",
            "this connection cannot be upgraded; WebSocket needs HTTP/1.1",
        );
    };
    let subprotocol = negotiate(&parts.headers, &endpoint.subprotocols);
    let mut extensions = std::mem::take(&mut parts.extensions);
    extensions.remove::<ConnectInfo<SocketAddr>>();
    drop(body);

    let conn = session::new_conn(
        &node,
        identity,
        &endpoint,
        remote,
        subprotocol.clone(),
        extensions,
    );
    node.sessions().spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session::run(TokioIo::new(upgraded), conn, endpoint).await,
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });

    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // The accept value is base64, always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn subprotocol_negotiation_picks_the_first_offer_we_accept() {
        let mut h = HeaderMap::new();
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, switchboard.v1"),
        );
        let accepted = vec!["switchboard.v1".to_string()];
        assert_eq!(negotiate(&h, &accepted).as_deref(), Some("switchboard.v1"));
        assert_eq!(negotiate(&h, &[]), None);
        assert_eq!(negotiate(&HeaderMap::new(), &accepted), None);
    }
}
