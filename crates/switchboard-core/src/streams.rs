//! A connection's user stream: the offsets, history and recovery of the
//! messages sent to its user, as rooms have them.
//!
//! A client asks for it at the upgrade, with the `user_stream` query
//! parameter ([`StreamRequest`]): `new` to learn where the stream stands,
//! or `<offset>:<epoch>` to receive what it missed since. The node then
//! joins the connection to its user's messages through the hub's seam
//! (the same one a room `join` with `since` goes through): live messages
//! are held while the position or the replay is read, the `welcome` (with
//! its `user_stream` field) and the replay are queued first, and nothing at
//! or below the position read is delivered after them.
//!
//! Guests have no user stream: a guest's id is made for one connection, so
//! no later connection can resume it. Their request is ignored and their
//! `welcome` has no `user_stream`.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::server::UserStream;

use crate::broker::{Broker, BrokerError, Delivery, Position, Recovery, user_stream};
use crate::hub::encode_delivery;

/// What a connection asked of its user stream at the upgrade: the value of
/// the `user_stream` query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRequest {
    /// `user_stream=new`: tell me where my stream stands; I have no
    /// position yet.
    New,
    /// `user_stream=<offset>:<epoch>`: replay what was sent after this
    /// position.
    Since(Position),
}

impl StreamRequest {
    /// The request in a query string (`a=1&user_stream=…`), if it has one.
    /// `Err` names what is wrong with a malformed value.
    pub fn from_query(query: Option<&str>) -> Result<Option<StreamRequest>, String> {
        let Some(query) = query else {
            return Ok(None);
        };
        let mut found = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != "user_stream" {
                continue;
            }
            if found.is_some() {
                return Err("user_stream given more than once".into());
            }
            found = Some(StreamRequest::parse(&percent_decode(value)?)?);
        }
        Ok(found)
    }

    /// Parses `new` or `<offset>:<epoch>` (the epoch as `welcome` gave it:
    /// 1 to 64 characters of `0-9 a-z A-Z`).
    pub fn parse(value: &str) -> Result<StreamRequest, String> {
        if value == "new" {
            return Ok(StreamRequest::New);
        }
        let bad = || {
            format!(
                "user_stream must be \"new\" or \"<offset>:<epoch>\", not {:?}",
                value.chars().take(100).collect::<String>()
            )
        };
        let (offset, epoch) = value.split_once(':').ok_or_else(bad)?;
        let digits = !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit());
        let offset: u64 = offset.parse().ok().filter(|_| digits).ok_or_else(bad)?;
        let epoch_ok =
            (1..=64).contains(&epoch.len()) && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !epoch_ok {
            return Err(bad());
        }
        Ok(StreamRequest::Since(Position {
            offset,
            epoch: Arc::from(epoch),
        }))
    }
}

/// A query value with its `%XX` escapes decoded (URL libraries write the
/// colon as `%3A`).
fn percent_decode(value: &str) -> Result<String, String> {
    let bad = || format!("user_stream is not a valid query value: {value:?}");
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// What opening a user stream read: the frames that follow `welcome` (the
/// replay), the `welcome`'s `user_stream` field, and the offset the replay
/// reaches (the seam).
pub(crate) struct Opened {
    pub(crate) replay: Vec<Bytes>,
    pub(crate) field: UserStream,
    pub(crate) after: u64,
}

/// Reads `user`'s stream for a connection that asked with `request`: its
/// position, or the replay after the client's position. When continuity
/// broke because the epoch changed, the new epoch's messages are replayed
/// if the history still holds all of them (as a room `join` with
/// `replay_new_epoch` does); otherwise nothing is.
pub(crate) async fn open(
    broker: &dyn Broker,
    user: &str,
    request: &StreamRequest,
) -> Result<Opened, BrokerError> {
    let stream = user_stream(user);
    let since = match request {
        StreamRequest::New => {
            let position = broker.position(&stream).await?;
            return Ok(opened(Vec::new(), position, None, None));
        }
        StreamRequest::Since(since) => since,
    };
    Ok(match broker.recover(&stream, since).await? {
        Recovery::Recovered { messages, position } => {
            opened(messages, position, Some(true), Some(since.offset))
        }
        Recovery::Gap { position } if position.epoch != since.epoch => {
            let start = Position {
                offset: 0,
                epoch: position.epoch.clone(),
            };
            match broker.recover(&stream, &start).await? {
                Recovery::Recovered { messages, position } => {
                    opened(messages, position, Some(false), Some(0))
                }
                Recovery::Gap { position } => {
                    let after = position.offset;
                    opened(Vec::new(), position, Some(false), Some(after))
                }
            }
        }
        Recovery::Gap { position } => {
            let after = position.offset;
            opened(Vec::new(), position, Some(false), Some(after))
        }
    })
}

fn opened(
    messages: Vec<Delivery>,
    position: Position,
    recovered: Option<bool>,
    replay_after: Option<u64>,
) -> Opened {
    Opened {
        replay: messages.iter().map(encode_delivery).collect(),
        after: position.offset,
        field: UserStream {
            offset: position.offset,
            epoch: position.epoch.to_string(),
            recovered,
            replay_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_the_query_string() {
        assert_eq!(StreamRequest::from_query(None), Ok(None));
        assert_eq!(StreamRequest::from_query(Some("token=x")), Ok(None));
        assert_eq!(
            StreamRequest::from_query(Some("token=x&user_stream=new")),
            Ok(Some(StreamRequest::New))
        );
        assert_eq!(
            StreamRequest::from_query(Some("user_stream=12:ab09")),
            Ok(Some(StreamRequest::Since(Position {
                offset: 12,
                epoch: Arc::from("ab09"),
            })))
        );
        assert_eq!(
            StreamRequest::from_query(Some("user_stream=7%3Aab")),
            Ok(Some(StreamRequest::Since(Position {
                offset: 7,
                epoch: Arc::from("ab"),
            })))
        );
        for bad in [
            "user_stream=7%3",
            "user_stream=7%zzab",
            "user_stream=",
            "user_stream=12",
            "user_stream=-1:ab",
            "user_stream=+1:ab",
            "user_stream=1:",
            "user_stream=1:a%20b",
            "user_stream=99999999999999999999:ab",
            "user_stream=new&user_stream=new",
        ] {
            assert!(StreamRequest::from_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
