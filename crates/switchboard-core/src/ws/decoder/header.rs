//! Frame headers: parsing and validating them as soon as their bytes
//! arrive, and unmasking payloads.

use super::DecodeError;
use crate::ws::frame::{MAX_CONTROL_PAYLOAD, OpCode};

/// First header byte: FIN flag.
pub(super) const FIN_BIT: u8 = 0x80;
/// First header byte: RSV1, RSV2 and RSV3 (no extension is negotiated).
const RSV_BITS: u8 = 0x70;
/// First header byte: opcode.
const OPCODE_BITS: u8 = 0x0F;
/// Second header byte: MASK flag.
pub(super) const MASK_BIT: u8 = 0x80;
/// Second header byte: 7-bit payload length.
const LEN_BITS: u8 = 0x7F;

/// A validated frame header.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameHeader {
    pub(super) fin: bool,
    pub(super) opcode: OpCode,
    pub(super) mask: [u8; 4],
    /// Payload length, already checked against the limits.
    pub(super) len: usize,
}

/// Message-size context needed to validate a header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_message_size: usize,
    /// Bytes already received of a fragmented message, if one is open.
    pub(super) in_message: Option<usize>,
}

/// Parses and validates a frame header at the start of `buf`.
///
/// Returns `Ok(None)` if more bytes are needed. Errors are reported as soon as
/// the bytes that prove them are available.
pub(super) fn parse_header(
    buf: &[u8],
    limits: Limits,
) -> Result<Option<(FrameHeader, usize)>, DecodeError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let fin = first & FIN_BIT != 0;
    let opcode = check_first_byte(first, limits.in_message.is_some())?;
    if second & MASK_BIT == 0 {
        return Err(DecodeError::Unmasked);
    }
    let len7 = second & LEN_BITS;
    if opcode.is_control() {
        check_control(fin, len7)?;
    }
    let len_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let len = read_length(len7, &buf[2..2 + len_bytes])?;
    let len = check_size(len, opcode, limits)?;
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[header_len - 4..header_len]);
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        len,
    };
    Ok(Some((header, header_len)))
}

/// Validates RSV bits, opcode and fragmentation sequencing.
fn check_first_byte(first: u8, in_message: bool) -> Result<OpCode, DecodeError> {
    if first & RSV_BITS != 0 {
        return Err(DecodeError::ReservedBits);
    }
    let raw = first & OPCODE_BITS;
    let opcode = OpCode::from_u8(raw).ok_or(DecodeError::ReservedOpCode(raw))?;
    match opcode {
        OpCode::Continuation if !in_message => Err(DecodeError::UnexpectedContinuation),
        OpCode::Text | OpCode::Binary if in_message => Err(DecodeError::ExpectedContinuation),
        _ => Ok(opcode),
    }
}

/// Control frames must be final and carry at most 125 bytes (so they always
/// use the 7-bit length).
fn check_control(fin: bool, len7: u8) -> Result<(), DecodeError> {
    if !fin {
        return Err(DecodeError::FragmentedControl);
    }
    if usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(DecodeError::ControlTooLong);
    }
    Ok(())
}

/// Decodes the payload length from the 7-bit field and its extension.
fn read_length(len7: u8, extension: &[u8]) -> Result<u64, DecodeError> {
    let len = match *extension {
        [] => u64::from(len7),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => return Err(DecodeError::InvalidLength),
    };
    if len >> 63 != 0 {
        return Err(DecodeError::InvalidLength);
    }
    Ok(len)
}

/// Checks a data frame's length, plus what was already received of its
/// message, against the maximum message size.
fn check_size(len: u64, opcode: OpCode, limits: Limits) -> Result<usize, DecodeError> {
    if opcode.is_control() {
        // Already bounded by `check_control`.
        return usize::try_from(len).map_err(|_| DecodeError::ControlTooLong);
    }
    let received = match opcode {
        OpCode::Continuation => limits.in_message.unwrap_or(0),
        _ => 0,
    };
    let available = limits.max_message_size.saturating_sub(received);
    match usize::try_from(len) {
        Ok(len) if len <= available => Ok(len),
        _ => Err(DecodeError::MessageTooBig),
    }
}

/// Unmasks `data`, the part of a payload that starts `offset` bytes into
/// it: the mask's phase continues from there.
pub(super) fn unmask_from(data: &mut [u8], mut mask: [u8; 4], offset: usize) {
    mask.rotate_left(offset % 4);
    unmask(data, mask);
}

/// XORs `data` with the repeating 4-byte `mask`, eight bytes at a time.
pub(super) fn unmask(data: &mut [u8], mask: [u8; 4]) {
    if mask == [0; 4] {
        return;
    }
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Whole chunks are a multiple of 4 bytes, so the mask phase restarts at 0.
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}
