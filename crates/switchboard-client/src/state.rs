//! The protocol state that outlives connections, with no I/O: the rooms the
//! application wants and where each one stands, requests waiting for their
//! reply, and publishes waiting for a connection.
//!
//! The connection task feeds it commands, server frames, the clock and
//! connection changes; it answers with frames to send ([`State::take_out`])
//! and events. Keeping it free of sockets is what lets its dedupe and
//! recovery rules be tested frame by frame. Server frames are applied in
//! `inbound`.
//!
//! # Dedupe
//!
//! Each room remembers its epoch and the last offset delivered. A room
//! message is delivered only if its offset is above that, so no room offset
//! is delivered twice within an epoch, whatever the server replays.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_protocol::client::{ClientFrame, MAX_ID, Since};
use switchboard_protocol::server::PresenceMember;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use crate::client::{JoinReply, Joined, PublishOptions, PublishReply, RpcReply};
use crate::error::{PublishError, RequestError};
use crate::event::{Event, StopReason};

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// A request sent and not yet answered, by `id`.
#[derive(Debug)]
enum Pending {
    /// The join's waiters live in the room, so that they survive a
    /// reconnect.
    Join {
        room: String,
    },
    Leave {
        reply: Reply<()>,
    },
    Presence {
        reply: Reply<Vec<PresenceMember>>,
    },
    Publish {
        reply: PublishReply,
    },
    Rpc {
        reply: RpcReply,
        /// Reported in [`RequestError::Timeout`].
        timeout: Duration,
    },
    Refresh {
        reply: Option<Reply<Option<u64>>>,
    },
    /// The `leave` of a catch-up (see [`Phase::CatchingUp`]).
    CatchUpLeave {
        room: String,
    },
}

/// Where a room stands on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not joined on this connection (disconnected, or not yet rejoined).
    Idle,
    /// `join` sent, `joined` not yet received. `recovering`: the join
    /// carried `since`. `fresh_max`: the largest offset delivered meanwhile
    /// by a join without `since` (messages may precede `joined`).
    Joining { recovering: bool, fresh_max: u64 },
    /// `joined` received.
    Joined,
    /// A rejoin found a new epoch whose messages the server still has, and
    /// the server did not replay them (it sends no `reset`):
    /// `leave` and `join` with `since` offset 0 of that epoch were sent.
    /// Messages are dropped until the `left` (the replay that follows
    /// contains them); then the phase is `Joining { recovering: true }`.
    CatchingUp,
}

#[derive(Debug)]
struct Room {
    presence: bool,
    /// The epoch of `last`; `None` until a `joined` told it.
    epoch: Option<String>,
    /// The last offset delivered (or the join position, if larger).
    last: u64,
    phase: Phase,
    /// A catch-up (or a `reset`) is under way, and its gap was reported: a
    /// second gap on the rejoin's own `joined` is the same loss, not
    /// reported again.
    catching_up: bool,
    /// Callers of `join` waiting for this room's `joined`.
    waiters: Vec<JoinReply>,
}

impl Room {
    fn new() -> Self {
        Room {
            presence: false,
            epoch: None,
            last: 0,
            phase: Phase::Idle,
            catching_up: false,
            waiters: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Buffered {
    room: String,
    data: Box<RawValue>,
    options: PublishOptions,
    reply: PublishReply,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct State {
    ack_timeout: Duration,
    publish_buffer: usize,
    events: broadcast::Sender<Event>,
    buffered_count: Arc<AtomicUsize>,
    online: bool,
    rooms: BTreeMap<String, Room>,
    /// Sent requests by id, with their deadline.
    pending: HashMap<u64, (Instant, Pending)>,
    /// The same deadlines, in order.
    deadlines: BTreeSet<(Instant, u64)>,
    buffer: VecDeque<Buffered>,
    next_id: u64,
    out: Vec<String>,
    user: user::UserPosition,
}

impl State {
    pub(crate) fn new(
        ack_timeout: Duration,
        publish_buffer: usize,
        events: broadcast::Sender<Event>,
        buffered_count: Arc<AtomicUsize>,
    ) -> Self {
        State {
            ack_timeout,
            publish_buffer,
            events,
            buffered_count,
            online: false,
            rooms: BTreeMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            buffer: VecDeque::new(),
            next_id: 0,
            out: Vec::new(),
            user: Default::default(),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        // No receiver is not an error: nobody is listening.
        let _ = self.events.send(event);
    }

    /// The frames to send now, in order.
    pub(crate) fn take_out(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }

    /// The earliest request deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    pub(crate) fn is_online(&self) -> bool {
        self.online
    }

    // ---- connection changes -------------------------------------------

    /// The server welcomed a connection: rejoin every room (recovering
    /// where a position is known), then send the buffered publishes. The
    /// server handles one connection's frames in order, so the publishes
    /// take effect after the rooms are joined.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.online = true;
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.send_join(&room, now);
        }
        for b in std::mem::take(&mut self.buffer) {
            if !b.reply.is_closed() {
                self.send_publish(b.room, &b.data, b.options, b.reply, now);
            }
        }
        self.count_buffered();
    }

    /// The connection ended. Sent publishes, rpcs and presence or refresh
    /// requests fail (their outcome is unknown; none is sent again); sent
    /// leaves succeed (the room is not rejoined); joins wait for the next
    /// connection.
    pub(crate) fn disconnected(&mut self) {
        self.online = false;
        self.out.clear();
        self.deadlines.clear();
        for (_, (_, pending)) in self.pending.drain() {
            match pending {
                Pending::Join { .. } | Pending::CatchUpLeave { .. } => {}
                Pending::Leave { reply } => {
                    let _ = reply.send(Ok(()));
                }
                Pending::Presence { reply } => {
                    let _ = reply.send(Err(RequestError::ConnectionLost));
                }
                Pending::Publish { reply } => {
                    let _ = reply.send(Err(PublishError::ConnectionLost));
                }
                Pending::Rpc { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ConnectionLost));
                }
                Pending::Refresh { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(RequestError::ConnectionLost));
                    }
                }
            }
        }
        for room in self.rooms.values_mut() {
            room.phase = Phase::Idle;
            room.catching_up = false;
        }
    }

    /// The client stopped: everything waiting fails with `reason`.
    pub(crate) fn stop(&mut self, reason: &StopReason) {
        self.online = false;
        self.out.clear();
        self.deadlines.clear();
        let req = || RequestError::Stopped(reason.clone());
        for (_, (_, pending)) in self.pending.drain() {
            match pending {
                Pending::Join { .. } | Pending::CatchUpLeave { .. } => {}
                Pending::Leave { reply } => {
                    let _ = reply.send(Err(req()));
                }
                Pending::Presence { reply } => {
                    let _ = reply.send(Err(req()));
                }
                Pending::Publish { reply } => {
                    let _ = reply.send(Err(PublishError::Stopped(reason.clone())));
                }
                Pending::Rpc { reply, .. } => {
                    let _ = reply.send(Err(req()));
                }
                Pending::Refresh { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(req()));
                    }
                }
            }
        }
        for (_, room) in std::mem::take(&mut self.rooms) {
            for w in room.waiters {
                let _ = w.send(Err(req()));
            }
        }
        for b in std::mem::take(&mut self.buffer) {
            let _ = b.reply.send(Err(PublishError::Stopped(reason.clone())));
        }
        self.count_buffered();
    }

    /// Fails the requests whose deadline passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some((_, pending)) = self.pending.remove(&id) else {
                continue;
            };
            let timeout = self.ack_timeout;
            match pending {
                // The room stays wanted: a late `joined` still counts, and
                // the next connection rejoins it.
                Pending::Join { room } => {
                    if let Some(r) = self.rooms.get_mut(&room) {
                        for w in r.waiters.drain(..) {
                            let _ = w.send(Err(RequestError::Timeout(timeout)));
                        }
                    }
                }
                Pending::CatchUpLeave { room } => self.caught_up(&room),
                Pending::Leave { reply } => {
                    let _ = reply.send(Err(RequestError::Timeout(timeout)));
                }
                Pending::Presence { reply } => {
                    let _ = reply.send(Err(RequestError::Timeout(timeout)));
                }
                Pending::Publish { reply } => {
                    let _ = reply.send(Err(PublishError::Timeout(timeout)));
                }
                Pending::Rpc { reply, timeout } => {
                    let _ = reply.send(Err(RequestError::Timeout(timeout)));
                }
                Pending::Refresh { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(RequestError::Timeout(timeout)));
                    }
                }
            }
        }
    }

    // ---- commands -------------------------------------------------------

    pub(crate) fn join(&mut self, room: String, presence: bool, reply: JoinReply, now: Instant) {
        let online = self.online;
        let r = self.rooms.entry(room.clone()).or_insert_with(Room::new);
        let newly_watching = presence && !r.presence;
        r.presence |= presence;
        match r.phase {
            Phase::Joined if !newly_watching => {
                let joined = Joined {
                    room,
                    offset: r.last,
                    epoch: r.epoch.clone().unwrap_or_default(),
                };
                let _ = reply.send(Ok(joined));
            }
            // Already in (or joining): a repeated join switches presence
            // events on; the room's phase does not change.
            Phase::Joined | Phase::Joining { .. } | Phase::CatchingUp => {
                r.waiters.push(reply);
                if newly_watching {
                    self.send_join_frame(&room, None, now);
                }
            }
            Phase::Idle => {
                r.waiters.push(reply);
                if online {
                    self.send_join(&room, now);
                }
            }
        }
    }

    pub(crate) fn leave(&mut self, room: String, reply: Reply<()>, now: Instant) {
        let Some(r) = self.rooms.remove(&room) else {
            let _ = reply.send(Ok(()));
            return;
        };
        for w in r.waiters {
            let _ = w.send(Err(RequestError::Cancelled));
        }
        if !self.online || r.phase == Phase::Idle {
            let _ = reply.send(Ok(()));
            return;
        }
        let id = self.id();
        self.send(&ClientFrame::Leave {
            room: room.into(),
            id: Some(id),
        });
        self.track(id, Pending::Leave { reply }, now);
    }

    pub(crate) fn presence(
        &mut self,
        room: String,
        reply: Reply<Vec<PresenceMember>>,
        now: Instant,
    ) {
        if !self.online {
            let _ = reply.send(Err(RequestError::NotConnected));
            return;
        }
        let id = self.id();
        self.send(&ClientFrame::Presence {
            room: room.into(),
            id: Some(id),
        });
        self.track(id, Pending::Presence { reply }, now);
    }

    pub(crate) fn publish(
        &mut self,
        room: String,
        data: Box<RawValue>,
        options: PublishOptions,
        reply: PublishReply,
        now: Instant,
    ) {
        if self.online {
            return self.send_publish(room, &data, options, reply, now);
        }
        // Callers that went away no longer hold their place.
        self.buffer.retain(|b| !b.reply.is_closed());
        if self.buffer.len() >= self.publish_buffer {
            let data = serde_json::from_str(data.get()).unwrap_or(serde_json::Value::Null);
            let _ = reply.send(Err(PublishError::BufferFull {
                capacity: self.publish_buffer,
                data,
            }));
        } else {
            self.buffer.push_back(Buffered {
                room,
                data,
                options,
                reply,
            });
        }
        self.count_buffered();
    }

    /// Sends `rpc` if connected; an rpc is never buffered. `timeout`
    /// replaces the ack timeout for this call.
    pub(crate) fn rpc(
        &mut self,
        method: String,
        data: Box<RawValue>,
        timeout: Option<Duration>,
        reply: RpcReply,
        now: Instant,
    ) {
        if reply.is_closed() {
            // The caller went away before it was sent.
            return;
        }
        if !self.online {
            let _ = reply.send(Err(RequestError::NotConnected));
            return;
        }
        let id = self.id();
        self.send(&ClientFrame::Rpc {
            method: method.into(),
            data: Some(&data),
            id,
        });
        let timeout = timeout.unwrap_or(self.ack_timeout);
        self.track_for(id, Pending::Rpc { reply, timeout }, now, timeout);
    }

    /// Sends `refresh` with the new token if connected. The token itself is
    /// the connection task's business.
    pub(crate) fn refresh(&mut self, token: &str, reply: Option<Reply<Option<u64>>>, now: Instant) {
        if !self.online {
            if let Some(reply) = reply {
                let _ = reply.send(Err(RequestError::NotConnected));
            }
            return;
        }
        let id = self.id();
        self.send(&ClientFrame::Refresh {
            token: token.into(),
            id: Some(id),
        });
        self.track(id, Pending::Refresh { reply }, now);
    }

    // ---- sending ----------------------------------------------------------

    fn id(&mut self) -> u64 {
        self.next_id = if self.next_id >= MAX_ID {
            1
        } else {
            self.next_id + 1
        };
        self.next_id
    }

    fn send(&mut self, frame: &ClientFrame<'_>) {
        match serde_json::to_string(frame) {
            Ok(text) => self.out.push(text),
            Err(e) => tracing::error!(error = %e, "a client frame failed to serialize"),
        }
    }

    fn track(&mut self, id: u64, pending: Pending, now: Instant) {
        self.track_for(id, pending, now, self.ack_timeout);
    }

    fn track_for(&mut self, id: u64, pending: Pending, now: Instant, timeout: Duration) {
        // A timeout too long to add to the clock is "never", within reason.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        self.deadlines.insert((deadline, id));
        self.pending.insert(id, (deadline, pending));
    }

    fn take_pending(&mut self, id: u64) -> Option<Pending> {
        let (deadline, pending) = self.pending.remove(&id)?;
        self.deadlines.remove(&(deadline, id));
        Some(pending)
    }

    /// Joins `room` on this connection, recovering from its last position
    /// when one is known.
    fn send_join(&mut self, room: &str, now: Instant) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let since = r.epoch.clone().map(|epoch| (r.last, epoch));
        r.phase = Phase::Joining {
            recovering: since.is_some(),
            fresh_max: 0,
        };
        self.send_join_frame(room, since, now);
    }

    fn send_join_frame(&mut self, room: &str, since: Option<(u64, String)>, now: Instant) {
        let presence = self.rooms.get(room).is_some_and(|r| r.presence);
        let id = self.id();
        // Across an epoch change the server replays the new epoch after a
        // `reset`, in this one round trip (a server without it answers
        // `recovered: false`, and the catch-up asks again).
        let replay_new_epoch = since.is_some();
        self.send(&ClientFrame::Join {
            room: room.into(),
            id: Some(id),
            since: since.map(|(offset, epoch)| Since {
                offset,
                epoch: epoch.into(),
            }),
            presence,
            replay_new_epoch,
        });
        self.track(
            id,
            Pending::Join {
                room: room.to_string(),
            },
            now,
        );
    }

    fn send_publish(
        &mut self,
        room: String,
        data: &RawValue,
        options: PublishOptions,
        reply: PublishReply,
        now: Instant,
    ) {
        let id = self.id();
        self.send(&ClientFrame::Publish {
            idempotency_key: options.key.map(Into::into),
            room: room.into(),
            data,
            id: Some(id),
            except_self: options.except_self,
        });
        self.track(id, Pending::Publish { reply }, now);
    }

    fn count_buffered(&self) {
        self.buffered_count
            .store(self.buffer.len(), Ordering::Relaxed);
    }
}

mod inbound;
mod user;

pub(crate) use user::with_user_stream;
#[cfg(test)]
mod tests;
