//! The RFC 6455 frame decoder, through `switchboard_core::fuzzing`, which
//! states the invariants checked.
//!
//! Input: byte 0 picks the mode (its low two bits), byte 1 the message
//! size limit, byte 2 how many chunk sizes follow (modulo 8), then those
//! bytes; the rest is the body.
//!
//! - Modes 0 and 3: the body is the stream of bytes from the client.
//! - Mode 1: the body lists frames that the harness masks itself, so that
//!   what the fuzzer writes in plain (UTF-8, close codes) arrives intact.
//!   Each frame: its first header byte (FIN, RSV, opcode); a byte whose
//!   bits 0-1 pick the length field (shortest, 16-bit, 64-bit, 64-bit) and bit 2
//!   leaves the frame unmasked; the payload length; four mask bytes; the
//!   payload.
//! - Mode 2: the body is a server frame to encode and read back: a kind
//!   byte (its top bit repeats the payload past 64 KiB), four mask bytes,
//!   the payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::fuzzing;

/// Message size limits around the length forms' boundaries.
const LIMITS: [usize; 18] = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    16,
    64,
    125,
    126,
    127,
    255,
    256,
    65_535,
    65_536,
    1 << 20,
];

fuzz_target!(|data: &[u8]| {
    let [mode, limit, count, rest @ ..] = data else {
        return;
    };
    let max_message = LIMITS[usize::from(*limit) % LIMITS.len()];
    let count = usize::from(*count % 8).min(rest.len());
    let (chunks, body) = rest.split_at(count);
    match mode % 4 {
        1 => fuzzing::decode(&frames(body), max_message, chunks),
        2 => {
            let [kind, m0, m1, m2, m3, payload @ ..] = body else {
                return;
            };
            let payload = if kind & 0x80 != 0 && !payload.is_empty() {
                payload.repeat(65_536 / payload.len() + 1)
            } else {
                payload.to_vec()
            };
            fuzzing::round_trip(*kind, &payload, [*m0, *m1, *m2, *m3], chunks);
        }
        _ => fuzzing::decode(body, max_message, chunks),
    }
});

/// Builds the wire bytes of the frames that `body` lists (see the module
/// docs).
fn frames(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [first, form, len, m0, m1, m2, m3, rest @ ..] = body {
        let len = usize::from(*len).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        body = tail;
        let mask = [*m0, *m1, *m2, *m3];
        let masked = form & 0x04 == 0;
        let mask_bit = if masked { 0x80 } else { 0 };
        out.push(*first);
        match form & 0x03 {
            0 if len <= 125 => out.push(mask_bit | len as u8),
            0 | 1 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        } else {
            out.extend_from_slice(payload);
        }
    }
    out
}
