//! What the server sends, applied to the [`State`]: replies matched to
//! their requests by `id`, room messages through the dedupe, `joined`
//! through the recovery rules (and the catch-up of a new epoch).

use std::sync::Arc;

use serde::Deserialize;
use switchboard_protocol::client::ClientFrame;
use switchboard_protocol::server::{self, ServerFrame};
use tokio::time::Instant;

use super::{Pending, Phase, State};
use crate::client::{Ack, Joined};
use crate::error::{PublishError, RequestError, ServerError};
use crate::event::{Event, Message, PresenceChange, PresenceEvent, Target};

/// The `code` string of an error frame, as the server sent it.
fn raw_code(text: &str) -> String {
    #[derive(Deserialize)]
    struct Code {
        code: String,
    }
    serde_json::from_str::<Code>(text)
        .map(|c| c.code)
        .unwrap_or_else(|_| "unknown".into())
}

impl State {
    /// Handles one text frame from the server (after `welcome`).
    pub(crate) fn frame(&mut self, text: &str, now: Instant) {
        let frame = match ServerFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => return self.unparsed(text, e),
        };
        match frame {
            ServerFrame::Welcome(_) => {
                tracing::debug!("ignoring a second welcome");
            }
            ServerFrame::Joined(j) => {
                if let Some(id) = j.id {
                    self.take_pending(id);
                }
                self.on_joined(j, now);
            }
            ServerFrame::Reset(r) => self.on_reset(r),
            ServerFrame::Left(l) => self.on_left(l),
            ServerFrame::Message(m) => self.on_message(m),
            ServerFrame::Ack(a) => match self.take_pending(a.id) {
                Some(Pending::Publish { reply }) => {
                    let _ = reply.send(Ok(Ack {
                        offset: a.offset,
                        duplicate: a.duplicate,
                    }));
                }
                other => self.unexpected("ack", a.id, other),
            },
            ServerFrame::Error(e) => {
                // A code this version does not know parses as `Unknown`:
                // keep the server's own string for the application.
                let code = match e.code {
                    switchboard_protocol::ErrorCode::Unknown => raw_code(text),
                    known => known.as_str().to_string(),
                };
                let error = ServerError {
                    code,
                    message: e.message,
                    reason: e.reason,
                };
                self.on_error(e.id, error);
            }
            ServerFrame::Refreshed(r) => match r.id.and_then(|id| self.take_pending(id)) {
                Some(Pending::Refresh { reply }) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(r.expires_at));
                    }
                }
                other => self.unexpected("refreshed", r.id.unwrap_or_default(), other),
            },
            ServerFrame::Presence(p) => match p.id.and_then(|id| self.take_pending(id)) {
                Some(Pending::Presence { reply }) => {
                    let _ = reply.send(Ok(p.members));
                }
                other => self.unexpected("presence", p.id.unwrap_or_default(), other),
            },
            ServerFrame::PresenceEvent(p) => self.on_presence_event(p),
            ServerFrame::RpcResult(r) => match self.take_pending(r.id) {
                Some(Pending::Rpc { reply, .. }) => {
                    let _ = reply.send(Ok(r.data));
                }
                other => self.unexpected("rpc_result", r.id, other),
            },
        }
    }

    /// A frame `ServerFrame::parse` refused: an error frame with a code this
    /// version does not know is still an error; anything else is skipped.
    fn unparsed(&mut self, text: &str, e: serde_json::Error) {
        #[derive(Deserialize)]
        struct AnyError {
            #[serde(rename = "type")]
            kind: String,
            id: Option<u64>,
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            reason: Option<String>,
        }
        match serde_json::from_str::<AnyError>(text) {
            Ok(err) if err.kind == "error" => self.on_error(
                err.id,
                ServerError {
                    code: err.code,
                    message: err.message,
                    reason: err.reason,
                },
            ),
            _ => tracing::debug!(error = %e, "skipping a frame this client does not understand"),
        }
    }

    fn on_joined(&mut self, j: server::Joined, now: Instant) {
        let Some(r) = self.rooms.get_mut(&j.room) else {
            // Left meanwhile.
            return;
        };
        let same_epoch = r.epoch.as_deref() == Some(j.epoch.as_str());
        let mut catch_up = false;
        match r.phase {
            Phase::Idle | Phase::CatchingUp => return,
            Phase::Joining {
                recovering,
                fresh_max,
            } => {
                let gap = match j.recovered {
                    Some(recovered) => !recovered,
                    // A server that does not recover: a gap if anything
                    // was published since.
                    None => recovering && (!same_epoch || j.offset > r.last),
                };
                if recovering && gap {
                    // A new epoch's messages all came after ours; the
                    // server may still have them.
                    catch_up = j.recovered.is_some() && !same_epoch && j.offset > 0;
                    r.last = if catch_up { 0 } else { j.offset };
                    if !r.catching_up {
                        let _ = self.events.send(Event::RecoveryFailed {
                            room: j.room.clone(),
                        });
                    }
                } else if recovering && same_epoch {
                    r.last = r.last.max(j.offset);
                } else if recovering {
                    r.last = j.offset;
                } else {
                    r.last = fresh_max.max(j.offset);
                }
                r.epoch = Some(j.epoch.clone());
                r.phase = Phase::Joined;
                r.catching_up = false;
            }
            Phase::Joined => {
                if !same_epoch {
                    r.epoch = Some(j.epoch.clone());
                    r.last = j.offset;
                }
            }
        }
        let joined = Joined {
            room: j.room,
            offset: j.offset,
            epoch: j.epoch,
        };
        for w in r.waiters.drain(..) {
            let _ = w.send(Ok(joined.clone()));
        }
        if catch_up {
            self.start_catch_up(&joined.room, now);
        }
    }

    /// A rejoin's `since` is of an epoch the room no longer has: the loss
    /// is reported, and the replay that follows (up to `joined`) is of the
    /// new epoch, after the `reset`'s offset.
    fn on_reset(&mut self, reset: server::Reset) {
        let Some(r) = self.rooms.get_mut(&reset.room) else {
            return;
        };
        if !matches!(
            r.phase,
            Phase::Joining {
                recovering: true,
                ..
            }
        ) {
            tracing::debug!(room = reset.room, "ignoring a reset outside a rejoin");
            return;
        }
        if !r.catching_up {
            r.catching_up = true;
            let _ = self.events.send(Event::RecoveryFailed {
                room: reset.room.clone(),
            });
        }
        r.epoch = Some(reset.epoch);
        r.last = reset.offset;
    }

    /// Leaves and rejoins `room` with `since` offset 0 of its (new) epoch,
    /// so the server replays the whole epoch. See [`Phase::CatchingUp`].
    fn start_catch_up(&mut self, room: &str, now: Instant) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.phase = Phase::CatchingUp;
        r.catching_up = true;
        let since = r.epoch.clone().map(|epoch| (0, epoch));
        let id = self.id();
        self.send(&ClientFrame::Leave {
            room: room.into(),
            id: Some(id),
        });
        self.track(
            id,
            Pending::CatchUpLeave {
                room: room.to_string(),
            },
            now,
        );
        self.send_join_frame(room, since, now);
    }

    /// The catch-up's `leave` took effect: what comes next is the replay.
    pub(super) fn caught_up(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room)
            && r.phase == Phase::CatchingUp
        {
            r.phase = Phase::Joining {
                recovering: true,
                fresh_max: 0,
            };
        }
    }

    fn on_left(&mut self, l: server::Left) {
        match l.id {
            Some(id) => match self.take_pending(id) {
                Some(Pending::Leave { reply }) => {
                    let _ = reply.send(Ok(()));
                }
                Some(Pending::CatchUpLeave { room }) => self.caught_up(&room),
                other => self.unexpected("left", id, other),
            },
            // The server took the connection out of the room (a refresh
            // narrowed the room claims).
            None => {
                if let Some(r) = self.rooms.remove(&l.room) {
                    for w in r.waiters {
                        let _ = w.send(Err(RequestError::Cancelled));
                    }
                    self.emit(Event::Left { room: l.room });
                }
            }
        }
    }

    fn on_message(&mut self, m: server::Message) {
        let target = match (m.room, m.user, m.broadcast) {
            (Some(room), _, _) => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    // Left, or never joined.
                    return;
                };
                if let Some(offset) = m.offset {
                    match &mut r.phase {
                        Phase::Idle | Phase::CatchingUp => return,
                        Phase::Joining {
                            recovering: false,
                            fresh_max,
                        } => *fresh_max = (*fresh_max).max(offset),
                        Phase::Joining { .. } | Phase::Joined => {
                            if offset <= r.last {
                                tracing::trace!(room, offset, "duplicate skipped");
                                return;
                            }
                            r.last = offset;
                        }
                    }
                }
                Target::Room(room)
            }
            (None, Some(user), _) => {
                if !self.user_message(m.offset) {
                    return;
                }
                Target::User(user)
            }
            (None, None, true) => Target::Broadcast,
            (None, None, false) => {
                tracing::debug!("skipping a message without a target");
                return;
            }
        };
        self.emit(Event::Message(Message {
            target,
            offset: m.offset,
            from: m.from,
            data: Arc::from(m.data),
        }));
    }

    fn on_presence_event(&mut self, p: server::PresenceEvent) {
        #[derive(Deserialize)]
        struct Data {
            event: String,
            user: String,
            #[serde(default)]
            conn: String,
        }
        let data: Data = match serde_json::from_str(p.data.get()) {
            Ok(data) => data,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a malformed presence event");
                return;
            }
        };
        let change = match data.event.as_str() {
            "join" => PresenceChange::Join,
            "leave" => PresenceChange::Leave,
            _ => PresenceChange::Other(data.event),
        };
        self.emit(Event::Presence(PresenceEvent {
            room: p.room,
            change,
            user: data.user,
            conn: data.conn,
        }));
    }

    fn on_error(&mut self, id: Option<u64>, error: ServerError) {
        let pending = id.and_then(|id| self.take_pending(id));
        match pending {
            None => self.emit(Event::ServerError(error)),
            Some(Pending::Join { room }) => self.on_join_error(&room, error),
            Some(Pending::CatchUpLeave { room }) => self.caught_up(&room),
            Some(Pending::Leave { reply }) => {
                // Not in the room is what a leave wants.
                let result = if error.code == "not_joined" {
                    Ok(())
                } else {
                    Err(RequestError::Rejected(error))
                };
                let _ = reply.send(result);
            }
            Some(Pending::Presence { reply }) => {
                let _ = reply.send(Err(RequestError::Rejected(error)));
            }
            Some(Pending::Rpc { reply, .. }) => {
                let _ = reply.send(Err(RequestError::Rejected(error)));
            }
            Some(Pending::Publish { reply }) => {
                let _ = reply.send(Err(PublishError::Rejected(error)));
            }
            Some(Pending::Refresh { reply: Some(reply) }) => {
                let _ = reply.send(Err(RequestError::Rejected(error)));
            }
            Some(Pending::Refresh { reply: None }) => self.emit(Event::ServerError(error)),
        }
    }

    fn on_join_error(&mut self, room: &str, error: ServerError) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.phase == Phase::Joined {
            // A repeated join (for presence) failed: still in the room.
            for w in r.waiters.drain(..) {
                let _ = w.send(Err(RequestError::Rejected(error.clone())));
            }
            return;
        }
        let Some(r) = self.rooms.remove(room) else {
            return;
        };
        if r.waiters.is_empty() {
            self.emit(Event::JoinFailed {
                room: room.to_string(),
                error,
            });
            return;
        }
        for w in r.waiters {
            let _ = w.send(Err(RequestError::Rejected(error.clone())));
        }
    }

    fn unexpected(&self, kind: &str, id: u64, pending: Option<Pending>) {
        // A reply after its request timed out, or a server bug.
        tracing::debug!(kind, id, other = ?pending.is_some(), "reply matches no pending request");
    }
}
