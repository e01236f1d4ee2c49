//! The hub: this node's local state only. Which local connections are in
//! which room, which belong to which user, and which take broadcasts.
//!
//! The hub is the broker's
//! [`DeliveryHandler`](crate::broker::DeliveryHandler): a delivery is encoded to one
//! WebSocket frame, once, and the same bytes are queued on every local
//! recipient's [`Outbox`].
//!
//! It also keeps the node's broker subscriptions in step with membership:
//! the first local member of a topic subscribes the node, the last one out
//! unsubscribes it. Membership changes of one topic are serialized by a
//! striped async lock, so a subscribe and an unsubscribe for the same topic
//! can never overtake each other.

use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use dashmap::DashMap;

use crate::broker::{Broker, BrokerError, Topic};
use crate::outbox::{Outbox, PushError};
use crate::stats::Stats;

mod members;

use self::members::{Joining, Members, Seam, StreamMembers};
use switchboard_protocol::CloseCode;

/// A connection id, unique within this node.
/// The `from` of a user delivery that ends the user's connections instead
/// of reaching them (see [`Node::disconnect_user`](crate::Node::disconnect_user)).
pub(crate) const DISCONNECT_USER: &str = crate::broker::DISCONNECT_FROM;

/// The close reason carried by a disconnect delivery (`{"reason": ...}`).
fn disconnect_reason(data: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        reason: String,
    }
    serde_json::from_slice::<Body>(data)
        .map(|b| b.reason)
        .unwrap_or_else(|_| "signed out".into())
}

pub(crate) type ConnId = u64;

/// The local members of every room (or every user), by name.
type StreamIndex = DashMap<Arc<str>, StreamMembers>;

/// Number of stripes of the subscription lock. Unrelated topics that share a
/// stripe only wait for each other while one of them changes membership.
const STRIPES: usize = 64;

/// Local membership and fan-out. See the module docs.
pub(crate) struct Hub {
    rooms: StreamIndex,
    users: StreamIndex,
    broadcast: DashMap<ConnId, Arc<Outbox>>,
    presence: DashMap<Arc<str>, Members>,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    /// Weak: the broker holds the hub (as its delivery handler), so a strong
    /// reference back would keep both alive after the node is dropped.
    broker: Weak<dyn Broker>,
    stats: Arc<Stats>,
    /// The node's id: a delivery's `except` names a connection of this
    /// node when it starts with it.
    node: Arc<str>,
}

impl Hub {
    pub(crate) fn new(broker: Arc<dyn Broker>, stats: Arc<Stats>, node: Arc<str>) -> Self {
        Hub {
            rooms: DashMap::new(),
            users: DashMap::new(),
            broadcast: DashMap::new(),
            presence: DashMap::new(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            broker: Arc::downgrade(&broker),
            stats,
            node,
        }
    }

    /// The local connection a delivery's `except` names, if it is on this
    /// node.
    fn local_except(&self, except: Option<&str>) -> Option<ConnId> {
        let (node, n) = crate::node::split_conn_id(except?)?;
        (node == &*self.node).then_some(n)
    }

    fn broker(&self) -> Result<Arc<dyn Broker>, BrokerError> {
        self.broker.upgrade().ok_or(BrokerError::NotAttached)
    }

    fn stripe(&self, topic: &Topic) -> &tokio::sync::Mutex<()> {
        let h = self.rooms.hasher().hash_one(topic) as usize;
        &self.stripes[h % STRIPES]
    }

    /// Adds a connection to a topic's local members, subscribing the node
    /// first if it is the first member. On a broker error nothing changes.
    pub(crate) async fn add(
        &self,
        topic: Topic,
        conn: ConnId,
        outbox: &Arc<Outbox>,
    ) -> Result<(), BrokerError> {
        let _guard = self.stripe(&topic).lock().await;
        if self.count(&topic) == 0 {
            self.broker()?.subscribe(&topic).await?;
        }
        match &topic {
            Topic::Room(name) => {
                self.rooms
                    .entry(name.clone())
                    .or_default()
                    .live
                    .insert(conn, outbox.clone());
            }
            Topic::User(name) => {
                self.users
                    .entry(name.clone())
                    .or_default()
                    .live
                    .insert(conn, outbox.clone());
            }
            Topic::Broadcast => {
                self.broadcast.insert(conn, outbox.clone());
            }
            Topic::Presence(name) => insert(&self.presence, name, conn, outbox),
        }
        Ok(())
    }

    /// The room's name as the index holds it, so that a member shares that
    /// allocation instead of keeping its own copy; a new one for a room with
    /// no local member yet (it becomes the index's when the member is added).
    pub(crate) fn room_name(&self, room: &str) -> Arc<str> {
        self.rooms
            .get(room)
            .map_or_else(|| Arc::from(room), |e| e.key().clone())
    }

    /// Removes a connection from a topic, unsubscribing the node when it was
    /// the last local member. Returns whether it was a member.
    pub(crate) async fn remove(&self, topic: Topic, conn: ConnId) -> bool {
        let _guard = self.stripe(&topic).lock().await;
        let removed = match &topic {
            Topic::Room(name) => remove_stream(&self.rooms, name, conn),
            Topic::User(name) => remove_stream(&self.users, name, conn),
            Topic::Broadcast => self.broadcast.remove(&conn).is_some(),
            Topic::Presence(name) => remove(&self.presence, name, conn),
        };
        // Deliveries for a topic with no members are dropped on arrival, so
        // a failed unsubscribe costs traffic, not safety.
        if removed
            && self.count(&topic) == 0
            && let Ok(broker) = self.broker()
            && let Err(e) = broker.unsubscribe(&topic).await
        {
            tracing::warn!(?topic, error = %e, "unsubscribe failed");
        }
        removed
    }

    /// The members of a stream's topic (a room's or a user's), by name.
    fn streams<'a>(&'a self, topic: &'a Topic) -> Option<(&'a StreamIndex, &'a Arc<str>)> {
        match topic {
            Topic::Room(name) => Some((&self.rooms, name)),
            Topic::User(name) => Some((&self.users, name)),
            Topic::Broadcast | Topic::Presence(_) => None,
        }
    }

    /// Adds a connection to a room or user as a member on its way in (see
    /// [`Seam`]): live deliveries are held until [`Hub::finish_join`].
    /// Subscribes the node first if needed.
    pub(crate) async fn add_joining(
        &self,
        topic: &Topic,
        conn: ConnId,
        outbox: &Arc<Outbox>,
    ) -> Result<(), BrokerError> {
        let Some((map, name)) = self.streams(topic) else {
            return Err(BrokerError::Refused(format!("{topic:?} has no stream")));
        };
        let _guard = self.stripe(topic).lock().await;
        if self.count(topic) == 0 {
            self.broker()?.subscribe(topic).await?;
        }
        let entry = map.entry(name.clone()).or_default();
        entry.joining.lock().insert(
            conn,
            Joining {
                outbox: outbox.clone(),
                seam: Seam::Reading(Vec::new()),
            },
        );
        Ok(())
    }

    /// Ends the read of a joining member: queues `prelude` (the replay and
    /// the reply, which reach offset `after`), then the deliveries held
    /// meanwhile whose offset is above `after`. Nothing can be delivered in
    /// between: the stream's entry is locked for writing throughout. The
    /// member is live at once if a held delivery was above `after`;
    /// otherwise it drops what arrives at or below `after` until the first
    /// delivery above it.
    pub(crate) fn finish_join(&self, topic: &Topic, conn: ConnId, prelude: Vec<Bytes>, after: u64) {
        let Some((map, name)) = self.streams(topic) else {
            return;
        };
        let Some(mut entry) = map.get_mut(&**name) else {
            return;
        };
        let entry = &mut *entry;
        let Some(joining) = entry.joining.get_mut().get_mut(&conn) else {
            return;
        };
        let held = match std::mem::replace(&mut joining.seam, Seam::Seaming { after }) {
            Seam::Reading(held) => held,
            // Finished already: nothing to do.
            other => {
                joining.seam = other;
                return;
            }
        };
        let mut caught_up = false;
        let later = held.into_iter().filter(|(o, _)| *o > after).map(|(_, f)| {
            caught_up = true;
            f
        });
        for frame in prelude.into_iter().chain(later) {
            if joining.outbox.push(frame).is_err() {
                break;
            }
        }
        if caught_up && let Some(joining) = entry.joining.get_mut().remove(&conn) {
            entry.live.insert(conn, joining.outbox);
        }
    }

    /// Moves the stream's caught-up joining members to the live ones.
    fn promote(map: &StreamIndex, name: &str) {
        let Some(mut entry) = map.get_mut(name) else {
            return;
        };
        let entry = &mut *entry;
        let joining = entry.joining.get_mut();
        let done: Vec<ConnId> = joining
            .iter()
            .filter(|(_, j)| matches!(j.seam, Seam::CaughtUp))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(j) = joining.remove(&id) {
                entry.live.insert(id, j.outbox);
            }
        }
    }

    /// Local members of a topic.
    pub(crate) fn count(&self, topic: &Topic) -> usize {
        match topic {
            Topic::Room(name) => self.rooms.get(name).map_or(0, |m| m.len()),
            Topic::User(name) => self.users.get(name).map_or(0, |m| m.len()),
            Topic::Broadcast => self.broadcast.len(),
            Topic::Presence(name) => self.presence.get(name).map_or(0, |m| m.len()),
        }
    }

    /// Rooms with at least one local member.
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Users with at least one local connection that takes user messages
    /// (joining ones included: a connection reading its user stream).
    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Pushes `frame` to every outbox, each prefetched a few pushes ahead:
    /// a fan-out to thousands of connections otherwise waits on a cache miss
    /// for each one's lock.
    /// Returns how many it was queued for.
    fn push_all<'a>(
        &self,
        frame: &Bytes,
        mut outboxes: impl Iterator<Item = &'a Arc<Outbox>>,
    ) -> u64 {
        const AHEAD: usize = 4;
        let mut ahead: [Option<&Arc<Outbox>>; AHEAD] = [None; AHEAD];
        for slot in &mut ahead {
            *slot = outboxes.next().inspect(|o| o.prefetch());
        }
        let mut delivered = 0u64;
        // `ahead[i]` is the next outbox to push to; the one after it goes
        // in its place, so the slots are used round-robin in order.
        let mut i = 0;
        while let Some(outbox) = ahead[i].take() {
            ahead[i] = outboxes.next().inspect(|o| o.prefetch());
            delivered += self.push_one(frame, outbox);
            i = (i + 1) % AHEAD;
        }
        self.stats.deliveries.inc_by(delivered);
        delivered
    }

    fn push_one(&self, frame: &Bytes, outbox: &Arc<Outbox>) -> u64 {
        match outbox.push(frame.clone()) {
            Ok(()) => 1,
            Err(PushError::Overflow) => {
                self.stats.slow_consumers.inc();
                0
            }
            Err(PushError::Closed) => 0,
        }
    }
}

impl Hub {
    /// The live stream of a room or a user has a hole: the delivery at
    /// `offset` does not follow `last`. Every local member has what was
    /// queued up to `last` and must not get `offset` as if nothing were
    /// missing, so each is closed with 4005 (reconnect at once) after what
    /// is queued; it rejoins the room with `since` at `last`, or reconnects
    /// with `user_stream` at `last`, and recovery fills the hole from the
    /// history, or answers with a `reset` or `"recovered": false`. Members
    /// that join from now on read their position afresh.
    fn resync(&self, topic: &Topic, members: &StreamMembers, last: u64, offset: u64) {
        let (kind, name, reason) = match topic {
            Topic::Room(name) => (
                "room",
                name,
                "this node missed messages of a room; rejoin with since to recover",
            ),
            Topic::User(name) => (
                "user",
                name,
                "this node missed messages of your user stream; reconnect with user_stream to recover",
            ),
            Topic::Broadcast | Topic::Presence(_) => return,
        };
        let joining = members.joining.lock();
        let outboxes = members
            .live
            .values()
            .chain(joining.values().map(|j| &j.outbox));
        let mut closed = 0;
        for outbox in outboxes {
            outbox.close(CloseCode::INSUFFICIENT_STATE, reason);
            closed += 1;
        }
        tracing::warn!(
            kind,
            stream = %name,
            last,
            offset,
            closed,
            "stream broke (missed messages or a new epoch); members sent to recover"
        );
    }

    /// Delivers a room message to the members on their way in (see
    /// [`Seam`]). Returns how many it was queued for (held frames are not
    /// counted), and whether one of them caught up.
    fn deliver_joining(
        &self,
        members: &StreamMembers,
        offset: Option<u64>,
        frame: &Bytes,
        skip: Option<ConnId>,
    ) -> (u64, bool) {
        let mut joining = members.joining.lock();
        let mut caught_up = false;
        let mut delivered = 0;
        for (id, j) in joining.iter_mut() {
            // A joining member left out goes on waiting for the first
            // message above its seam.
            if Some(*id) == skip {
                continue;
            }
            match &mut j.seam {
                Seam::Reading(held) => {
                    // Held frames are bounded like the outbox itself.
                    if held.len() >= j.outbox.max_frames() {
                        j.outbox.close(
                            switchboard_protocol::CloseCode::SLOW_CONSUMER,
                            "slow consumer: too many messages during recovery",
                        );
                        continue;
                    }
                    held.push((offset.unwrap_or(0), frame.clone()));
                }
                // Offsets arrive in order: the first above the seam means
                // no late copy can follow. A message without an offset
                // (delivered locally during a broker outage) is in no
                // sequence and goes through.
                Seam::Seaming { after } => match offset {
                    Some(o) if o <= *after => {}
                    Some(_) => {
                        delivered += self.push_one(frame, &j.outbox);
                        j.seam = Seam::CaughtUp;
                        caught_up = true;
                    }
                    None => delivered += self.push_one(frame, &j.outbox),
                },
                Seam::CaughtUp => {
                    delivered += self.push_one(frame, &j.outbox);
                    caught_up = true;
                }
            }
        }
        self.stats.deliveries.inc_by(delivered);
        (delivered, caught_up)
    }
}

/// Removes a connection from a stream's members, live or joining.
fn remove_stream(map: &StreamIndex, name: &str, conn: ConnId) -> bool {
    let removed = match map.get_mut(name) {
        Some(mut m) => {
            let live = m.live.remove(&conn).is_some();
            live | m.joining.get_mut().remove(&conn).is_some()
        }
        None => false,
    };
    map.remove_if(name, |_, m| m.len() == 0);
    removed
}

fn insert(map: &DashMap<Arc<str>, Members>, name: &Arc<str>, conn: ConnId, outbox: &Arc<Outbox>) {
    map.entry(name.clone())
        .or_default()
        .insert(conn, outbox.clone());
}

fn remove(map: &DashMap<Arc<str>, Members>, name: &str, conn: ConnId) -> bool {
    let removed = match map.get_mut(name) {
        Some(mut members) => members.remove(&conn).is_some(),
        None => false,
    };
    map.remove_if(name, |_, members| members.is_empty());
    removed
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

mod deliver;
#[cfg(test)]
mod tests;

pub(crate) use deliver::encode_delivery;
