//! The presence API for backends, behind the same access check as the
//! publish API (API key, or loopback callers only):
//!
//! - `GET /api/rooms/{room}/presence`: who is in a room, on every node,
//!   `{"room": .., "members": [{"user": .., "connections": n}, ..]}`, the
//!   members sorted by user id (the protocol's `presence` reply).
//! - `GET /api/users/{user}/presence`: whether a user is connected on any
//!   node, `{"user": .., "online": bool, "connections": n}`. Needs
//!   `online_status`; without it the answer is `501` with
//!   `online_status_disabled`.
//!
//! Errors are JSON like the publish API's: `400` `invalid_room` or
//! `invalid_user`, `401`, `403`, `503` `unavailable` when the presence
//! backend cannot be read.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::api::{ApiError, ApiPath, authorize};
use crate::node::{Node, PresenceError};

/// Checks access for a request.
fn allowed(node: &Node, req: &Request) -> Result<(), ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    authorize(node, req.headers(), peer)
}

fn presence_error(e: PresenceError) -> Response {
    let (status, code) = e.http_status_and_code();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, code, e.message()).into_response()
}

/// `GET /api/rooms/{room}/presence`
pub(crate) async fn room(
    State(node): State<Node>,
    ApiPath(room): ApiPath,
    req: Request,
) -> Response {
    if let Err(e) = allowed(&node, &req) {
        return e.into_response();
    }
    match node.room_presence(&room).await {
        Ok(entries) => {
            let members: Vec<_> = entries
                .iter()
                .map(|e| json!({ "user": &*e.user, "connections": e.connections }))
                .collect();
            axum::Json(json!({ "room": room, "members": members })).into_response()
        }
        Err(e) => presence_error(e),
    }
}

/// `GET /api/users/{user}/presence`
pub(crate) async fn user(
    State(node): State<Node>,
    ApiPath(user): ApiPath,
    req: Request,
) -> Response {
    if let Err(e) = allowed(&node, &req) {
        return e.into_response();
    }
    match node.user_presence(&user).await {
        Ok(presence) => axum::Json(presence).into_response(),
        Err(e) => presence_error(e),
    }
}
