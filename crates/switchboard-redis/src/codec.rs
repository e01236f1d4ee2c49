//! The compact encoding of a delivery on a channel and in a room's history.
//!
//! ```text
//! payload := "1" kind offset ":" from_len ":" from data   e.g. 1r42:3:ana{"a":1}
//! entry   := ms " " payload                      (history LIST items)
//! ```
//!
//! - `1` is the format version.
//! - `kind` is one byte: `r` room, `u` user, `b` broadcast, `p` presence.
//! - `offset` is decimal, empty for topics without offsets.
//! - `from_len` is the decimal byte length of `from`, empty when there is no
//!   publishing user.
//! - `data` is the JSON text as the publishing node validated it, carried
//!   as opaque bytes to the end of the payload.
//! - `ms` is Redis's clock (milliseconds) when the message was published.
//!
//! A text header keeps the room publish script simple: Lua prepends
//! `"1r" .. offset .. ":"` to the tail the node built. The topic's name is
//! not repeated: it is the channel's (or the history key's) name.

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

/// `from_len ":" from data`: everything after the offset.
pub(crate) fn tail(from: Option<&str>, data: &[u8]) -> Vec<u8> {
    let from_len = from.map(|f| f.len().to_string()).unwrap_or_default();
    let from = from.unwrap_or_default();
    let mut out = Vec::with_capacity(from_len.len() + 1 + from.len() + data.len());
    out.extend_from_slice(from_len.as_bytes());
    out.push(b':');
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A whole payload for a topic without offsets.
pub(crate) fn payload(kind: u8, from: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = vec![b'1', kind, b':'];
    out.extend_from_slice(&tail(from, data));
    out
}

/// A decoded payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub(crate) kind: u8,
    pub(crate) offset: Option<u64>,
    pub(crate) from: Option<&'a str>,
    pub(crate) data: &'a [u8],
}

impl Decoded<'_> {
    pub(crate) fn into_delivery(self, topic: Topic) -> Delivery {
        Delivery {
            topic,
            offset: self.offset,
            data: Bytes::copy_from_slice(self.data),
            from: self.from.map(Arc::from),
        }
    }
}

/// Decodes a payload; `None` when it is malformed.
pub(crate) fn decode(payload: &[u8]) -> Option<Decoded<'_>> {
    let [b'1', kind, rest @ ..] = payload else {
        return None;
    };
    let (offset, rest) = number(rest)?;
    let (from_len, rest) = number(rest)?;
    let (from, data) = match from_len {
        Some(n) => {
            let n = usize::try_from(n).ok()?;
            let from = rest.get(..n)?;
            (Some(std::str::from_utf8(from).ok()?), &rest[n..])
        }
        None => (None, rest),
    };
    Some(Decoded {
        kind: *kind,
        offset,
        from,
        data,
    })
}

/// Decodes a history entry: the payload after the timestamp.
pub(crate) fn decode_entry(entry: &[u8]) -> Option<Decoded<'_>> {
    let space = entry.iter().position(|&b| b == b' ')?;
    decode(&entry[space + 1..])
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
        let p = payload(b'u', Some("ana:1"), br#"{"a":1}"#);
        assert_eq!(p, br#"1u:5:ana:1{"a":1}"#);
        let d = decode(&p).unwrap();
        assert_eq!(
            d,
            Decoded {
                kind: b'u',
                offset: None,
                from: Some("ana:1"),
                data: br#"{"a":1}"#,
            }
        );
        let p = payload(b'b', None, b"7");
        assert_eq!(decode(&p).unwrap().from, None);
        assert_eq!(decode(&p).unwrap().data, b"7");
    }

    #[test]
    fn room_payloads_and_entries_carry_the_offset() {
        // What the publish script builds: "1r" .. offset .. ":" .. tail.
        let mut p = b"1r42:".to_vec();
        p.extend_from_slice(&tail(Some("é"), b"null"));
        let d = decode(&p).unwrap();
        assert_eq!((d.kind, d.offset, d.from), (b'r', Some(42), Some("é")));
        let mut entry = b"1700000000000 ".to_vec();
        entry.extend_from_slice(&p);
        assert_eq!(decode_entry(&entry).unwrap(), d);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in [
            &b""[..],
            b"2u::x",
            b"1u",
            b"1ux::",
            b"1u:9:ab",
            b"1u:2:\xff\xfe",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
