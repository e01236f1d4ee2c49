//! Checking what a connection receives: every frame is parsed, counted
//! and held against the connection's requests and its positions in each
//! stream (see the parent module).

use serde_json::Value;

use super::{Pending, Position, Session};
use crate::soak::tally::{Tally, kind};

impl Session {
    /// Checks one text frame against what this connection knows.
    pub(super) fn check(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            self.tally()
                .problem(kind::UNEXPECTED_FRAME, format!("not JSON: {text}"));
            return;
        };
        match frame["type"].as_str().unwrap_or_default() {
            "message" => self.message(&frame),
            "presence_event" => {
                Tally::inc(&self.tally().presence_events);
                let room = frame["room"].as_str().unwrap_or_default();
                if !self.watching.contains(room) {
                    self.unexpected("presence event of a room not watched", &frame);
                }
            }
            "joined" | "left" | "ack" | "presence" | "error" => self.reply(&frame),
            _ => self.unexpected("frame", &frame),
        }
    }

    fn unexpected(&self, what: &str, frame: &Value) {
        self.tally().problem(
            kind::UNEXPECTED_FRAME,
            format!("{}: {what}: {frame}", self.conn),
        );
    }

    fn hole(&self, stream: &str, last: u64, frame: &Value) {
        self.tally().problem(
            kind::HOLE,
            format!("{}: {stream} after offset {last}: {frame}", self.conn),
        );
    }

    fn message(&mut self, frame: &Value) {
        let tally = self.world.tally.clone();
        Tally::inc(&tally.delivered);
        let offset = frame["offset"].as_u64();
        if let Some(room) = frame["room"].as_str() {
            let Some(position) = self.rooms.get_mut(room) else {
                self.unexpected("message of a room not joined", frame);
                return;
            };
            let Some(offset) = offset else {
                self.unexpected("room message without an offset", frame);
                return;
            };
            let last = position.offset;
            position.offset = offset;
            if offset != last + 1 {
                self.hole(room, last, frame);
            }
            if self.replaying.contains(room) {
                Tally::inc(&tally.replayed);
            }
        } else if frame["user"].is_string() {
            if frame["user"] != self.user.as_str() {
                self.unexpected("message for another user", frame);
            }
            let Some(offset) = offset else {
                self.unexpected("user message without an offset", frame);
                return;
            };
            if offset <= self.user_replay_to {
                Tally::inc(&tally.replayed);
            }
            match self.user_stream.as_mut() {
                Some(position) => {
                    let last = position.offset;
                    position.offset = offset;
                    if offset != last + 1 {
                        self.hole("user stream", last, frame);
                    }
                }
                None if self.user_from_first => {
                    self.user_stream = Some(Position {
                        offset,
                        epoch: String::new(),
                    });
                }
                None => {}
            }
        } else if frame["broadcast"] == true {
            let Some(offset) = offset else {
                self.unexpected("broadcast without an offset", frame);
                return;
            };
            if let Some(last) = self.broadcast
                && offset != last + 1
            {
                self.hole("broadcasts", last, frame);
            }
            self.broadcast = Some(offset);
        } else {
            self.unexpected("message of nothing", frame);
        }
    }

    fn reply(&mut self, frame: &Value) {
        let tally = self.world.tally.clone();
        let Some(pending) = frame["id"].as_u64().and_then(|id| self.pending.remove(&id)) else {
            self.unexpected("reply to nothing asked", frame);
            return;
        };
        let kind = frame["type"].as_str().unwrap_or_default();
        match (pending, kind) {
            (Pending::Refusal, "error") => Tally::inc(&tally.expected_errors),
            (Pending::Publish, "error") => {
                tally.problem(kind::FAILED_PUBLISH, format!("{}: {frame}", self.conn));
                tally.problem(kind::ERROR_FRAME, format!("{}: {frame}", self.conn));
            }
            (_, "error") => tally.problem(kind::ERROR_FRAME, format!("{}: {frame}", self.conn)),
            (Pending::Join { room, since }, "joined") => self.joined(&room, since, frame),
            (Pending::Leave { room }, "left") => {
                self.rooms.remove(&room);
                self.watching.remove(&room);
            }
            (Pending::Publish, "ack") => Tally::inc(&tally.client_acks),
            (Pending::Presence, "presence") => Tally::inc(&tally.presence_replies),
            (pending, _) => self.unexpected(&format!("reply to {pending:?}"), frame),
        }
    }

    fn joined(&mut self, room: &str, since: bool, frame: &Value) {
        let now = Position::of(frame);
        if !since {
            self.rooms.insert(room.to_string(), now);
            return;
        }
        self.replaying.remove(room);
        let reached = self.rooms.get(room).cloned();
        let whole = frame["recovered"] == true && reached.as_ref() == Some(&now);
        if !whole {
            self.tally().problem(
                kind::NOT_RECOVERED,
                format!("{}: {room} from {reached:?}: {frame}", self.conn),
            );
        }
        self.rooms.insert(room.to_string(), now);
    }
}
