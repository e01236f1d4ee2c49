//! An axum application with Switchboard inside, on one port:
//!
//! - its own HTTP routes (`GET /`, `POST /login`, `POST /orders`,
//!   `GET /stats`);
//! - its own authenticator: WebSocket users are the users of the shop's own
//!   login, recognised by its session cookie ([`SessionAuth`]);
//! - its own tower layer on the WebSocket routes only (an upgrade counter);
//! - its own WebSocket endpoint, `/ws/cursors`, with its own [`Handler`]:
//!   each connection joins the `cursors` room, and every position it sends is
//!   published there for the others;
//! - Switchboard's standard endpoints and publish API next to them;
//! - publishing from its own handlers: `POST /orders` announces the order in
//!   the `orders` room and notifies the customer on all their connections.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchboard::NodeRoutes as _;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard::auth::{Authenticator, Identity, Rejection};
use switchboard::axum::extract::{Request, State};
use switchboard::axum::http::{StatusCode, header};
use switchboard::axum::middleware::{self, Next};
use switchboard::axum::response::{IntoResponse, Response};
use switchboard::axum::routing::{get, post};
use switchboard::axum::{Json, Router};
use switchboard::{Conn, Endpoint, Handler, Inbound, Node};

/// The name of the shop's session cookie.
pub const SESSION_COOKIE: &str = "shop_session";

/// The shop's own login sessions: session id to user id.
#[derive(Clone, Default, Debug)]
pub struct Sessions(Arc<Mutex<HashMap<String, String>>>);

impl Sessions {
    fn user(&self, session: &str) -> Option<String> {
        self.0.lock().ok()?.get(session).cloned()
    }
}

/// Recognises WebSocket users by the shop's session cookie.
#[derive(Debug)]
pub struct SessionAuth(pub Sessions);

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(&self, req: &http::request::Parts) -> Result<Identity, Rejection> {
        req.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .and_then(|(_, id)| self.0.user(id))
            .map(Identity::user)
            .ok_or_else(|| Rejection::unauthorized("log in first (POST /login)"))
    }
}

/// Shares cursor positions between everyone connected to `/ws/cursors`.
#[derive(Debug)]
pub struct Cursors;

/// What a client sends on `/ws/cursors`.
#[derive(Deserialize)]
struct Position {
    x: f64,
    y: f64,
}

#[async_trait]
impl Handler for Cursors {
    async fn on_open(&self, conn: &mut Conn) {
        if let Err(e) = conn.join("cursors").await {
            let _ = conn.send_text(&format!("{{\"error\":\"cannot join: {e}\"}}"));
        }
    }

    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        let Some(pos) = message
            .as_text()
            .and_then(|t| serde_json::from_str::<Position>(t).ok())
        else {
            let _ = conn.send_text(r#"{"error":"send {\"x\":<number>,\"y\":<number>}"}"#);
            return;
        };
        let data = serde_json::json!({ "user": conn.user(), "x": pos.x, "y": pos.y });
        if let Err(e) = conn.publish_value("cursors", &data).await {
            let _ = conn.send_text(&format!("{{\"error\":\"not delivered: {e}\"}}"));
        }
    }
}

/// The application's state.
#[derive(Clone, Debug)]
pub struct Shop {
    /// The Switchboard node.
    pub node: Node,
    /// Login sessions.
    pub sessions: Sessions,
    /// WebSocket upgrade attempts seen by the layer.
    pub upgrades: Arc<AtomicU64>,
}

impl Shop {
    /// The shop: standard endpoints plus `/ws/cursors`, users from sessions.
    pub fn new() -> Shop {
        let sessions = Sessions::default();
        let node = Node::builder()
            .default_endpoints()
            .endpoint(Endpoint::new("/ws/cursors", Cursors))
            .authenticator(SessionAuth(sessions.clone()))
            .build()
            .expect("the default configuration is valid");
        Shop {
            node,
            sessions,
            upgrades: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for Shop {
    fn default() -> Self {
        Shop::new()
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// A stand-in for a real login: trusts the posted user name.
async fn login(State(shop): State<Shop>, Json(login): Json<Login>) -> Response {
    let session = format!("{:032x}", rand::random::<u128>());
    if let Ok(mut map) = shop.sessions.0.lock() {
        map.insert(session.clone(), login.user);
    }
    let cookie = format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
    (
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({ "session": session })),
    )
        .into_response()
}

/// A new order, as the shop's backend posts it.
#[derive(Deserialize)]
struct Order {
    id: u64,
    customer: String,
}

async fn create_order(
    State(shop): State<Shop>,
    Json(order): Json<Order>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let node = &shop.node;
    let unavailable =
        |e: switchboard::node::PublishError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let announcement = RawValue::from_string(format!(r#"{{"order":{}}}"#, order.id))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let receipt = node
        .publish_room("orders", &announcement)
        .await
        .map_err(unavailable)?;
    let note = RawValue::from_string(format!(r#"{{"text":"order {} confirmed"}}"#, order.id))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    node.send_to_user(&order.customer, &note)
        .await
        .map_err(unavailable)?;
    Ok(Json(
        serde_json::json!({ "order": order.id, "room_offset": receipt.offset }),
    ))
}

async fn stats(State(shop): State<Shop>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "upgrade_attempts": shop.upgrades.load(Ordering::Relaxed) }))
}

/// A layer of the application's own, on the WebSocket routes only.
async fn count_upgrades(State(shop): State<Shop>, req: Request, next: Next) -> Response {
    shop.upgrades.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

/// The application: its own routes, and Switchboard's, on one router.
pub fn app(shop: &Shop) -> Router {
    let own = Router::new()
        .route(
            "/",
            get(|| async { "shop front: POST /login, POST /orders, WebSocket /ws/cursors" }),
        )
        .route("/login", post(login))
        .route("/orders", post(create_order))
        .route("/stats", get(stats))
        .with_state(shop.clone());
    let ws = shop
        .node
        .ws_router()
        .layer(middleware::from_fn_with_state(shop.clone(), count_upgrades));
    own.merge(ws).merge(shop.node.api_router())
}
