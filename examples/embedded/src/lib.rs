//! An axum application with Switchboard inside, on one port:
//!
//! - its own HTTP routes (`GET /`, `POST /orders`);
//! - its own WebSocket endpoint, `/ws/cursors`, with its own [`Handler`]:
//!   each connection joins the `cursors` room, and every position it sends is
//!   published there for the others;
//! - Switchboard's standard endpoints and publish API next to them;
//! - publishing from its own handlers: `POST /orders` announces the order in
//!   the `orders` room and notifies the customer on all their connections.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard::axum::extract::State;
use switchboard::axum::http::StatusCode;
use switchboard::axum::routing::{get, post};
use switchboard::axum::{Json, Router};
use switchboard::{Conn, Endpoint, Handler, Inbound, Node};

/// Shares cursor positions between everyone connected to `/ws/cursors`.
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
        let data = serde_json::json!({ "user": conn.user(), "x": pos.x, "y": pos.y }).to_string();
        if let Err(e) = conn.publish("cursors", data.into()).await {
            let _ = conn.send_text(&format!("{{\"error\":\"not delivered: {e}\"}}"));
        }
    }
}

/// The node: standard endpoints plus `/ws/cursors`.
pub fn node() -> Node {
    Node::builder()
        .default_endpoints()
        .endpoint(Endpoint::new("/ws/cursors", Cursors))
        .build()
        .expect("the default configuration is valid")
}

/// A new order, as the shop's backend posts it.
#[derive(Deserialize)]
struct Order {
    id: u64,
    customer: String,
}

async fn create_order(
    State(node): State<Node>,
    Json(order): Json<Order>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
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

/// The application: its own routes merged with Switchboard's router.
pub fn app(node: &Node) -> Router {
    let own = Router::new()
        .route(
            "/",
            get(|| async { "shop front: POST /orders, WebSocket /ws/cursors" }),
        )
        .route("/orders", post(create_order))
        .with_state(node.clone());
    own.merge(node.router())
}
