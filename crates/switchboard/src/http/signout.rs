//! `POST /api/users/{user}/disconnect`: ends every connection of a user,
//! on every node, with close code 4401, for a sign-out in the application
//! (see [`Node::disconnect_user`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::api::{ApiError, ApiPath, authorize};
use crate::node::Node;

/// The longest close reason a frame can carry (123 bytes).
const MAX_REASON: usize = 123;

/// `POST /api/users/{user}/disconnect`, with an optional JSON body
/// `{"reason": "…"}` (at most 123 bytes; default `"signed out"`).
pub(crate) async fn disconnect(
    State(node): State<Node>,
    ApiPath(user): ApiPath,
    req: Request,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Err(e) = authorize(&node, req.headers(), peer) {
        return e.into_response();
    }
    if let Err(e) = switchboard_core::protocol::validate_user(&user) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_user",
            format!("user id {e}"),
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), 4096).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over 4096 bytes",
            )
            .into_response();
        }
    };
    #[derive(serde::Deserialize)]
    struct Body {
        reason: Option<String>,
    }
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Body>(&body) {
            Ok(b) => b.reason,
            Err(e) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    format!("body must be {{\"reason\": <string>}}: {e}"),
                )
                .into_response();
            }
        }
    };
    let reason = reason.unwrap_or_else(|| "signed out".into());
    if reason.len() > MAX_REASON {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("reason is over {MAX_REASON} bytes"),
        )
        .into_response();
    }
    match node.disconnect_user(&user, &reason).await {
        Ok(()) => axum::Json(json!({"status": "disconnected", "user": user})).into_response(),
        Err(e) => {
            let (status, code) = e.http_status_and_code();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            ApiError::new(status, code, e.message()).into_response()
        }
    }
}
