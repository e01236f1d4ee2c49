//! Entry points for the fuzz targets in `fuzz/`, compiled only with the
//! `fuzzing` feature and hidden from the docs: no part of the API.
//!
//! Each one drives code that is private to this crate (the RFC 6455
//! decoder and encoder) and checks its invariants with assertions, so that
//! a broken invariant is a crash that the fuzzer reports with its input.

use std::io::Write as _;

use crate::ws::decoder::{DecodeError, Decoder, Drained, Message};
use crate::ws::frame::{self, FrameBuilder, OpCode};

/// What a decoder made of a byte stream: the messages, in order, and how it
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Seen>,
    /// The close code of the error the stream ended in; `None` when the
    /// decoder was waiting for more bytes.
    error: Option<u16>,
    /// After an error: whether the bytes after it held the client's close.
    drained: Option<Drained>,
}

/// One decoded message, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// Close status codes a peer may send (RFC 6455 section 7.4 and the IANA
/// registry): 1000-1003, 1007-1014 and the 3000-4999 range for libraries
/// and applications. 1004 is reserved; 1005, 1006 and 1015 must never be
/// sent.
fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Decodes `stream` as client-to-server frames with `max_message` as the
/// message size limit, and checks:
///
/// - no panic;
/// - every message respects its limits: text and binary messages at most
///   `max_message` bytes, text valid UTF-8, pings and pongs at most 125
///   bytes, a close code that may be sent and a reason of at most 123 bytes;
/// - an error is final: asked again, or after more bytes, the decoder gives
///   the same error;
/// - the outcome does not depend on how the bytes arrive: pushed in chunks
///   whose sizes cycle through `chunks` (each byte `n` is a chunk of `n + 1`
///   bytes) and pushed all at once give the same messages, the same end
///   and, after an error, the same verdict on the bytes that follow it;
/// - the outcome is the one a plain, non-incremental reading of RFC 6455
///   (written here, independently of the decoder) gives: the messages, the
///   close code of the error, and whether the client's close frame follows
///   the frame at fault.
pub fn decode(stream: &[u8], max_message: usize, chunks: &[u8]) {
    let whole = run_decoder(stream, max_message, &[]);
    let chunked = run_decoder(stream, max_message, chunks);
    assert_eq!(
        chunked, whole,
        "the outcome depends on how the bytes were split"
    );
    let expected = reference_decode(stream, max_message);
    assert_eq!(whole, expected, "the decoder disagrees with RFC 6455");
}

fn run_decoder(stream: &[u8], max_message: usize, chunks: &[u8]) -> Outcome {
    let mut decoder = Decoder::new(max_message);
    let mut messages = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().map(|&n| usize::from(n) + 1).cycle();
    let mut failed = None;
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        if failed.is_some() {
            decoder.drain(chunk);
            continue;
        }
        assert_eq!(
            decoder.drain(chunk),
            Drained::More,
            "drained before an error"
        );
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(check_message(message, max_message)),
                Ok(None) => break,
                Err(error) => {
                    check_final(&mut decoder, error);
                    failed = Some(error);
                    break;
                }
            }
        }
    }
    Outcome {
        messages,
        error: failed.map(|e| e.close_code()),
        drained: failed.map(|_| decoder.drain(&[])),
    }
}

/// Checks a decoded message against its limits and returns it owned.
fn check_message(message: Message, max_message: usize) -> Seen {
    match message {
        Message::Text(bytes) => {
            assert!(bytes.len() <= max_message, "text message over the limit");
            assert!(
                std::str::from_utf8(&bytes).is_ok(),
                "text message is not UTF-8"
            );
            Seen::Text(bytes.to_vec())
        }
        Message::Binary(bytes) => {
            assert!(bytes.len() <= max_message, "binary message over the limit");
            Seen::Binary(bytes.to_vec())
        }
        Message::Ping(bytes) => {
            assert!(bytes.len() <= 125, "ping payload over 125 bytes");
            Seen::Ping(bytes.to_vec())
        }
        Message::Pong(bytes) => {
            assert!(bytes.len() <= 125, "pong payload over 125 bytes");
            Seen::Pong(bytes.to_vec())
        }
        Message::Close(close) => Seen::Close(close.map(|close| {
            assert!(
                sendable_close_code(close.code),
                "close code {} accepted",
                close.code
            );
            assert!(close.reason.len() <= 123, "close reason over 123 bytes");
            (close.code, close.reason)
        })),
    }
}

/// An error is final: the same error again, whatever arrives after it.
fn check_final(decoder: &mut Decoder, error: DecodeError) {
    assert!(decoder.has_failed(), "an error not recorded");
    assert_eq!(decoder.next_message(), Err(error), "error not repeated");
    // A valid masked text frame ("hi") must not revive a failed decoder.
    decoder.push(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    assert_eq!(
        decoder.next_message(),
        Err(error),
        "error forgotten after more input"
    );
}

/// RFC 6455 section 5, read plainly: the whole input at once, frame by
/// frame, failing at the first violation. A frame's header is judged once
/// all of it (mask included) has arrived, except for what its first two
/// bytes alone prove (reserved bits and opcodes, fragmentation order, an
/// unmasked frame, a control frame that is fragmented or longer than 125
/// bytes). Text is judged as it arrives (section 8.1: fail fast on invalid
/// UTF-8), in a frame still incomplete too.
///
/// After an error the bytes that follow are walked frame by frame, by
/// their lengths alone, looking for the client's close frame (so that the
/// closing handshake can finish): from the header of the frame at fault
/// when the fault is in its header, from its end when it is in its
/// payload; a close frame whose body is at fault is itself the client's
/// close.
fn reference_decode(input: &[u8], max_message: usize) -> Outcome {
    const PROTOCOL_ERROR: u16 = 1002;
    const INVALID_PAYLOAD: u16 = 1007;
    const TOO_BIG: u16 = 1009;
    let mut messages = Vec::new();
    // The fragmented message being assembled: whether it is text, its data.
    let mut open: Option<(bool, Vec<u8>)> = None;
    let mut at = 0;
    // An error: its close code, and where the walk for a close starts
    // (`None`: the frame at fault was the close).
    let fail = |messages: Vec<Seen>, code, walk_from: Option<usize>| Outcome {
        messages,
        error: Some(code),
        drained: Some(match walk_from {
            None => Drained::PeerClosed,
            Some(from) => walk_to_close(input.get(from..).unwrap_or(&[])),
        }),
    };
    while let [b0, b1, ..] = input[at..] {
        let rest = &input[at..];
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return fail(messages, PROTOCOL_ERROR, Some(at));
        }
        let control = opcode >= 8;
        let in_order = match opcode {
            0x0 => open.is_some(),
            0x1 | 0x2 => open.is_none(),
            0x8..=0xA => true,
            _ => false,
        };
        if !in_order || b1 & 0x80 == 0 {
            return fail(messages, PROTOCOL_ERROR, Some(at));
        }
        let len7 = b1 & 0x7F;
        if control && (!fin || len7 > 125) {
            return fail(messages, PROTOCOL_ERROR, Some(at));
        }
        let extension = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + extension + 4;
        if rest.len() < header_len {
            break;
        }
        let len = rest[2..2 + extension]
            .iter()
            .fold(if extension == 0 { u64::from(len7) } else { 0 }, |n, &b| {
                n << 8 | u64::from(b)
            });
        if len >> 63 != 0 {
            return fail(messages, PROTOCOL_ERROR, Some(at));
        }
        if !control {
            let before = match (&open, opcode) {
                (Some((_, data)), 0) => data.len() as u64,
                _ => 0,
            };
            if before + len > max_message as u64 {
                return fail(messages, TOO_BIG, Some(at));
            }
        }
        let len = len as usize;
        let end = at + header_len + len;
        let mask = &rest[header_len - 4..header_len];
        let available = &rest[header_len..rest.len().min(header_len + len)];
        let payload: Vec<u8> = available
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let complete = payload.len() == len;
        if !complete {
            // Text is checked as far as it has arrived.
            let text = match opcode {
                0x1 => true,
                0x0 => open.as_ref().is_some_and(|(text, _)| *text),
                _ => false,
            };
            let earlier = open.as_ref().map_or(&[][..], |(_, data)| &data[..]);
            if text && !utf8_so_far(&[earlier, &payload].concat(), false) {
                return fail(messages, INVALID_PAYLOAD, Some(end));
            }
            break;
        }
        at = end;
        match opcode {
            0x9 => messages.push(Seen::Ping(payload)),
            0xA => messages.push(Seen::Pong(payload)),
            0x8 => {
                let close = match payload.as_slice() {
                    [] => None,
                    [_] => return fail(messages, PROTOCOL_ERROR, None),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from(*hi) << 8 | u16::from(*lo);
                        if !sendable_close_code(code) {
                            return fail(messages, PROTOCOL_ERROR, None);
                        }
                        match std::str::from_utf8(reason) {
                            Ok(reason) => Some((code, reason.to_owned())),
                            Err(_) => return fail(messages, INVALID_PAYLOAD, None),
                        }
                    }
                };
                messages.push(Seen::Close(close));
            }
            _ => {
                let (text, mut data) = match open.take() {
                    Some(open) => open,
                    None => (opcode == 0x1, Vec::new()),
                };
                data.extend_from_slice(&payload);
                if text && !utf8_so_far(&data, fin) {
                    return fail(messages, INVALID_PAYLOAD, Some(end));
                }
                if !fin {
                    open = Some((text, data));
                } else if text {
                    messages.push(Seen::Text(data));
                } else {
                    messages.push(Seen::Binary(data));
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
        drained: None,
    }
}

/// Whether `text` is valid UTF-8, or (unless `complete`) valid but for a
/// code point cut off at its end.
fn utf8_so_far(text: &[u8], complete: bool) -> bool {
    match std::str::from_utf8(text) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none(),
    }
}

/// Walks frames by their length fields alone (any opcode, masked or not)
/// until one whose opcode is Close: its header, once whole, is the
/// client's close. A length with the top bit set loses the frame
/// boundaries.
fn walk_to_close(mut bytes: &[u8]) -> Drained {
    while let [b0, b1, ..] = *bytes {
        let extension = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + extension + if b1 & 0x80 != 0 { 4 } else { 0 };
        if bytes.len() < header_len {
            break;
        }
        if b0 & 0x0F == 0x8 {
            return Drained::PeerClosed;
        }
        let len = bytes[2..2 + extension].iter().fold(
            if extension == 0 {
                u64::from(b1 & 0x7F)
            } else {
                0
            },
            |n, &b| n << 8 | u64::from(b),
        );
        if len >> 63 != 0 {
            break;
        }
        let skip = (header_len as u64).saturating_add(len);
        bytes = bytes
            .get(usize::try_from(skip).unwrap_or(usize::MAX)..)
            .unwrap_or(&[]);
    }
    Drained::More
}

/// Encodes one server frame and reads it back, checking:
///
/// - `FrameBuilder` written through `io::Write` in pieces whose sizes cycle
///   through `pieces` (growing past its capacity) builds the same bytes as
///   the one-shot encoder;
/// - the header is final, unmasked, of the right opcode, with the length in
///   its shortest form, and `transport::frame_payload` finds the payload;
/// - masked with `mask` as a client would, the frame decodes to the same
///   message with a limit of exactly its size, and a data frame one byte
///   over the limit is refused with 1009.
///
/// `kind` picks the frame: text (the payload made UTF-8), binary, ping,
/// pong (both cut to 125 bytes) or close (a code from the first two bytes,
/// when it may be sent, and a reason from the rest, cut to 123 bytes at a
/// character boundary).
pub fn round_trip(kind: u8, payload: &[u8], mask: [u8; 4], pieces: &[u8]) {
    let text;
    let (opcode, payload, expected) = match kind % 5 {
        0 => {
            text = String::from_utf8_lossy(payload).into_owned();
            let bytes = text.as_bytes();
            (OpCode::Text, bytes, Seen::Text(bytes.to_vec()))
        }
        1 => (OpCode::Binary, payload, Seen::Binary(payload.to_vec())),
        2 => {
            let p = &payload[..payload.len().min(125)];
            (OpCode::Ping, p, Seen::Ping(p.to_vec()))
        }
        3 => {
            let p = &payload[..payload.len().min(125)];
            (OpCode::Pong, p, Seen::Pong(p.to_vec()))
        }
        _ => return round_trip_close(payload, mask),
    };
    let encoded = frame::encode(opcode, payload);

    let mut builder = FrameBuilder::with_capacity(opcode, payload.len() / 2);
    let mut rest = payload;
    let mut sizes = pieces.iter().map(|&n| usize::from(n) + 1).cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(size);
        builder
            .write_all(piece)
            .expect("writing to a frame builder");
        rest = tail;
    }
    assert_eq!(builder.finish(), encoded, "builder and encoder differ");

    check_header(&encoded, opcode, payload.len());
    assert_eq!(
        crate::transport::frame_payload(&encoded),
        Some(payload),
        "frame_payload missed the payload"
    );
    let masked = mask_frame(&encoded, mask);
    let outcome = run_decoder(&masked, payload.len(), &[]);
    assert_eq!(
        outcome,
        Outcome {
            messages: vec![expected],
            error: None,
            drained: None,
        },
        "a server frame did not read back"
    );
    if !opcode.is_control() && !payload.is_empty() {
        let outcome = run_decoder(&masked, payload.len() - 1, &[]);
        assert_eq!(
            outcome,
            Outcome {
                messages: Vec::new(),
                error: Some(1009),
                drained: Some(Drained::More),
            },
            "a message over the limit was not refused"
        );
    }
}

fn round_trip_close(payload: &[u8], mask: [u8; 4]) {
    let [hi, lo, reason @ ..] = payload else {
        return;
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    if !sendable_close_code(code) {
        return;
    }
    let reason = String::from_utf8_lossy(reason);
    let encoded = frame::encode_close(code, &reason);
    // The longest prefix of whole characters that fits in 123 bytes.
    let mut kept = String::new();
    for c in reason.chars() {
        if kept.len() + c.len_utf8() > 123 {
            break;
        }
        kept.push(c);
    }
    check_header(&encoded, OpCode::Close, 2 + kept.len());
    let outcome = run_decoder(&mask_frame(&encoded, mask), 0, &[]);
    assert_eq!(
        outcome,
        Outcome {
            messages: vec![Seen::Close(Some((code, kept)))],
            error: None,
            drained: None,
        },
        "a close frame did not read back"
    );
}

/// A server frame's header: FIN, no RSV bits, the opcode, no mask, and the
/// payload length in the shortest of the three forms.
fn check_header(frame: &[u8], opcode: OpCode, len: usize) {
    assert_eq!(frame[0], 0x80 | opcode.as_u8(), "first header byte");
    let header: Vec<u8> = match len {
        0..=125 => vec![len as u8],
        126..=0xFFFF => [&[126][..], &(len as u16).to_be_bytes()].concat(),
        _ => [&[127][..], &(len as u64).to_be_bytes()].concat(),
    };
    assert_eq!(&frame[1..1 + header.len()], &header[..], "length field");
    assert_eq!(frame.len(), 1 + header.len() + len, "frame length");
}

/// A server frame as a client would send it: the mask bit set, the key
/// after the length, the payload XORed with it.
fn mask_frame(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header_len = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header_len].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&mask);
    out.extend(
        frame[header_len..]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m),
    );
    out
}
