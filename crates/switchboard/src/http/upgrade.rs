//! The gate: turns an HTTP request into a WebSocket session, or refuses it
//! with a status, before any handshake.
//!
//! In order, each with its status:
//!
//! 1. a WebSocket upgrade at all, by GET (`426`, with a body that says what
//!    to do; the router hands HEAD requests here too, and they never upgrade);
//! 2. a well-formed handshake (`400`; `426` for a version other than 13);
//! 3. a node that is not shutting down (`503`);
//! 4. an allowed `Origin` (`403`);
//! 5. the client IP's upgrade rate (`429` with `Retry-After`);
//! 6. the total and per-IP connection caps (`429`);
//! 7. credentials the [`Authenticator`](crate::auth::Authenticator) accepts
//!    (`401`, or the authenticator's status);
//! 8. the per-user connection cap (`429`).
//!
//! Only then is `101` sent and the session started. Unknown paths never get
//! here: they are `404`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio_rustls::server::TlsStream;

use super::api::error_response;
use super::refusals;
use crate::Conn;
use crate::gate::caps::CapExceeded;
use crate::gate::client_ip::{ClientIp, client_ip};
use crate::gate::origin::OriginError;
use crate::node::Node;
use crate::transport::{self, WebSocket};

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

/// The `426` answer, with a body that says what to do: `problem` is what
/// was wrong with the request, for people and for the log.
fn upgrade_required(path: &str, problem: &str) -> Response {
    let body = format!("426 Upgrade Required: {path} is a WebSocket endpoint. {problem}\n");
    let mut response = (
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
        .into_response();
    response
        .extensions_mut()
        .insert(super::api::RefusalCode("upgrade_required"));
    with_reason(response, problem)
}

fn too_many(e: CapExceeded) -> Response {
    let mut resp = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        &e.to_string(),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    resp
}

/// Picks the first subprotocol the client offers that the endpoint accepts;
/// returns its index in `accepted`. The index is kept in one byte per
/// connection, so only an endpoint's first 256 subprotocols are offered.
fn negotiate(headers: &HeaderMap, accepted: &[String]) -> Option<u8> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|offered| {
            let i = accepted.iter().take(256).position(|a| a == offered)?;
            u8::try_from(i).ok()
        })
}

/// The upgrade handler of every endpoint.
pub(crate) async fn upgrade(State(route): State<EndpointRoute>, req: Request) -> Response {
    let node = route.node.clone();
    let path = node.endpoints()[route.index].path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = peer.map(|peer| {
        client_ip(
            peer.ip(),
            super::forwarded_for(req.headers()).as_deref(),
            &node.config().trusted_proxies,
        )
    });
    let mut response = gate(route, req).await;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let code = response
            .extensions()
            .get::<super::api::RefusalCode>()
            .map_or("other", |c| c.0);
        node.stats().count_refused_upgrade(status.as_u16(), code);
        let reason = response
            .extensions_mut()
            .remove::<Refusal>()
            .map_or_else(String::new, |r| r.0);
        refusals::log(status, &reason, &path, client, peer);
    }
    response
}

/// Why the gate refused an upgrade, carried on the response to the one
/// log line [`upgrade`] writes.
#[derive(Clone)]
struct Refusal(String);

/// A refusal: the JSON error response, with its reason for the log.
fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    with_reason(error_response(status, code, message), message)
}

fn with_reason(mut response: Response, reason: &str) -> Response {
    response
        .extensions_mut()
        .insert(Refusal(reason.to_string()));
    response
}

async fn gate(route: EndpointRoute, req: Request) -> Response {
    let EndpointRoute { node, index } = route;
    let endpoint = node.endpoints()[index].clone();
    let key = match check_handshake(req.method(), req.headers()) {
        Ok(key) => key,
        Err(bad) => return bad.response(endpoint.path()),
    };
    let stream = match switchboard_core::StreamRequest::from_query(req.uri().query()) {
        Ok(stream) => stream,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    if node.is_draining() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "server is shutting down; reconnect to another node",
        );
    }
    let config = node.config();
    let headers = req.headers();
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // An `Origin` that is not ASCII text is no origin a browser sends; it is
    // refused, not taken for a missing one.
    let origin = match headers.get(header::ORIGIN) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            OriginError::NotAllowed(String::from_utf8_lossy(v.as_bytes()).into_owned())
        }),
    };
    if let Err(e) = origin.and_then(|origin| config.origin.check(origin, header_str(header::HOST)))
    {
        return refuse(StatusCode::FORBIDDEN, "forbidden_origin", &e.to_string());
    }
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = remote.map(|peer| {
        client_ip(
            peer.ip(),
            super::forwarded_for(headers).as_deref(),
            &config.trusted_proxies,
        )
    });
    if let (Some(limiter), Some(ip)) = (node.upgrade_limiter(), ip)
        && let Err(wait) = limiter.check(ip, tokio::time::Instant::now())
    {
        let mut resp = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many connection attempts from this address",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return resp;
    }
    let mut reservation = match node.caps().reserve(ip) {
        Ok(r) => r,
        Err(e) => return too_many(e),
    };
    let (mut parts, body) = req.into_parts();
    if let Some(ip) = ip {
        parts.extensions.insert(ClientIp(ip));
    }
    let identity = match node.authenticator().authenticate(&parts).await {
        Ok(identity) => identity,
        Err(rejection) => {
            let code = match rejection.status {
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "forbidden",
            };
            return refuse(rejection.status, code, &rejection.reason);
        }
    };
    // A guest's id is made for this one connection, so a per-user count
    // could never exceed one: guests are not counted against the user cap.
    if !identity.guest
        && let Err(e) = reservation.add_user(&identity.user)
    {
        return too_many(e);
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_unavailable",
            "this connection cannot be upgraded; WebSocket needs HTTP/1.1",
        );
    };
    let subprotocol = negotiate(&parts.headers, endpoint.subprotocols());
    // The request (its headers, URI and extensions) is dropped here: its
    // parts share hyper's read buffer, which must not outlive the handshake.
    drop(body);

    let mut conn = node.admit(identity, &endpoint, remote, subprotocol);
    if let Some(stream) = stream {
        conn.extensions_mut().insert(stream);
    }
    node.spawn_session(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
        };
        // Built in the call, not bound to a name, so that the task does not
        // keep a second copy of it next to the session's.
        transport::run(websocket(upgraded, &conn), &mut conn, &endpoint).await;
        // The cap slot is held for the life of the session.
        drop(reservation);
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
    let selected =
        subprotocol.and_then(|i| node.endpoints()[index].subprotocols().get(usize::from(i)));
    if let Some(p) = selected.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

/// The WebSocket over an upgraded connection. The TCP (or TLS) stream is
/// taken back from hyper when it can be (the bytes hyper read ahead share its 8-16 KiB
/// read buffer, which would otherwise stay allocated for the life of the
/// connection) and shared with the node's flushers for direct writes.
fn websocket(upgraded: Upgraded, conn: &Conn) -> WebSocket {
    let upgraded = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => return WebSocket::over_tcp(parts.io.into_inner(), &parts.read_buf, conn),
        Err(upgraded) => upgraded,
    };
    // `serve_tls`: the TLS stream, written by the connection's task.
    match upgraded.downcast::<TokioIo<TlsStream<tokio::net::TcpStream>>>() {
        Ok(parts) => WebSocket::over_io(parts.io.into_inner(), &parts.read_buf, conn),
        // Only when a layer wrapped the connection.
        Err(upgraded) => WebSocket::over_io(TokioIo::new(upgraded), &[], conn),
    }
}

/// What is wrong with a handshake.
#[derive(Debug, PartialEq, Eq)]
enum BadHandshake {
    /// A plain request, with nothing of a WebSocket handshake: `426`.
    NotUpgrade,
    /// `Sec-WebSocket-*` headers without `Upgrade: websocket` and
    /// `Connection: Upgrade`, which is what a proxy that does not pass them
    /// forwards: `426`, saying so.
    UpgradeHeadersDropped,
    /// A handshake by another method than GET: `426`.
    NotGet,
    /// A WebSocket version other than 13: `426`.
    Version(String),
    /// A missing or malformed key: `400`.
    BadKey,
}

impl BadHandshake {
    fn response(self, path: &str) -> Response {
        let problem = match self {
            BadHandshake::BadKey => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "missing or malformed Sec-WebSocket-Key",
                );
            }
            BadHandshake::NotUpgrade => format!(
                "Connect with a WebSocket client, for example from a browser console: \
                 new WebSocket(\"ws://\" + location.host + \"{path}\")"
            ),
            BadHandshake::UpgradeHeadersDropped => "The request carries Sec-WebSocket-* \
                 headers but not Upgrade: websocket and Connection: Upgrade: a proxy in front of this \
                 server dropped them. A proxy must pass both (nginx: proxy_http_version 1.1; \
                 proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \
                 \"upgrade\"; see docs/deploy.md)."
                .to_string(),
            BadHandshake::NotGet => {
                "A WebSocket handshake is a GET request (RFC 6455 section 4.1).".to_string()
            }
            BadHandshake::Version(v) if v.is_empty() => "This server speaks WebSocket \
                 version 13 (RFC 6455); the request sends no Sec-WebSocket-Version."
                .to_string(),
            BadHandshake::Version(v) => format!(
                "This server speaks WebSocket version 13 (RFC 6455); the request asked for \
                 version {v:?}."
            ),
        };
        upgrade_required(path, &problem)
    }
}

/// Checks that the request is a well-formed WebSocket handshake; returns the
/// client's key. The method must be GET (RFC 6455 section 4.1): axum routes
/// HEAD to a GET route, and a HEAD must not start a session.
fn check_handshake(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, BadHandshake> {
    let is_upgrade = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket");
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if !is_upgrade {
        let handshake_headers =
            version.is_some() || headers.contains_key(header::SEC_WEBSOCKET_KEY);
        return Err(if handshake_headers {
            BadHandshake::UpgradeHeadersDropped
        } else {
            BadHandshake::NotUpgrade
        });
    }
    if method != Method::GET {
        return Err(BadHandshake::NotGet);
    }
    match version {
        Some(v) if v.as_bytes() == b"13" => {}
        Some(v) => {
            return Err(BadHandshake::Version(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
        None => return Err(BadHandshake::Version(String::new())),
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16) =>
        {
            Ok(k.clone())
        }
        _ => Err(BadHandshake::BadKey),
    }
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
    fn a_head_request_is_never_an_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(check_handshake(&Method::GET, &h).is_ok());
        assert_eq!(
            check_handshake(&Method::HEAD, &h),
            Err(BadHandshake::NotGet)
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
        assert_eq!(negotiate(&h, &accepted), Some(0));
        assert_eq!(negotiate(&h, &[]), None);
        assert_eq!(negotiate(&HeaderMap::new(), &accepted), None);
    }
}
