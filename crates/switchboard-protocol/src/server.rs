//! Frames the server sends (`welcome`, `joined`, `left`, `message`, `ack`,
//! `error`, `refreshed`, `presence`, `presence_event`, `rpc_result`).
//!
//! [`ServerFrame`] is the owned form, for clients that parse what arrives and
//! for the server's replies. [`MessageOut`] is the borrowed form of a
//! `message` frame that the server encodes once per fan-out: its `data` is the
//! publisher's JSON text, copied verbatim.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;

/// A frame from the server. Serialized with its `type` tag; parse one with
/// [`ServerFrame::parse`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Welcome(Welcome),
    /// Reply to `join`.
    Joined(Joined),
    /// Before the replay of a `join` whose `since` is of an earlier epoch,
    /// when the join asked for it (`replay_new_epoch`): continuity broke,
    /// and the messages that follow are of the new epoch.
    Reset(Reset),
    /// Reply to `leave`.
    Left(Left),
    /// A delivered message.
    Message(Message),
    /// A publish was accepted by the broker.
    Ack(Ack),
    /// A client frame was refused.
    Error(ErrorFrame),
    /// Reply to `refresh`: the new credentials are in force.
    Refreshed(Refreshed),
    /// Reply to `presence`: who is in a room.
    Presence(Presence),
    /// Reply to `rpc`: the application's answer.
    RpcResult(RpcResult),
    /// A member joined or left a room whose events the client asked for.
    PresenceEvent(PresenceEvent),
}

impl ServerFrame {
    /// Parses a text frame from the server.
    ///
    /// Two passes (the tag, then the body) keep `data` as raw JSON, which a
    /// single pass through serde's internally tagged enums cannot do.
    pub fn parse(text: &str) -> Result<ServerFrame, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let tag: Tag<'_> = serde_json::from_str(text)?;
        Ok(match tag.kind.as_ref() {
            "welcome" => ServerFrame::Welcome(serde_json::from_str(text)?),
            "joined" => ServerFrame::Joined(serde_json::from_str(text)?),
            "reset" => ServerFrame::Reset(serde_json::from_str(text)?),
            "left" => ServerFrame::Left(serde_json::from_str(text)?),
            "message" => ServerFrame::Message(serde_json::from_str(text)?),
            "ack" => ServerFrame::Ack(serde_json::from_str(text)?),
            "error" => ServerFrame::Error(serde_json::from_str(text)?),
            "refreshed" => ServerFrame::Refreshed(serde_json::from_str(text)?),
            "presence" => ServerFrame::Presence(serde_json::from_str(text)?),
            "presence_event" => ServerFrame::PresenceEvent(serde_json::from_str(text)?),
            "rpc_result" => ServerFrame::RpcResult(serde_json::from_str(text)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown frame type {other:?}"
                )));
            }
        })
    }

    /// Serializes the frame to JSON text.
    pub fn to_json(&self) -> String {
        // A frame holds only strings, numbers and already-valid raw JSON, so
        // serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `welcome` frame: who the server thinks you are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The user id the connection was authenticated as (or a generated guest
    /// id).
    pub user: String,
    /// This connection's id, unique within the cluster; useful in logs.
    pub conn: String,
    /// The protocol version spoken, [`crate::SUBPROTOCOL`].
    pub protocol: String,
    /// The server pings every this many milliseconds. Browsers answer pings
    /// without showing them to scripts; clients that do see them may treat a
    /// silence much longer than this as a dead connection.
    pub heartbeat_ms: u64,
    /// Where the user's message stream stands, only when the client asked
    /// for it at the upgrade (the `user_stream` query parameter) and the
    /// connection has a user stream (not a guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_stream: Option<UserStream>,
}

/// The `user_stream` field of `welcome`: the position of the user's
/// message stream when the connection opened, and, for a client that asked
/// to resume, what follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStream {
    /// The offset of the last message sent to the user when the connection
    /// opened (0 if none was). Every user `message` after the replay has a
    /// larger offset.
    pub offset: u64,
    /// Identifies the stream's offset sequence (16 hex digits).
    pub epoch: String,
    /// Only when resuming: `true` when every message after the client's
    /// position follows (the replay); `false` when continuity broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Only when resuming: the replay that follows the `welcome` holds this
    /// epoch's messages with offsets `replay_after + 1 ..= offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_after: Option<u64>,
}

/// The `rpc_result` frame: the application's answer to an `rpc`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcResult {
    /// The `id` of the `rpc`.
    pub id: u64,
    /// The answer, any JSON value, copied verbatim.
    pub data: Box<RawValue>,
}

/// The `joined` frame, the reply to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The room joined.
    pub room: String,
    /// The `id` of the `join`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The offset of the last message published to the room before the join
    /// (0 when none was). Messages received later have larger offsets.
    pub offset: u64,
    /// Identifies the room's offset sequence. When it changes, offsets
    /// restarted and older ones mean nothing.
    pub epoch: String,
    /// Present when the `join` asked to recover (`since`): `true` when every
    /// message after `since` was replayed before this frame; `false` when the
    /// history no longer covers the gap (or the epoch changed) and nothing
    /// of it was replayed, so the client should reload the room's state.
    /// After a [`Reset`], the messages replayed were the new epoch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// The `reset` frame: a rejoin's `since` is of an epoch the room no longer
/// has. What the client holds up to `since` stays as it is; the room's
/// offsets restarted, and the `message` frames that follow, up to the
/// `joined` reply, are the new epoch's messages after `offset`, replayed
/// from its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The room.
    pub room: String,
    /// The `id` of the `join`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The room's new epoch.
    pub epoch: String,
    /// The replay that follows starts after this offset of the new epoch:
    /// `0` when the history holds the whole epoch. Messages of the new epoch
    /// at or below it (when it is above 0) are no longer retained.
    pub offset: u64,
}

/// The `presence` frame, the reply to `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The room.
    pub room: String,
    /// The `id` of the request, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Who is in the room, on every node, sorted by user.
    pub members: Vec<PresenceMember>,
}

/// One user in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The user id.
    pub user: String,
    /// How many of the user's connections are in the room.
    pub connections: u32,
}

/// The `presence_event` frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The room.
    pub room: String,
    /// `{"event":"join"|"leave","user":..,"conn":..}`.
    pub data: Box<RawValue>,
}

/// The `left` frame, the reply to `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The room left.
    pub room: String,
    /// The `id` of the `leave`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// The `ack` frame: a publish was accepted by the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The `id` of the publish.
    pub id: u64,
    /// The offset the room assigned to the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `true` when the publish carried an idempotency key already used
    /// within the window: nothing was delivered this time, and `offset` is
    /// the first publish's. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The `refreshed` frame, the reply to `refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    /// The `id` of the `refresh`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// When the new credentials expire (Unix seconds), if they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// The `error` frame: a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The `id` of the refused frame, when it had a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Stable machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// The application's own machine-readable code for a `refused` error,
    /// when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A delivered message (owned form).
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    /// The room it was published to (room messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The user it was sent to (user messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// True for a broadcast to everyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    /// The offset in the room's, the user's or the broadcast stream
    /// (absent for a message delivered during a broker outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The publishing user; absent when a backend published over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The payload, exactly as published.
    pub data: Box<RawValue>,
}

/// Where a message is going; decides which field of the `message` frame names
/// the target.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A room.
    Room(&'a str),
    /// All connections of one user.
    User(&'a str),
    /// Everyone.
    Broadcast,
    /// Join and leave events of a room (a `presence_event` frame).
    Presence(&'a str),
}

/// The borrowed `message` frame the server encodes once per fan-out.
#[derive(Debug)]
pub struct MessageOut<'a> {
    /// The target.
    pub target: Target<'a>,
    /// The offset in the target's stream (room, user or broadcast).
    pub offset: Option<u64>,
    /// The publishing user, if a client published it.
    pub from: Option<&'a str>,
    /// The payload as JSON text, written verbatim. The caller guarantees it
    /// is valid JSON (it was parsed when it entered the system).
    pub data: &'a str,
}

impl MessageOut<'_> {
    /// Writes the frame's JSON text. Key order is fixed: `type`, the target,
    /// `offset`, `from`, `data`.
    pub fn write_to<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        match self.target {
            Target::Presence(_) => w.write_all(b"{\"type\":\"presence_event\",")?,
            _ => w.write_all(b"{\"type\":\"message\",")?,
        }
        match self.target {
            Target::Presence(room) => {
                w.write_all(b"\"room\":")?;
                serde_json::to_writer(&mut *w, room)?;
            }
            Target::Room(room) => {
                w.write_all(b"\"room\":")?;
                serde_json::to_writer(&mut *w, room)?;
            }
            Target::User(user) => {
                w.write_all(b"\"user\":")?;
                serde_json::to_writer(&mut *w, user)?;
            }
            Target::Broadcast => w.write_all(b"\"broadcast\":true")?,
        }
        if let Some(offset) = self.offset {
            write!(w, ",\"offset\":{offset}")?;
        }
        if let Some(from) = self.from {
            w.write_all(b",\"from\":")?;
            serde_json::to_writer(&mut *w, from)?;
        }
        w.write_all(b",\"data\":")?;
        w.write_all(self.data.as_bytes())?;
        w.write_all(b"}")
    }

    /// The frame's JSON text as a `String`.
    pub fn to_json(&self) -> String {
        let mut v = Vec::with_capacity(64 + self.data.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_result_and_a_refusal_with_the_applications_reason_round_trip() {
        let data = RawValue::from_string(r#"{"n":1}"#.to_string()).unwrap();
        let json = ServerFrame::RpcResult(RpcResult { id: 9, data }).to_json();
        assert_eq!(json, r#"{"type":"rpc_result","id":9,"data":{"n":1}}"#);
        match ServerFrame::parse(&json).unwrap() {
            ServerFrame::RpcResult(r) => assert_eq!((r.id, r.data.get()), (9, r#"{"n":1}"#)),
            other => panic!("unexpected {other:?}"),
        }
        let json = ServerFrame::Error(ErrorFrame {
            id: Some(2),
            code: ErrorCode::Refused,
            message: "out of stock".into(),
            reason: Some("stock".into()),
        })
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"error","id":2,"code":"refused","message":"out of stock","reason":"stock"}"#
        );
    }

    #[test]
    fn message_out_matches_the_owned_form() {
        let data = r#"{"text":"hi"}"#;
        let out = MessageOut {
            target: Target::Room("lobby"),
            offset: Some(3),
            from: Some("an\"a"),
            data,
        };
        let json = out.to_json();
        assert_eq!(
            json,
            r#"{"type":"message","room":"lobby","offset":3,"from":"an\"a","data":{"text":"hi"}}"#
        );
        match ServerFrame::parse(&json).unwrap() {
            ServerFrame::Message(m) => {
                assert_eq!(m.room.as_deref(), Some("lobby"));
                assert_eq!(m.offset, Some(3));
                assert_eq!(m.data.get(), r#"{"text":"hi"}"#);
                assert_eq!(m.from.as_deref(), Some("an\"a"));
                assert!(!m.broadcast);
            }
            other => panic!("unexpected {other:?}"),
        }
        let out = MessageOut {
            target: Target::Broadcast,
            offset: None,
            from: None,
            data,
        };
        assert_eq!(
            out.to_json(),
            r#"{"type":"message","broadcast":true,"data":{"text":"hi"}}"#
        );
    }

    #[test]
    fn error_frame_shape_round_trips() {
        let f = ServerFrame::Error(ErrorFrame {
            reason: None,
            id: Some(2),
            code: ErrorCode::InvalidRoom,
            message: "room must not be empty".into(),
        });
        let json = f.to_json();
        assert_eq!(
            json,
            r#"{"type":"error","id":2,"code":"invalid_room","message":"room must not be empty"}"#
        );
        match ServerFrame::parse(&json).unwrap() {
            ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::InvalidRoom),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_types_are_errors() {
        assert!(ServerFrame::parse(r#"{"type":"nope"}"#).is_err());
    }
}
