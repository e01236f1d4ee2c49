//! Room membership, as the node coordinates it for one connection: join
//! (with or without recovery), leave, presence events and queries, and
//! leaving the rooms that refreshed credentials no longer allow.
//!
//! A [`Conn`](crate::Conn) lends its parts as a `Member`; everything that
//! involves the hub, the broker and presence happens here, so that the
//! connection handle stays thin.
//!
//! # Joining
//!
//! A join goes through the hub's seam (see `hub::Seam`): the node
//! subscribes, then reads the room's position (or the replay after
//! `since`) while live deliveries for the member are held; the reply and
//! the replay are queued first, and nothing at or below the position read
//! is delivered after them. A join that fails delivers nothing and is
//! announced to no one.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::server::ServerFrame;
use switchboard_protocol::{ErrorCode, NameError, validate_room};

use crate::auth::Identity;
use crate::broker::{BrokerError, Position, PresenceEntry, Recovery, Topic};
use crate::hub::{ConnId, encode_delivery};
use crate::node::Node;
use crate::outbox::Outbox;
use crate::ws::{OpCode, frame};

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

/// A join (or a presence query) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

impl JoinError {
    /// The protocol's error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::InvalidRoom(_) => ErrorCode::InvalidRoom,
            JoinError::TooManyRooms(_) => ErrorCode::TooManyRooms,
            JoinError::Forbidden(_) => ErrorCode::Forbidden,
            JoinError::Broker(_) => ErrorCode::Unavailable,
        }
    }

    /// The message sent with the error frame (`room name …` for a bad
    /// name).
    pub fn message(&self) -> String {
        match self {
            JoinError::InvalidRoom(e) => format!("room name {e}"),
            e => e.to_string(),
        }
    }
}

/// One connection's side of room membership, lent by its `Conn`.
pub(crate) struct Member<'a> {
    pub(crate) node: &'a Node,
    pub(crate) conn: ConnId,
    pub(crate) identity: &'a Identity,
    pub(crate) outbox: &'a Arc<Outbox>,
    pub(crate) rooms: &'a mut RoomSet,
}

impl Member<'_> {
    /// Joins `room`; with `since`, recovers what was published after it;
    /// with `reply`, queues the `joined` frame (carrying that id) right
    /// after the replay. Already being in the room makes it a plain join.
    /// Returns the room's position: every message delivered from now on has
    /// a larger offset, and none at or below it is.
    pub(crate) async fn join(
        &mut self,
        room: &str,
        since: Option<&Position>,
        reply: Option<Option<u64>>,
        replay_new_epoch: bool,
    ) -> Result<Position, JoinError> {
        check_may_join(self.node, self.identity, room)?;
        let broker = self.node.broker().clone();
        if self.rooms.contains_key(room) {
            let position = broker.position(room).await?;
            if let Some(id) = reply {
                let _ = self.outbox.push(joined_frame(room, id, &position, None));
            }
            return Ok(position);
        }
        let max = self.node.config().max_rooms_per_connection;
        if self.rooms.len() >= max {
            return Err(JoinError::TooManyRooms(max));
        }
        let hub = self.node.hub();
        let room = hub.room_name(room);
        let topic = Topic::Room(room.clone());
        hub.add_joining(&topic, self.conn, self.outbox).await?;
        self.rooms.insert(room.clone(), false);
        if since.is_some() {
            self.node.stats().client_reconnects.inc();
        }
        let read = match since {
            Some(since) => match broker.recover(&room, since).await {
                Ok(Recovery::Recovered { messages, position }) => Ok((
                    messages.iter().map(encode_delivery).collect(),
                    position,
                    Some(true),
                )),
                Ok(Recovery::Gap { position })
                    if replay_new_epoch && position.epoch != since.epoch =>
                {
                    replay_epoch(&*broker, &room, reply, position).await
                }
                Ok(Recovery::Gap { position }) => Ok((Vec::new(), position, Some(false))),
                Err(e) => Err(e),
            },
            None => broker.position(&room).await.map(|p| (Vec::new(), p, None)),
        };
        let (mut prelude, position, recovered): (Vec<Bytes>, _, _) = match read {
            Ok(read) => read,
            Err(e) => {
                self.rooms.remove_entry(&room);
                hub.remove(topic, self.conn).await;
                return Err(e.into());
            }
        };
        if let Some(id) = reply {
            prelude.push(joined_frame(&room, id, &position, recovered));
        }
        hub.finish_join(&topic, self.conn, prelude, position.offset);
        self.announce(&room, "join").await;
        Ok(position)
    }

    /// Starts delivering a joined room's presence events to this
    /// connection. Harmless for a room it is not in, or already watches.
    pub(crate) async fn watch_presence(&mut self, room: &str) -> Result<(), JoinError> {
        match self.rooms.get(room) {
            Some(true) | None => Ok(()),
            Some(false) => {
                let topic = Topic::Presence(Arc::from(room));
                self.node.hub().add(topic, self.conn, self.outbox).await?;
                if let Some(flag) = self.rooms.get_mut(room) {
                    *flag = true;
                }
                Ok(())
            }
        }
    }

    /// Leaves a room. Returns whether the connection was in it.
    pub(crate) async fn leave(&mut self, room: &str) -> bool {
        let Some((room, watching)) = self.rooms.remove_entry(room) else {
            return false;
        };
        let hub = self.node.hub();
        if watching {
            hub.remove(Topic::Presence(room.clone()), self.conn).await;
        }
        let removed = hub.remove(Topic::Room(room.clone()), self.conn).await;
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

    /// Leaves the rooms the identity's permissions no longer allow (after a
    /// refresh with narrower claims); returns them.
    pub(crate) async fn leave_forbidden(&mut self) -> Vec<Arc<str>> {
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

    /// Records this connection in the room's presence and tells the room's
    /// presence watchers. Best effort: presence never fails a join or leave.
    async fn announce(&self, room: &Arc<str>, event: &str) {
        let presence = self.node.presence();
        let conn = format!("{}-{}", self.node.id(), self.conn);
        self.node.record(|| {
            let (user, conn, room) = (self.identity.user.clone(), conn.clone(), room.clone());
            match event {
                "join" => crate::events::Event::Join { user, conn, room },
                _ => crate::events::Event::Leave { user, conn, room },
            }
        });
        // Counted whether or not the backend took it: a join's entry and
        // its leave's removal always pair up.
        let entries = &self.node.stats().presence_entries;
        let result = match event {
            "join" => {
                entries.inc();
                presence.add(room, &conn, &self.identity.user).await
            }
            _ => {
                entries.dec();
                presence.remove(room, &conn).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(room = %room, error = %e, "presence not recorded");
        }
        let data =
            serde_json::json!({ "event": event, "user": &*self.identity.user, "conn": conn });
        let topic = Topic::Presence(room.clone());
        if let Err(e) = self
            .node
            .publish_json(topic, data.to_string().into(), None, None, None)
            .await
        {
            tracing::debug!(room = %room, error = %e, "presence event not published");
        }
    }
}

/// Who is in a room, on every node, if `identity` may join it.
pub(crate) async fn presence(
    node: &Node,
    identity: &Identity,
    room: &str,
) -> Result<Vec<PresenceEntry>, JoinError> {
    check_may_join(node, identity, room)?;
    Ok(node.presence().list(room).await?)
}

/// The room name is valid and the identity's permissions let it in.
pub(crate) fn check_may_join(
    node: &Node,
    identity: &Identity,
    room: &str,
) -> Result<(), JoinError> {
    validate_room(room, node.config().max_room_name_len)?;
    if !identity.permissions.can_join(room) {
        return Err(JoinError::Forbidden(room.to_string()));
    }
    Ok(())
}

/// The `joined` frame.
/// The frames of a rejoin across an epoch change: `reset`, then what the
/// new epoch's history holds (all of it when it reaches back to offset 1;
/// otherwise nothing, and `reset` says where the new epoch stands). The
/// position returned is the one the replay was read at.
async fn replay_epoch(
    broker: &dyn crate::broker::Broker,
    room: &str,
    reply: Option<Option<u64>>,
    current: Position,
) -> Result<(Vec<Bytes>, Position, Option<bool>), BrokerError> {
    let start = Position {
        offset: 0,
        epoch: current.epoch.clone(),
    };
    let (messages, position, after) = match broker.recover(room, &start).await? {
        Recovery::Recovered { messages, position } => (messages, position, 0),
        Recovery::Gap { position } => {
            let after = position.offset;
            (Vec::new(), position, after)
        }
    };
    let reset = ServerFrame::Reset(switchboard_protocol::server::Reset {
        room: room.to_string(),
        id: reply.flatten(),
        epoch: position.epoch.to_string(),
        offset: after,
    });
    let mut prelude = Vec::with_capacity(messages.len() + 2);
    prelude.push(frame::encode(OpCode::Text, reset.to_json().as_bytes()));
    prelude.extend(messages.iter().map(encode_delivery));
    Ok((prelude, position, Some(false)))
}

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
