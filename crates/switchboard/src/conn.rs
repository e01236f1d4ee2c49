//! [`Conn`]: one connection as its handler sees it.
//!
//! The session task owns the `Conn` and lends it to the handler for each
//! call. Everything sent through it goes into the connection's bounded
//! [`Outbox`], in order with the messages fan-out queues there.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::server::ServerFrame;
use switchboard_protocol::{CloseCode, NameError, validate_room};

use std::time::SystemTime;

use crate::auth::{Identity, Rejection};
use crate::broker::{BrokerError, Position, PresenceEntry, Receipt, Recovery, Topic};
use crate::endpoint::Endpoint;
use crate::hub::ConnId;
use crate::hub::encode_delivery;
use crate::node::{Node, PublishError};
use crate::outbox::{Outbox, PushError};
use crate::ws::{OpCode, frame};

/// One connection, lent to its endpoint's handler.
pub struct Conn {
    pub(crate) id: ConnId,
    pub(crate) identity: Identity,
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) remote: Option<SocketAddr>,
    /// Index of the negotiated subprotocol in the endpoint's list.
    pub(crate) subprotocol: Option<usize>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) node: Node,
    /// Rooms joined; the flag says whether this connection also receives
    /// the room's presence events.
    pub(crate) rooms: RoomSet,
    pub(crate) extensions: http::Extensions,
}

/// The rooms a connection is in, each with whether it also receives the
/// room's presence events. A connection is usually in a handful of rooms, so
/// a short vector, sized exactly while small, costs far less per idle
/// connection than a hash map and is as fast to search.
#[derive(Debug, Default)]
pub(crate) struct RoomSet(Vec<(Arc<str>, bool)>);

impl RoomSet {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn contains_key(&self, room: &str) -> bool {
        self.get(room).is_some()
    }

    pub(crate) fn get(&self, room: &str) -> Option<&bool> {
        self.0.iter().find(|(r, _)| &**r == room).map(|(_, w)| w)
    }

    pub(crate) fn get_mut(&mut self, room: &str) -> Option<&mut bool> {
        self.0
            .iter_mut()
            .find(|(r, _)| &**r == room)
            .map(|(_, w)| w)
    }

    /// Adds a room, or sets its flag if it is already there.
    pub(crate) fn insert(&mut self, room: Arc<str>, watching: bool) {
        if let Some(w) = self.get_mut(&room) {
            *w = watching;
            return;
        }
        if self.0.len() < 4 {
            self.0.reserve_exact(1);
        }
        self.0.push((room, watching));
    }

    pub(crate) fn remove_entry(&mut self, room: &str) -> Option<(Arc<str>, bool)> {
        let i = self.0.iter().position(|(r, _)| &**r == room)?;
        let entry = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(entry)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(r, _)| r)
    }
}

/// A join was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room name breaks the naming rules.
    #[error("invalid room name: {0}")]
    InvalidRoom(#[from] NameError),
    /// The connection is already in the most rooms allowed.
    #[error("already in {0} rooms, the most allowed")]
    TooManyRooms(usize),
    /// The user's credentials do not allow this room.
    #[error("not allowed to join room {0:?}")]
    Forbidden(String),
    /// The broker could not subscribe this node.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A `refresh` was refused; the old credentials stay in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The new credentials are invalid or expired.
    #[error("{}", .0.reason)]
    Invalid(Rejection),
    /// The new credentials name a different user.
    #[error("the new credentials are for another user")]
    OtherUser,
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
            .and_then(|i| self.endpoint.subprotocols.get(i))
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

    /// Joins a room: from now on, messages published there are delivered to
    /// this connection. Joining a room twice is harmless. Returns the room's
    /// position: every message delivered from now on has a larger offset
    /// (some may already be queued when this returns), and none at or below
    /// it is.
    pub async fn join(&mut self, room: &str) -> Result<Position, JoinError> {
        self.enter(room, None, None).await
    }

    /// Joins a room and queues the `joined` reply; with `since`, recovers
    /// what was published there after it. Queues, in this order and with
    /// nothing in between: the missed messages, the `joined` reply
    /// (`recovered: true`, or `false` when the history no longer covers the
    /// gap and nothing was replayed), then live messages, each once, above
    /// the reply's offset. Already being in the room makes it a plain join.
    pub(crate) async fn join_replying(
        &mut self,
        room: &str,
        since: Option<&Position>,
        id: Option<u64>,
    ) -> Result<(), JoinError> {
        self.enter(room, since, Some(id)).await.map(drop)
    }

    /// Joins `room` through the hub's seam (see `hub::Seam`): the position,
    /// or the replay after `since`, is read while live deliveries are held,
    /// and nothing at or below the position read is delivered after it.
    /// With `reply`, the `joined` frame (carrying that id) is queued right
    /// after the replay.
    async fn enter(
        &mut self,
        room: &str,
        since: Option<&Position>,
        reply: Option<Option<u64>>,
    ) -> Result<Position, JoinError> {
        self.check_may_join(room)?;
        let broker = self.node.broker().clone();
        if self.rooms.contains_key(room) {
            let position = broker.position(room).await?;
            if let Some(id) = reply {
                let _ = self.send_encoded(joined_frame(room, id, &position, None));
            }
            return Ok(position);
        }
        self.check_room_limit()?;
        let hub = self.node.hub();
        let room = hub.room_name(room);
        hub.add_joining(&room, self.id, &self.outbox).await?;
        self.rooms.insert(room.clone(), false);
        let read = match since {
            Some(since) => broker.recover(&room, since).await.map(|r| match r {
                Recovery::Recovered { messages, position } => (
                    messages.iter().map(encode_delivery).collect(),
                    position,
                    Some(true),
                ),
                Recovery::Gap { position } => (Vec::new(), position, Some(false)),
            }),
            None => broker.position(&room).await.map(|p| (Vec::new(), p, None)),
        };
        let (mut prelude, position, recovered): (Vec<Bytes>, _, _) = match read {
            Ok(read) => read,
            Err(e) => {
                // A join the client is told failed delivers nothing and is
                // announced to no one.
                self.rooms.remove_entry(&room);
                hub.remove(Topic::Room(room), self.id).await;
                return Err(e.into());
            }
        };
        if let Some(id) = reply {
            prelude.push(joined_frame(&room, id, &position, recovered));
        }
        hub.finish_join(&room, self.id, prelude, position.offset);
        self.announce(&room, "join").await;
        Ok(position)
    }

    /// The room name is valid and the user's permissions let them in.
    fn check_may_join(&self, room: &str) -> Result<(), JoinError> {
        validate_room(room, self.node.config().max_room_name_len)?;
        if !self.identity.permissions.can_join(room) {
            return Err(JoinError::Forbidden(room.to_string()));
        }
        Ok(())
    }

    fn check_room_limit(&self) -> Result<(), JoinError> {
        let max = self.node.config().max_rooms_per_connection;
        if self.rooms.len() >= max {
            Err(JoinError::TooManyRooms(max))
        } else {
            Ok(())
        }
    }

    /// Starts (or stops) delivering a joined room's presence events to this
    /// connection.
    pub(crate) async fn watch_presence(&mut self, room: &str) -> Result<(), JoinError> {
        match self.rooms.get(room) {
            Some(true) | None => Ok(()),
            Some(false) => {
                let topic = Topic::Presence(Arc::from(room));
                self.node.hub().add(topic, self.id, &self.outbox).await?;
                if let Some(flag) = self.rooms.get_mut(room) {
                    *flag = true;
                }
                Ok(())
            }
        }
    }

    /// Records this connection in the room's presence and tells the room's
    /// presence watchers. Best effort: presence never fails a join or leave.
    async fn announce(&self, room: &Arc<str>, event: &str) {
        let presence = self.node.presence();
        let conn = self.id();
        let result = match event {
            "join" => presence.add(room, &conn, &self.identity.user).await,
            _ => presence.remove(room, &conn).await,
        };
        if let Err(e) = result {
            tracing::debug!(room = %room, error = %e, "presence not recorded");
        }
        let data =
            serde_json::json!({ "event": event, "user": &*self.identity.user, "conn": conn });
        let topic = Topic::Presence(room.clone());
        if let Err(e) = self
            .node
            .publish_json(topic, data.to_string().into(), None, None)
            .await
        {
            tracing::debug!(room = %room, error = %e, "presence event not published");
        }
    }

    /// Who is in a room, on every node.
    pub async fn presence(&self, room: &str) -> Result<Vec<PresenceEntry>, JoinError> {
        self.check_may_join(room)?;
        Ok(self.node.presence().list(room).await?)
    }

    /// Leaves a room. Returns whether the connection was in it.
    pub async fn leave(&mut self, room: &str) -> bool {
        let Some((room, watching)) = self.rooms.remove_entry(room) else {
            return false;
        };
        let hub = self.node.hub();
        if watching {
            hub.remove(Topic::Presence(room.clone()), self.id).await;
        }
        let removed = hub.remove(Topic::Room(room.clone()), self.id).await;
        self.announce(&room, "leave").await;
        removed
    }

    /// Leaves every room (when the connection ends).
    pub(crate) async fn leave_all(&mut self) {
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.leave(&room).await;
        }
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
        self.identity = identity;
        Ok(self.identity.expires_at)
    }

    /// Leaves the rooms the current permissions no longer allow (after a
    /// refresh with narrower claims); returns them.
    pub async fn leave_forbidden_rooms(&mut self) -> Vec<Arc<str>> {
        let gone: Vec<Arc<str>> = self
            .rooms
            .keys()
            .filter(|r| !self.identity.permissions.can_join(r))
            .cloned()
            .collect();
        for room in &gone {
            self.leave(room).await;
        }
        gone
    }

    /// Publishes JSON text `data` to a room, as this connection's user, if
    /// the user's permissions allow it. The caller guarantees `data` is valid
    /// JSON.
    pub async fn publish(&self, room: &str, data: Bytes) -> Result<Receipt, PublishError> {
        self.publish_keyed(room, data, None).await
    }

    /// [`Conn::publish`] with an optional idempotency key (already checked
    /// against the protocol's rules), scoped to this connection's user.
    pub(crate) async fn publish_keyed(
        &self,
        room: &str,
        data: Bytes,
        key: Option<&str>,
    ) -> Result<Receipt, PublishError> {
        if !self.identity.permissions.can_publish(room) {
            validate_room(room, self.node.config().max_room_name_len)
                .map_err(PublishError::InvalidRoom)?;
            return Err(PublishError::Forbidden(room.to_string()));
        }
        let user = &self.identity.user;
        self.node
            .publish_json(
                Topic::Room(Arc::from(room)),
                data,
                Some(user.clone()),
                key.map(|k| crate::node::user_key_scope(user, k)),
            )
            .await
    }
}

/// The `joined` frame.
fn joined_frame(
    room: &str,
    id: Option<u64>,
    position: &Position,
    recovered: Option<bool>,
) -> Bytes {
    let frame = ServerFrame::Joined(switchboard_protocol::server::Joined {
        room: room.to_string(),
        id,
        offset: position.offset,
        epoch: position.epoch.to_string(),
        recovered,
    });
    frame::encode(OpCode::Text, frame.to_json().as_bytes())
}
