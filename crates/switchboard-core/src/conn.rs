//! [`Conn`]: one connection as its handler sees it.
//!
//! The session task owns the `Conn` and lends it to the handler for each
//! call. Everything sent through it goes into the connection's bounded
//! outbox, in order with the messages fan-out queues there.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_protocol::server::ServerFrame;
use switchboard_protocol::{CloseCode, validate_room};

use std::time::SystemTime;

use crate::auth::{Identity, Rejection};
use crate::broker::{Position, PresenceEntry, Receipt, Topic};
use crate::endpoint::Endpoint;
use crate::hub::ConnId;
use crate::node::{Node, PublishError};
use crate::outbox::{Outbox, PushError};
pub use crate::rooms::JoinError;
use crate::rooms::{self, Member, RoomSet};
use crate::ws::{OpCode, frame};

/// One connection, lent to its endpoint's handler.
pub struct Conn {
    pub(crate) id: ConnId,
    pub(crate) identity: Identity,
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) remote: Option<SocketAddr>,
    /// Index of the negotiated subprotocol in the endpoint's list (one
    /// byte: every byte of a `Conn` is paid by each idle connection).
    pub(crate) subprotocol: Option<u8>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) node: Node,
    /// Rooms joined; the flag says whether this connection also receives
    /// the room's presence events.
    pub(crate) rooms: RoomSet,
    pub(crate) extensions: http::Extensions,
}

/// A `refresh` was refused; the old credentials stay in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The new credentials are invalid or expired.
    #[error("{}", .0.reason)]
    Invalid(Rejection),
    /// The new credentials name a different user.
    #[error("the new credentials are for another user")]
    OtherUser,
}

impl RefreshError {
    /// The protocol's error code for this refusal.
    pub fn code(&self) -> switchboard_protocol::ErrorCode {
        match self {
            RefreshError::Invalid(_) => switchboard_protocol::ErrorCode::Unauthorized,
            RefreshError::OtherUser => switchboard_protocol::ErrorCode::Forbidden,
        }
    }
}

impl Conn {
    /// This connection's id, unique within the cluster (`<node>-<n>`).
    pub fn id(&self) -> String {
        format!("{}-{}", self.node.id(), self.id)
    }

    /// Who is connected.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.identity.user
    }

    /// The endpoint path this connection came in on.
    pub fn path(&self) -> &str {
        &self.endpoint.path
    }

    /// The peer's address, when the server was started with connect info.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The negotiated subprotocol, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol
            .and_then(|i| self.endpoint.subprotocols.get(usize::from(i)))
            .map(String::as_str)
    }

    /// The node this connection belongs to (to publish, for example).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Per-connection storage for handlers. It starts empty: the upgrade
    /// request is not kept, so that none of its buffers outlive the
    /// handshake; copy what a handler needs into its own state in `on_open`
    /// or through a custom authenticator.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Mutable per-connection storage for handlers.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|r| &**r)
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), PushError> {
        self.outbox
            .push(frame::encode(OpCode::Text, text.as_bytes()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), PushError> {
        self.outbox.push(frame::encode(OpCode::Binary, data))
    }

    /// Queues a protocol frame.
    pub fn send_frame(&self, frame: &ServerFrame) -> Result<(), PushError> {
        if let ServerFrame::Error(e) = frame {
            self.node.stats().count_client_error(e.code.as_str());
        }
        self.send_text(&frame.to_json())
    }

    /// Queues an already-encoded WebSocket frame.
    pub(crate) fn send_encoded(&self, frame: Bytes) -> Result<(), PushError> {
        self.outbox.push(frame)
    }

    /// Closes the connection with `code` once what is already queued is
    /// written.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.outbox.close(code, reason);
    }

    /// This connection's side of room membership, for the rooms module.
    pub(crate) fn member(&mut self) -> Member<'_> {
        Member {
            node: &self.node,
            conn: self.id,
            identity: &self.identity,
            outbox: &self.outbox,
            rooms: &mut self.rooms,
        }
    }

    /// Joins a room: from now on, messages published there are delivered to
    /// this connection. Joining a room twice is harmless. Returns the room's
    /// position: every message delivered from now on has a larger offset
    /// (some may already be queued when this returns), and none at or below
    /// it is.
    pub async fn join(&mut self, room: &str) -> Result<Position, JoinError> {
        self.member().join(room, None, None, false).await
    }

    /// Who is in a room, on every node.
    pub async fn presence(&self, room: &str) -> Result<Vec<PresenceEntry>, JoinError> {
        rooms::presence(&self.node, &self.identity, room).await
    }

    /// Leaves a room. Returns whether the connection was in it.
    pub async fn leave(&mut self, room: &str) -> bool {
        self.member().leave(room).await
    }

    /// Replaces the connection's credentials with those proven by `token`
    /// (same user; new expiry and permissions). Returns the new expiry.
    pub async fn refresh(&mut self, token: &str) -> Result<Option<SystemTime>, RefreshError> {
        let identity = self
            .node
            .authenticator()
            .refresh(token)
            .await
            .map_err(RefreshError::Invalid)?;
        if identity.user != self.identity.user {
            return Err(RefreshError::OtherUser);
        }
        let mut identity = identity;
        // The data attached at the upgrade stays unless the refresh
        // attached its own.
        if identity.data == crate::auth::IdentityData::default() {
            identity.data = self.identity.data.clone();
        }
        self.identity = identity;
        Ok(self.identity.expires_at)
    }

    /// Asks the authenticator to renew credentials that expired (see
    /// [`Authenticator::renew`](crate::auth::Authenticator::renew)). On
    /// success the new credentials are in force (rooms they no longer
    /// allow are left, each with a `left` frame) and this returns `true`;
    /// otherwise nothing changed.
    pub(crate) async fn renew(&mut self) -> bool {
        let authenticator = self.node.authenticator().clone();
        let renewed = match authenticator.renew(&self.identity).await {
            Ok(identity) => identity,
            Err(rejection) => {
                tracing::debug!(user = %self.identity.user, reason = %rejection.reason, "not renewed");
                return false;
            }
        };
        let later = renewed.expires_at.is_none_or(|at| at > SystemTime::now());
        if renewed.user != self.identity.user || !later {
            tracing::warn!(user = %self.identity.user, "renewal refused: another user or no later expiry");
            return false;
        }
        let mut identity = renewed;
        if identity.data == crate::auth::IdentityData::default() {
            identity.data = self.identity.data.clone();
        }
        self.identity = identity;
        for room in self.leave_forbidden_rooms().await {
            let _ = self.send_frame(&switchboard_protocol::server::ServerFrame::Left(
                switchboard_protocol::server::Left {
                    room: room.to_string(),
                    id: None,
                },
            ));
        }
        true
    }

    /// Leaves every room (when the connection ends).
    pub(crate) async fn leave_all(&mut self) {
        self.member().leave_all().await
    }

    /// Leaves the rooms the current permissions no longer allow (after a
    /// refresh with narrower claims); returns them.
    pub async fn leave_forbidden_rooms(&mut self) -> Vec<Arc<str>> {
        self.member().leave_forbidden().await
    }

    /// Publishes `data` to a room, as this connection's user, if the user's
    /// permissions allow it. `data` is JSON already checked by its type:
    /// nothing unchecked reaches the recipients' frames.
    pub async fn publish(&self, room: &str, data: &RawValue) -> Result<Receipt, PublishError> {
        let data = Bytes::copy_from_slice(data.get().as_bytes());
        self.publish_keyed(room, data, None, false).await
    }

    /// Publishes `data` to a room like [`Conn::publish`], to every member
    /// but this connection (the user's other connections receive it). It
    /// still goes into the room's history.
    pub async fn publish_to_others(
        &self,
        room: &str,
        data: &RawValue,
    ) -> Result<Receipt, PublishError> {
        let data = Bytes::copy_from_slice(data.get().as_bytes());
        self.publish_keyed(room, data, None, true).await
    }

    /// Publishes `value`, serialized to JSON, like [`Conn::publish`].
    pub async fn publish_value<T: serde::Serialize + ?Sized>(
        &self,
        room: &str,
        value: &T,
    ) -> Result<Receipt, PublishError> {
        let data =
            serde_json::to_vec(value).map_err(|e| PublishError::Unserializable(e.to_string()))?;
        self.publish_keyed(room, Bytes::from(data), None, false)
            .await
    }

    /// [`Conn::publish`] with an optional idempotency key (already checked
    /// against the protocol's rules), scoped to this connection's user, and
    /// leaving this connection out of the delivery when `except_self`.
    pub(crate) async fn publish_keyed(
        &self,
        room: &str,
        data: Bytes,
        key: Option<&str>,
        except_self: bool,
    ) -> Result<Receipt, PublishError> {
        self.check_may_publish(room)?;
        let user = &self.identity.user;
        self.node
            .publish_json(
                Topic::Room(Arc::from(room)),
                data,
                Some(user.clone()),
                key.map(|k| crate::node::user_key_scope(user, k)),
                except_self.then(|| Arc::from(self.id())),
            )
            .await
    }
}

impl Conn {
    /// Whether the user's permissions allow publishing to `room` (a name
    /// they do not allow is checked for validity first, so that a bad name
    /// is reported as such). The node checks the name of an allowed room
    /// when it publishes.
    pub(crate) fn check_may_publish(&self, room: &str) -> Result<(), PublishError> {
        if !self.identity.permissions.can_publish(room) {
            validate_room(room, self.node.config().max_room_name_len)
                .map_err(PublishError::InvalidRoom)?;
            return Err(PublishError::Forbidden(room.to_string()));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("user", &&self.identity.user)
            .finish_non_exhaustive()
    }
}
