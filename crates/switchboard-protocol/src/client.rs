//! Frames a client sends (`join`, `leave`, `publish`, `refresh`), and the parser the server uses to read them.
//!
//! The parser borrows from the input: the `data` of a publish stays the exact
//! JSON text the client sent ([`RawValue`]), so the server forwards it without
//! decoding and re-encoding it. Unknown fields are ignored, so newer clients
//! can talk to older servers.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;

/// The largest `id` a client may use: the largest integer a JavaScript number
/// holds exactly (2^53 - 1).
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A valid client frame.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame<'a> {
    /// Join a room: receive what is published there from now on.
    Join {
        /// The room to join.
        room: Cow<'a, str>,
        /// Asks for the `joined` reply to carry this id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Recover what was published after this position (a reconnecting
        /// client's last offset and the room's epoch).
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<Since<'a>>,
        /// Also receive `presence_event` frames when members join and leave.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        presence: bool,
        /// When `since` is of an epoch the room no longer has, replay what
        /// the new epoch's history holds, after a `reset` frame, instead of
        /// nothing.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        replay_new_epoch: bool,
    },
    /// Ask who is in a room.
    Presence {
        /// The room.
        room: Cow<'a, str>,
        /// Asks for the reply to carry this id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room to leave.
        room: Cow<'a, str>,
        /// Asks for the `left` reply to carry this id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Publish `data` to every member of a room.
    Publish {
        /// The target room.
        room: Cow<'a, str>,
        /// Any JSON value, forwarded verbatim.
        #[serde(borrow)]
        data: &'a RawValue,
        /// When present, the server answers with an `ack` (or an `error`)
        /// carrying this id once the broker accepted (or refused) the message.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// When present, a publish by the same user to the same room with the
        /// same key within the server's idempotency window is delivered once:
        /// a retry is acknowledged with the first one's offset and
        /// `duplicate: true`.
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<Cow<'a, str>>,
        /// When `true`, every member of the room receives the message but
        /// the publishing connection itself (the user's other connections
        /// do). The message still goes into the room's history.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        except_self: bool,
    },
    /// Replace the connection's credentials before they expire. The token
    /// must be valid and name the same user.
    Refresh {
        /// The new token.
        token: Cow<'a, str>,
        /// Asks for the `refreshed` reply (or `error`) to carry this id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Ask the application something: the endpoint's RPC handler answers
    /// with `rpc_result` (or `error`) carrying the same id.
    Rpc {
        /// What to call: 1 to 128 characters from `A-Z a-z 0-9 _ - . : /`.
        method: Cow<'a, str>,
        /// Any JSON value; `null` when the frame has none.
        #[serde(borrow, skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
        /// Required: the reply carries it.
        id: u64,
    },
}

/// The longest RPC method name, in bytes.
pub const MAX_METHOD_LEN: usize = 128;

/// Checks an RPC method name: 1 to [`MAX_METHOD_LEN`] characters from
/// `A-Z a-z 0-9 _ - . : /`.
pub fn validate_method(method: &str) -> Result<(), String> {
    if method.is_empty() || method.len() > MAX_METHOD_LEN {
        return Err(format!("must be 1 to {MAX_METHOD_LEN} characters"));
    }
    match method
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')))
    {
        Some(c) => Err(format!("may not contain {c:?}")),
        None => Ok(()),
    }
}

impl PartialEq for ClientFrame<'_> {
    fn eq(&self, other: &Self) -> bool {
        use ClientFrame::*;
        match (self, other) {
            (
                Join {
                    room: a,
                    id: x,
                    since: s,
                    presence: p,
                    replay_new_epoch: r,
                },
                Join {
                    room: b,
                    id: y,
                    since: t,
                    presence: q,
                    replay_new_epoch: u,
                },
            ) => a == b && x == y && s == t && p == q && r == u,
            (Presence { room: a, id: x }, Presence { room: b, id: y })
            | (Leave { room: a, id: x }, Leave { room: b, id: y })
            | (Refresh { token: a, id: x }, Refresh { token: b, id: y }) => a == b && x == y,
            (
                Publish {
                    room: a,
                    data: d,
                    id: x,
                    idempotency_key: k,
                    except_self: s,
                },
                Publish {
                    room: b,
                    data: e,
                    id: y,
                    idempotency_key: l,
                    except_self: t,
                },
            ) => a == b && d.get() == e.get() && x == y && k == l && s == t,
            (
                Rpc {
                    method: a,
                    data: d,
                    id: x,
                },
                Rpc {
                    method: b,
                    data: e,
                    id: y,
                },
            ) => a == b && d.map(RawValue::get) == e.map(RawValue::get) && x == y,
            _ => false,
        }
    }
}

impl ClientFrame<'_> {
    /// The frame's `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::Refresh { .. } => "refresh",
            ClientFrame::Rpc { .. } => "rpc",
        }
    }

    /// The `id` the client attached, if any.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Presence { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Refresh { id, .. } => *id,
            ClientFrame::Rpc { id, .. } => Some(*id),
        }
    }
}

/// Why a client frame was refused. Becomes an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// The frame's `id`, when it had a valid one, so the client can match the
    /// error to its request.
    pub id: Option<u64>,
    /// The stable error code.
    pub code: ErrorCode,
    /// A human-readable explanation naming the problem.
    pub message: String,
}

impl FrameError {
    /// Builds an error.
    pub fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        FrameError {
            id,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for FrameError {}

/// Every field is kept raw first, so that each one can be checked on its own
/// and the error can name it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    room: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    token: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    presence: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    idempotency_key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    except_self: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    replay_new_epoch: Option<&'a RawValue>,
}

/// A position in a room's offset sequence, sent by a reconnecting client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since<'a> {
    /// The last offset the client received.
    pub offset: u64,
    /// The epoch that offset belongs to (from `joined`).
    #[serde(borrow)]
    pub epoch: Cow<'a, str>,
}

fn since<'a>(raw: &'a RawValue, id: Option<u64>) -> Result<Since<'a>, FrameError> {
    serde_json::from_str::<Since<'a>>(raw.get()).map_err(|_| {
        FrameError::new(
            id,
            ErrorCode::InvalidField,
            "field \"since\" must be {\"offset\": <integer>, \"epoch\": <string>}",
        )
    })
}

/// An optional boolean field: absent is `false`; anything but `true` or
/// `false` is refused with the field's name.
fn bool_field(raw: Option<&RawValue>, name: &str, id: Option<u64>) -> Result<bool, FrameError> {
    match raw {
        None => Ok(false),
        Some(raw) => serde_json::from_str::<bool>(raw.get()).map_err(|_| {
            FrameError::new(
                id,
                ErrorCode::InvalidField,
                format!("field \"{name}\" must be a boolean"),
            )
        }),
    }
}

/// Maps a present field (even `null`) to `Some`, so "missing" and "null" differ.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// Parses one text frame from a client.
///
/// Checks the frame's shape only; room name rules and permissions are the
/// server's business (see [`crate::names`]).
pub fn parse(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    // serde would also accept an array for a struct; the protocol does not.
    if !text.trim_start().starts_with('{') {
        return Err(FrameError::new(
            None,
            ErrorCode::BadJson,
            "a frame must be a JSON object",
        ));
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        // An array or scalar was refused above, so a data error is about
        // the object's contents (a duplicate field, for example).
        let message = if e.is_data() {
            format!("invalid frame: {e}")
        } else {
            format!("malformed JSON: {e}")
        };
        FrameError::new(None, ErrorCode::BadJson, message)
    })?;
    let id = match env.id {
        None => None,
        Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
            Ok(n) if n <= MAX_ID => Some(n),
            _ => {
                return Err(FrameError::new(
                    None,
                    ErrorCode::InvalidField,
                    format!("field \"id\" must be an integer from 0 to {MAX_ID}"),
                ));
            }
        },
    };
    if crate::depth::nests_deeper_than(text.as_bytes(), crate::depth::MAX_DEPTH) {
        return Err(FrameError::new(
            id,
            ErrorCode::BadJson,
            format!("JSON nested deeper than {} levels", crate::depth::MAX_DEPTH),
        ));
    }
    let kind = match env.kind {
        None => {
            return Err(FrameError::new(
                id,
                ErrorCode::MissingField,
                "missing field \"type\"",
            ));
        }
        Some(raw) => string_field(raw, "type", id)?,
    };
    match kind.as_ref() {
        "join" => Ok(ClientFrame::Join {
            room: room(env.room, id)?,
            id,
            since: env.since.map(|raw| since(raw, id)).transpose()?,
            presence: bool_field(env.presence, "presence", id)?,
            replay_new_epoch: bool_field(env.replay_new_epoch, "replay_new_epoch", id)?,
        }),
        "presence" => Ok(ClientFrame::Presence {
            room: room(env.room, id)?,
            id,
        }),
        "leave" => Ok(ClientFrame::Leave {
            room: room(env.room, id)?,
            id,
        }),
        "publish" => {
            let room = room(env.room, id)?;
            let data = env.data.ok_or_else(|| {
                FrameError::new(id, ErrorCode::MissingField, "missing field \"data\"")
            })?;
            let idempotency_key = match env.idempotency_key {
                None => None,
                Some(raw) => {
                    let key = string_field(raw, "idempotency_key", id)?;
                    crate::names::validate_idempotency_key(&key).map_err(|e| {
                        FrameError::new(
                            id,
                            ErrorCode::InvalidField,
                            format!("field \"idempotency_key\" {e}"),
                        )
                    })?;
                    Some(key)
                }
            };
            Ok(ClientFrame::Publish {
                room,
                data,
                id,
                idempotency_key,
                except_self: bool_field(env.except_self, "except_self", id)?,
            })
        }
        "refresh" => match env.token {
            None => Err(FrameError::new(
                id,
                ErrorCode::MissingField,
                "missing field \"token\"",
            )),
            Some(raw) => Ok(ClientFrame::Refresh {
                token: string_field(raw, "token", id)?,
                id,
            }),
        },
        "rpc" => {
            let Some(id) = id else {
                return Err(FrameError::new(
                    None,
                    ErrorCode::MissingField,
                    "missing field \"id\": an rpc's reply is matched by it",
                ));
            };
            let method = match env.method {
                None => {
                    return Err(FrameError::new(
                        Some(id),
                        ErrorCode::MissingField,
                        "missing field \"method\"",
                    ));
                }
                Some(raw) => string_field(raw, "method", Some(id))?,
            };
            validate_method(&method).map_err(|e| {
                FrameError::new(
                    Some(id),
                    ErrorCode::InvalidField,
                    format!("field \"method\" {e}"),
                )
            })?;
            Ok(ClientFrame::Rpc {
                method,
                data: env.data,
                id,
            })
        }
        other => Err(FrameError::new(
            id,
            ErrorCode::UnknownType,
            format!("unknown frame type {other:?}"),
        )),
    }
}

fn room<'a>(raw: Option<&'a RawValue>, id: Option<u64>) -> Result<Cow<'a, str>, FrameError> {
    match raw {
        None => Err(FrameError::new(
            id,
            ErrorCode::MissingField,
            "missing field \"room\"",
        )),
        Some(raw) => string_field(raw, "room", id),
    }
}

fn string_field<'a>(
    raw: &'a RawValue,
    name: &str,
    id: Option<u64>,
) -> Result<Cow<'a, str>, FrameError> {
    serde_json::from_str::<BorrowedStr<'a>>(raw.get())
        .map(|s| s.0)
        .map_err(|_| {
            FrameError::new(
                id,
                ErrorCode::InvalidField,
                format!("field \"{name}\" must be a string"),
            )
        })
}

#[cfg(test)]
mod tests;
