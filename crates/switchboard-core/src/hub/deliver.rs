//! Fan-out: a delivery from the broker encoded once and queued for every
//! local recipient.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use switchboard_protocol::CloseCode;
use switchboard_protocol::server::{MessageOut, Target};

use std::sync::Arc;

use dashmap::mapref::one::Ref;

use super::{ConnId, DISCONNECT_USER, Hub, StreamIndex, StreamMembers, disconnect_reason};

use crate::broker::{Delivery, DeliveryHandler, Topic};
use crate::ws::{FrameBuilder, OpCode};

/// Encodes a delivery as one text frame.
pub(crate) fn encode_delivery(d: &Delivery) -> Bytes {
    let target = match &d.topic {
        Topic::Room(room) => Target::Room(room),
        Topic::User(user) => Target::User(user),
        Topic::Broadcast => Target::Broadcast,
        Topic::Presence(room) => Target::Presence(room),
    };
    // The data was validated as JSON where it entered the system, and it is
    // UTF-8 because it came from a JSON text.
    let data = std::str::from_utf8(&d.data).unwrap_or("null");
    let msg = MessageOut {
        target,
        offset: d.offset,
        from: d.from.as_deref(),
        data,
    };
    let mut fb = FrameBuilder::with_capacity(OpCode::Text, 64 + d.data.len());
    // Writing into memory cannot fail.
    let _ = msg.write_to(&mut fb);
    fb.finish()
}

impl DeliveryHandler for Hub {
    /// Fans `d` out to this node's recipients, and measures it: the
    /// recipients (`fanout_recipients`) and the time from here to the frame
    /// queued for the last of them (`delivery_latency_seconds`), one
    /// observation per message.
    fn deliver(&self, d: &Delivery) -> usize {
        let started = Instant::now();
        let queued = self.fan_out(d);
        self.stats
            .delivery_latency
            .observe_duration(started.elapsed());
        self.stats.fanout.observe(queued);
        queued as usize
    }
}

impl Hub {
    /// Whether `d` follows the last delivery of its stream (a room's or a
    /// user's) on this node, and records it as the last. On a hole, sends
    /// the stream's local members to recover ([`Hub::resync`]) and returns
    /// false: `d` must not be delivered as if nothing were missing. A
    /// delivery without an offset is in no sequence and always follows.
    fn in_sequence(&self, d: &Delivery, members: &StreamMembers) -> bool {
        let Some(offset) = d.offset else {
            return true;
        };
        let last = members.last.swap(offset, Ordering::Relaxed);
        if last != 0 && offset != last + 1 {
            self.resync(&d.topic, members, last, offset);
            return false;
        }
        true
    }

    /// Fans `d` out to the members of one stream (a room's or a user's),
    /// `members` being its entry in `index`: checks the sequence, queues the
    /// frame for the live members and the joining ones, and promotes the
    /// joining ones that caught up once the entry is released.
    fn deliver_stream(
        &self,
        index: &StreamIndex,
        name: &str,
        members: Ref<'_, Arc<str>, StreamMembers>,
        d: &Delivery,
        skip: Option<ConnId>,
    ) -> u64 {
        if !self.in_sequence(d, &members) {
            return 0;
        }
        let frame = encode_delivery(d);
        let live = self.push_all(&frame, members.live.values_except(skip));
        let (joining, caught_up) = self.deliver_joining(&members, d.offset, &frame, skip);
        drop(members);
        if caught_up {
            Self::promote(index, name);
        }
        live + joining
    }

    fn fan_out(&self, d: &Delivery) -> u64 {
        let skip = self.local_except(d.except.as_deref());
        match &d.topic {
            Topic::Room(name) => {
                let Some(members) = self.rooms.get(name) else {
                    return 0;
                };
                self.deliver_stream(&self.rooms, name, members, d, skip)
            }
            Topic::User(name) => {
                let Some(members) = self.users.get(name) else {
                    return 0;
                };
                if d.from.as_deref() == Some(DISCONNECT_USER) {
                    let reason = disconnect_reason(&d.data);
                    for outbox in members.live.values() {
                        outbox.close(CloseCode::UNAUTHORIZED, reason.clone());
                    }
                    for j in members.joining.lock().values() {
                        j.outbox.close(CloseCode::UNAUTHORIZED, reason.clone());
                    }
                    return 0;
                }
                // The control message above has no offset: it is in no
                // stream.
                self.deliver_stream(&self.users, name, members, d, skip)
            }
            Topic::Broadcast => {
                if self.broadcast.is_empty() {
                    return 0;
                }
                let frame = encode_delivery(d);
                let delivered: u64 = self
                    .broadcast
                    .iter()
                    .filter(|e| Some(*e.key()) != skip)
                    .map(|e| self.push_one(&frame, e.value()))
                    .sum();
                self.stats.deliveries.inc_by(delivered);
                delivered
            }
            Topic::Presence(name) => match self.presence.get(name) {
                Some(members) => self.push_all(&encode_delivery(d), members.values_except(skip)),
                None => 0,
            },
        }
    }
}
