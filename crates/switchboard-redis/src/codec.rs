//! The compact encoding of a delivery on a channel and in a room's history.
//!
//! ```text
//! payload := "1" kind offset ":" from_len ":" from data   e.g. 1r42:3:ana{"a":1}
//!          | "2" kind offset ":" from_len ":" from except_len ":" except data
//! entry   := ms " " payload                      (history LIST items)
//! ```
//!
//! - `1` and `2` are the format versions: `2` carries the id of a
//!   connection the message is not delivered to (`except`), and is written
//!   only for such messages, so that nodes of an earlier release read every
//!   other message.
//! - `kind` is one byte: `r` room, `u` user, `b` broadcast, `p` presence.
//! - `offset` is decimal, empty for topics without offsets.
//! - `from_len` (and `except_len`) is the decimal byte length of `from`
//!   (`except`), empty when there is none.
//! - `data` is the JSON text as the publishing node validated it, carried
//!   as opaque bytes to the end of the payload.
//! - `ms` is Redis's clock (milliseconds) when the message was published.
//!
//! A text header keeps the room publish script simple: Lua prepends
//! `version .. "r" .. offset .. ":"` to the tail the node built. The
//! topic's name is not repeated: it is the channel's (or the history key's)
//! name.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::broker::{Delivery, Topic};

/// The kind letter of a topic.
pub(crate) fn kind(topic: &Topic) -> u8 {
    match topic {
        Topic::Room(_) => b'r',
        Topic::User(_) => b'u',
        Topic::Broadcast => b'b',
        Topic::Presence(_) => b'p',
    }
}

/// The format version a payload with (or without) an `except` is written in.
pub(crate) fn version(except: Option<&str>) -> u8 {
    if except.is_some() { b'2' } else { b'1' }
}

/// `from_len ":" from [except_len ":" except] data`: everything after the
/// offset. The `except` part is there when `except` is (format `2`).
pub(crate) fn tail(from: Option<&str>, except: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(42 + from.map_or(0, str::len) + except.map_or(0, str::len) + data.len());
    let mut field = |value: Option<&str>| {
        if let Some(v) = value {
            out.extend_from_slice(v.len().to_string().as_bytes());
        }
        out.push(b':');
        out.extend_from_slice(value.unwrap_or_default().as_bytes());
    };
    field(from);
    if except.is_some() {
        field(except);
    }
    out.extend_from_slice(data);
    out
}

/// A whole payload for a topic without offsets.
pub(crate) fn payload(kind: u8, from: Option<&str>, except: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = vec![version(except), kind, b':'];
    out.extend_from_slice(&tail(from, except, data));
    out
}

/// A decoded payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub(crate) kind: u8,
    pub(crate) offset: Option<u64>,
    pub(crate) from: Option<&'a str>,
    pub(crate) except: Option<&'a str>,
    pub(crate) data: &'a [u8],
}

impl Decoded<'_> {
    pub(crate) fn into_delivery(self, topic: Topic) -> Delivery {
        Delivery {
            topic,
            offset: self.offset,
            data: Bytes::copy_from_slice(self.data),
            from: self.from.map(Arc::from),
            except: self.except.map(Arc::from),
        }
    }
}

/// Decodes a payload; `None` when it is malformed.
pub(crate) fn decode(payload: &[u8]) -> Option<Decoded<'_>> {
    let [version @ (b'1' | b'2'), kind, rest @ ..] = payload else {
        return None;
    };
    let (offset, rest) = number(rest)?;
    let (from, rest) = string(rest)?;
    let (except, data) = if *version == b'2' {
        string(rest)?
    } else {
        (None, rest)
    };
    Some(Decoded {
        kind: *kind,
        offset,
        from,
        except,
        data,
    })
}

/// Decodes a history entry: the payload after the timestamp.
pub(crate) fn decode_entry(entry: &[u8]) -> Option<Decoded<'_>> {
    let space = entry.iter().position(|&b| b == b' ')?;
    decode(&entry[space + 1..])
}

/// `len ":" text`, or `":"` for none.
fn string(bytes: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let (len, rest) = number(bytes)?;
    match len {
        Some(n) => {
            let n = usize::try_from(n).ok()?;
            let text = rest.get(..n)?;
            Some((Some(std::str::from_utf8(text).ok()?), &rest[n..]))
        }
        None => Some((None, rest)),
    }
}

/// Optional decimal digits up to a `:`.
fn number(bytes: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let digits = &bytes[..colon];
    let value = if digits.is_empty() {
        None
    } else if digits.iter().all(u8::is_ascii_digit) {
        Some(std::str::from_utf8(digits).ok()?.parse().ok()?)
    } else {
        return None;
    };
    Some((value, &bytes[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let p = payload(b'u', Some("ana:1"), None, br#"{"a":1}"#);
        assert_eq!(p, br#"1u:5:ana:1{"a":1}"#);
        let d = decode(&p).unwrap();
        assert_eq!(
            d,
            Decoded {
                kind: b'u',
                offset: None,
                from: Some("ana:1"),
                except: None,
                data: br#"{"a":1}"#,
            }
        );
        let p = payload(b'b', None, Some("0a1b2c3d-7"), br#""x""#);
        assert_eq!(p, br#"2b::10:0a1b2c3d-7"x""#);
        let d = decode(&p).unwrap();
        assert_eq!(
            (d.from, d.except, d.data),
            (None, Some("0a1b2c3d-7"), &br#""x""#[..])
        );
        let p = payload(b'b', None, None, b"7");
        assert_eq!(decode(&p).unwrap().from, None);
        assert_eq!(decode(&p).unwrap().data, b"7");
    }

    #[test]
    fn room_payloads_and_entries_carry_the_offset() {
        // What the publish script builds: version .. "r" .. offset .. ":" .. tail.
        let mut p = b"1r42:".to_vec();
        p.extend_from_slice(&tail(Some("é"), None, b"null"));
        let d = decode(&p).unwrap();
        assert_eq!((d.kind, d.offset, d.from), (b'r', Some(42), Some("é")));
        let mut entry = b"1700000000000 ".to_vec();
        entry.extend_from_slice(&p);
        assert_eq!(decode_entry(&entry).unwrap(), d);
        let mut p = vec![version(Some("n-1")), b'r'];
        p.extend_from_slice(b"43:");
        p.extend_from_slice(&tail(Some("ana"), Some("n-1"), b"{}"));
        assert_eq!(p, b"2r43:3:ana3:n-1{}");
        let d = decode(&p).unwrap();
        assert_eq!(
            (d.offset, d.from, d.except, d.data),
            (Some(43), Some("ana"), Some("n-1"), &b"{}"[..])
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in [
            &b""[..],
            b"3u::x",
            b"2u::x",
            b"2u::5:ab",
            b"1u",
            b"1ux::",
            b"1u:9:ab",
            b"1u:2:\xff\xfe",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
