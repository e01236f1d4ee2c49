//! Presence for backends: who is in a room, and whether a user is connected
//! anywhere in the cluster.
//!
//! Both read the [`Presence`](crate::broker::Presence) backend, so they see
//! every live node. A user's connections are recorded there (when
//! [`Config::online_status`](crate::Config::online_status) is on) under a
//! reserved name, [`ONLINE_PREFIX`] followed by the user id: room names are
//! made of `A-Z a-z 0-9 _ - . : @` only (see
//! [`validate_room`](switchboard_protocol::validate_room)), so no room can
//! take a name that starts with `#`.

use std::sync::Arc;

use serde::Serialize;
use switchboard_protocol::{NameError, validate_room, validate_user};

use super::Node;
use crate::broker::{BrokerError, PresenceEntry};

/// The start of the presence name under which a user's connections are
/// recorded: `#online:<user>`. `#` is never part of a room name.
pub const ONLINE_PREFIX: &str = "#online:";

/// Whether a user is connected, on any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserPresence {
    /// The user id asked about.
    pub user: Arc<str>,
    /// Whether the user has at least one open connection.
    pub online: bool,
    /// The user's open connections, on every node and every endpoint.
    pub connections: u32,
}

/// A presence query could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The room name breaks the naming rules.
    #[error("invalid room name: {0}")]
    InvalidRoom(NameError),
    /// The user id breaks the naming rules.
    #[error("invalid user id: {0}")]
    InvalidUser(NameError),
    /// Users' connections are not recorded:
    /// [`Config::online_status`](crate::Config::online_status) is off.
    #[error("online status is off on this server (online_status / --online-status)")]
    Disabled,
    /// The presence backend could not be read.
    #[error("presence unavailable: {0}")]
    Broker(#[from] BrokerError),
}

impl PresenceError {
    /// The HTTP API's status and error code for this failure (see
    /// `docs/http-api.md`).
    pub fn http_status_and_code(&self) -> (u16, &'static str) {
        match self {
            PresenceError::InvalidRoom(_) => (400, "invalid_room"),
            PresenceError::InvalidUser(_) => (400, "invalid_user"),
            PresenceError::Disabled => (501, "online_status_disabled"),
            PresenceError::Broker(_) => (503, "unavailable"),
        }
    }

    /// The message sent with the error (`room name …` for a bad name).
    pub fn message(&self) -> String {
        match self {
            PresenceError::InvalidRoom(e) => format!("room name {e}"),
            PresenceError::InvalidUser(e) => format!("user id {e}"),
            e => e.to_string(),
        }
    }
}

/// The presence name of `user`'s connections.
fn online_key(user: &str) -> String {
    format!("{ONLINE_PREFIX}{user}")
}

impl Node {
    /// Who is in `room`, on every node: one entry per user with at least one
    /// connection in it, sorted by user id, with how many of the user's
    /// connections are in it (the protocol's `presence` reply). Backends are
    /// trusted: no permission applies.
    pub async fn room_presence(&self, room: &str) -> Result<Vec<PresenceEntry>, PresenceError> {
        validate_room(room, self.config().max_room_name_len).map_err(PresenceError::InvalidRoom)?;
        Ok(self.presence().list(room).await?)
    }

    /// Whether `user` is connected, on any node, and with how many
    /// connections. Needs [`Config::online_status`](crate::Config::online_status)
    /// on every node ([`PresenceError::Disabled`] otherwise): a node
    /// without it does not record its connections.
    pub async fn user_presence(&self, user: &str) -> Result<UserPresence, PresenceError> {
        validate_user(user).map_err(PresenceError::InvalidUser)?;
        if !self.config().online_status {
            return Err(PresenceError::Disabled);
        }
        let entries = self.presence().list(&online_key(user)).await?;
        let connections = entries
            .iter()
            .filter(|e| &*e.user == user)
            .map(|e| e.connections)
            .sum();
        Ok(UserPresence {
            user: Arc::from(user),
            online: connections > 0,
            connections,
        })
    }

    /// Records (`open`) or forgets connection `conn` (its cluster-wide id)
    /// of `user` in the users' presence, when `online_status` is on. Best
    /// effort, like room presence: a failure is logged, and a Redis
    /// backend's refresher writes the node's entries back once it can.
    pub(crate) async fn record_online(&self, conn: &str, user: &str, open: bool) {
        if !self.config().online_status {
            return;
        }
        let key = online_key(user);
        let result = if open {
            self.presence().add(&key, conn, user).await
        } else {
            self.presence().remove(&key, conn).await
        };
        if let Err(e) = result {
            tracing::debug!(conn, error = %e, open, "online status not recorded");
        }
    }
}
