//! The publish API for backends.
//!
//! - `POST /api/rooms/{room}/messages`: publish to a room.
//! - `POST /api/users/{user}/messages`: every connection of a user.
//! - `POST /api/broadcast`: everyone.
//!
//! The presence routes (`GET /api/rooms/{room}/presence`,
//! `GET /api/users/{user}/presence`) are in [`super::presence`], behind the
//! same access check.
//!
//! The body is a JSON object with the payload under `"data"` and, optionally,
//! an `"idempotency_key"` (or the `Idempotency-Key` header). The reply is
//! `200` with what the broker accepted (the offset and epoch assigned in
//! the room's, user's or broadcast stream;
//! `"duplicate": true` when the key was already used and nothing was
//! delivered; `"local_recipients"` with the in-memory broker), or a JSON error `{"error":{"code":..,"message":..}}` with
//! `400`, `401`, `403`, `413` or `503`. A `503` with `publish_failed` means
//! the message was not delivered; with `partially_delivered`, it reached
//! this node's members only.
//!
//! Access: with an API key configured, callers present it as
//! `Authorization: Bearer <key>`; without one, only loopback callers are
//! served.

use std::net::{IpAddr, SocketAddr};

use crate::gate::client_ip::{canonical, forwarded_client};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use serde_json::value::RawValue;

use crate::Json;
use crate::broker::Receipt;
use crate::node::{Node, PublishError, PublishOptions};

/// An HTTP refusal: a status, a stable machine-readable code and a message,
/// answered as `{"error":{"code":..,"message":..}}`. A 401 also carries
/// `WWW-Authenticate: Bearer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error code.
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(RefusalCode(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The stable code of an [`ApiError`] response, kept in the response's
/// extensions so that the upgrade gate counts refusals by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RefusalCode(pub(crate) &'static str);

/// A JSON error response; see [`ApiError`].
pub fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// Compares in time independent of where the inputs differ (`subtle`'s
/// comparison; the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Checks API access; `Err` is the response to send.
pub(crate) fn authorize(
    node: &Node,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), ApiError> {
    match &node.config().api_key {
        Some(key) => {
            let header = headers.get(header::AUTHORIZATION);
            let presented = header
                .and_then(|v| v.to_str().ok())
                .and_then(crate::auth::bearer_token);
            match presented {
                Some(p) if constant_time_eq(p.as_bytes(), key.as_bytes()) => Ok(()),
                Some(_) => Err(unauthorized("invalid API key")),
                // A header with another scheme (Basic, a bare key) is not a
                // missing key: say what is wrong with it.
                None if header.is_some() => Err(unauthorized(
                    "the Authorization header must use the Bearer scheme: Authorization: Bearer <key>",
                )),
                None => Err(unauthorized(
                    "missing API key: send Authorization: Bearer <key>",
                )),
            }
        }
        None => match peer.map(|p| (p.ip(), api_client_ip(node, headers, p.ip()))) {
            Some((_, ip)) if ip.is_loopback() => Ok(()),
            // A loopback peer made non-loopback by its forwarding headers:
            // name them, and the setting that decides whom they are
            // believed from.
            Some((peer, _)) if peer.is_loopback() => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "no API key is configured, so the API accepts only loopback callers; this request \
                 came through a proxy (it carries X-Forwarded-For, Forwarded or X-Real-IP), and \
                 its client is not known to be loopback: the proxy must be in --trusted-proxies \
                 and name a loopback client in X-Forwarded-For, or set an API key",
            )),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "no API key is configured, so the API accepts only loopback callers",
            )),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "peer address unknown and no API key configured; serve with connect info or set an API key",
            )),
        },
    }
}

/// The caller's address for the loopback rule. A request relayed by a proxy
/// (it carries forwarding headers) counts as loopback only if the trusted
/// proxies resolve its client to a loopback address: a reverse proxy on the
/// same host must not open the API to the world.
fn api_client_ip(node: &Node, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let forwarded = super::forwarded_for(headers);
    let relayed = forwarded.is_some()
        || headers.contains_key("forwarded")
        || headers.contains_key("x-real-ip");
    if !relayed {
        return canonical(peer);
    }
    // Relayed: only a trusted proxy's X-Forwarded-For with a valid address
    // names the client; otherwise the real client is unknown.
    forwarded_client(peer, forwarded.as_deref(), &node.config().trusted_proxies)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A path parameter of the API (`{room}`, `{user}`), percent-decoded. A
/// path that does not decode (invalid UTF-8, for example) is refused as
/// JSON like every other API error, and only after the access check: a
/// caller without access learns nothing from the path.
pub(crate) struct ApiPath(pub(crate) String);

impl axum::extract::FromRequestParts<Node> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        node: &Node,
    ) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, node).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0);
                authorize(node, &parts.headers, peer)?;
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    format!("invalid path: {}", rejection.body_text()),
                ))
            }
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    idempotency_key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    except: Option<&'a RawValue>,
}

/// A checked publish body: the payload's JSON text, the idempotency key if
/// the body named one, and the connection to leave out (checked by the
/// node).
struct PublishRequest {
    data: Json,
    key: Option<String>,
    except: Option<String>,
}

/// An optional string field of the body.
fn string_field(raw: Option<&RawValue>, name: &str) -> Result<Option<String>, ApiError> {
    raw.map(|raw| {
        serde_json::from_str::<String>(raw.get()).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("field \"{name}\" must be a string"),
            )
        })
    })
    .transpose()
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Reads and checks the body.
async fn read_body(node: &Node, body: Body) -> Result<PublishRequest, ApiError> {
    let limit = node.config().max_message_size;
    let bytes = axum::body::to_bytes(body, limit + 1024)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "body exceeds {} bytes: data may hold {limit} bytes \
                     (max_message_size), the body 1024 more",
                    limit + 1024
                ),
            )
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", "body is not UTF-8"))?;
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "body must be a JSON object like {\"data\": ...}",
        ));
    }
    let depth = switchboard_protocol::depth::MAX_DEPTH;
    if switchboard_protocol::depth::nests_deeper_than(text.as_bytes(), depth) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("JSON nested deeper than {depth} levels"),
        ));
    }
    let parsed: PublishBody<'_> = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("malformed JSON: {e}"),
        )
    })?;
    let data = parsed.data.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "missing field \"data\"",
        )
    })?;
    let key = string_field(parsed.idempotency_key, "idempotency_key")?;
    let except = string_field(parsed.except, "except")?;
    Ok(PublishRequest {
        // `data` was parsed borrowing from `bytes`, so this shares them.
        data: Json::within(&bytes, data).unwrap_or_else(|| Json::from_raw(data)),
        key,
        except,
    })
}

/// The idempotency key of a request: the `Idempotency-Key` header or the
/// body's `idempotency_key` (both may be given if they agree). The node
/// checks it and scopes it to the API.
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "header Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "the Idempotency-Key header and the body's idempotency_key differ",
            ));
        }
        (h, b) => h.or(b),
    };
    Ok(key)
}

fn publish_error(e: PublishError) -> ApiError {
    let (status, code) = e.http_status_and_code();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, code, e.message())
}

async fn publish(
    node: &Node,
    req: Request,
    topic: crate::broker::Topic,
) -> Result<Receipt, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    authorize(node, req.headers(), peer)?;
    let (parts, body) = req.into_parts();
    let body = read_body(node, body).await?;
    let key = idempotency_key(&parts.headers, body.key)?;
    let options = PublishOptions::new()
        .idempotency_key(key.as_deref())
        .except(body.except.as_deref());
    node.publish_with(topic, body.data, options)
        .await
        .map_err(publish_error)
}

/// The reply to an accepted publish: `fields`, `"duplicate": true` when the
/// idempotency key was already used (nothing was delivered), and
/// `"local_recipients"` when the broker delivered before it answered (the
/// in-memory broker): how many of this node's connections the message was
/// queued for.
fn published(mut fields: serde_json::Value, receipt: &Receipt) -> Response {
    if receipt.duplicate {
        fields["duplicate"] = serde_json::Value::Bool(true);
    }
    if let Some(n) = receipt.local_recipients {
        fields["local_recipients"] = n.into();
    }
    axum::Json(fields).into_response()
}

/// `POST /api/rooms/{room}/messages`
pub(crate) async fn publish_room(
    State(node): State<Node>,
    ApiPath(room): ApiPath,
    req: Request,
) -> Response {
    let topic = crate::broker::Topic::Room(room.as_str().into());
    match publish(&node, req, topic).await {
        Ok(r) => published(
            json!({
                "status": "published",
                "room": room,
                "offset": r.offset,
                "epoch": r.epoch.as_deref(),
            }),
            &r,
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/users/{user}/messages`
pub(crate) async fn publish_user(
    State(node): State<Node>,
    ApiPath(user): ApiPath,
    req: Request,
) -> Response {
    let topic = crate::broker::Topic::User(user.as_str().into());
    match publish(&node, req, topic).await {
        Ok(r) => published(
            json!({
                "status": "published",
                "user": user,
                "offset": r.offset,
                "epoch": r.epoch.as_deref(),
            }),
            &r,
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/broadcast`
pub(crate) async fn broadcast(State(node): State<Node>, req: Request) -> Response {
    match publish(&node, req, crate::broker::Topic::Broadcast).await {
        Ok(r) => published(
            json!({
                "status": "published",
                "broadcast": true,
                "offset": r.offset,
                "epoch": r.epoch.as_deref(),
            }),
            &r,
        ),
        Err(e) => e.into_response(),
    }
}
