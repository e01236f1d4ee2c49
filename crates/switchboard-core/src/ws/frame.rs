//! Opcodes, close codes and encoding of server-to-client frames.
//!
//! Frames sent by a server are never masked (RFC 6455 section 5.1), so the
//! header of an outgoing frame is 2, 4 or 10 bytes long depending on the
//! payload length. [`FrameBuilder`] lets a caller write the payload first
//! (for example with `serde_json::to_writer`) and then prepend the header in
//! headroom reserved at the front of the same allocation, so the payload is
//! never copied.

use std::io;

use bytes::{Buf, Bytes, BytesMut};

/// Largest payload a control frame (Close, Ping, Pong) may carry.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest close reason that fits in a control frame next to the 2-byte code.
pub(crate) const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Longest header of an unmasked frame: 2 bytes plus a 64-bit length.
const HEADROOM: usize = 10;

/// FIN bit of the first header byte.
const FIN: u8 = 0x80;

/// Frame opcode (RFC 6455 section 5.2). Reserved opcodes are not represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: UTF-8 text message.
    Text,
    /// 0x2: binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Parses the 4-bit opcode field; returns `None` for reserved opcodes.
    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// Returns the 4-bit wire value of the opcode.
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Returns `true` for Close, Ping and Pong.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Returns `true` if `code` may appear in a Close frame on the wire
/// (RFC 6455 section 7.4).
///
/// 1004, 1005, 1006 and 1015 are reserved and must never be sent; codes below
/// 1000, 1016-2999 and 5000 and above are not allowed either.
pub(crate) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Builds one unmasked, final (FIN=1) frame whose payload is written in place.
///
/// The builder keeps 10 bytes of headroom in front of the payload, in the
/// same allocation. [`finish`](Self::finish) writes the header right-aligned
/// into that headroom and returns a [`Bytes`] that starts at the header, so
/// the payload is never copied as long as it is grown through
/// [`reserve`](Self::reserve) or [`io::Write`] (or fits in the capacity
/// given to [`with_capacity`](Self::with_capacity)).
///
/// For example, `{"hello":"world"}` serialized into a text frame's builder
/// finishes as `0x81 17` (FIN and the text opcode, a 7-bit length) and then
/// the payload.
#[derive(Debug)]
pub(crate) struct FrameBuilder {
    opcode: OpCode,
    /// The headroom: exactly `HEADROOM` bytes, directly followed in memory by
    /// `payload` unless the payload had to be moved to a new allocation.
    head: BytesMut,
    payload: BytesMut,
}

impl FrameBuilder {
    /// Creates a builder with an empty payload and no payload capacity.
    #[cfg(test)]
    pub(crate) fn new(opcode: OpCode) -> Self {
        Self::with_capacity(opcode, 0)
    }

    /// Creates a builder whose payload can grow to `payload_capacity` bytes
    /// without reallocating.
    pub(crate) fn with_capacity(opcode: OpCode, payload_capacity: usize) -> Self {
        let (head, payload) = allocate(payload_capacity);
        Self {
            opcode,
            head,
            payload,
        }
    }

    /// Gives direct access to the payload buffer.
    ///
    /// Anything may be done to it, but growing it beyond its capacity through
    /// this handle moves it away from the headroom, and `finish` then has to
    /// copy it once. Call [`reserve`](Self::reserve) first to avoid that.
    pub(crate) fn payload_mut(&mut self) -> &mut BytesMut {
        &mut self.payload
    }

    /// Ensures room for `additional` more payload bytes, keeping the
    /// headroom in front of the payload (growth is amortised by doubling).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let spare = self.payload.capacity() - self.payload.len();
        if spare >= additional {
            return;
        }
        let needed = self.payload.len().saturating_add(additional);
        let new_capacity = needed.max(self.payload.capacity().saturating_mul(2));
        let (head, mut payload) = allocate(new_capacity);
        payload.extend_from_slice(&self.payload);
        self.head = head;
        self.payload = payload;
    }

    /// Writes the frame header in front of the payload and returns the
    /// complete frame.
    ///
    /// Control frames must not carry more than 125 bytes; this is checked
    /// with a debug assertion only.
    pub(crate) fn finish(self) -> Bytes {
        let Self {
            opcode,
            mut head,
            payload,
        } = self;
        let len = payload.len();
        debug_assert!(
            !opcode.is_control() || len <= MAX_CONTROL_PAYLOAD,
            "control frame payload of {len} bytes exceeds {MAX_CONTROL_PAYLOAD}"
        );
        let start = HEADROOM - header_len(len);
        write_header(&mut head[start..], opcode, len);
        // Zero-copy when `payload` still directly follows the headroom.
        head.unsplit(payload);
        head.advance(start);
        head.freeze()
    }
}

impl io::Write for FrameBuilder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.reserve(buf.len());
        self.payload.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes a final, unmasked frame carrying `payload`.
pub(crate) fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut builder = FrameBuilder::with_capacity(opcode, payload.len());
    builder.payload_mut().extend_from_slice(payload);
    builder.finish()
}

/// Encodes a Close frame with a status code and a reason.
///
/// The reason is truncated to 123 bytes, at a UTF-8 character boundary, so
/// the frame respects the 125-byte control-frame limit. `code` should satisfy
/// [`is_valid_close_code`]; this is checked with a debug assertion only.
pub(crate) fn encode_close(code: u16, reason: &str) -> Bytes {
    debug_assert!(
        is_valid_close_code(code),
        "close code {code} cannot be sent"
    );
    let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
    let mut builder = FrameBuilder::with_capacity(OpCode::Close, 2 + reason.len());
    let payload = builder.payload_mut();
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    builder.finish()
}

/// Allocates `HEADROOM + payload_capacity` bytes and splits them into the
/// zeroed headroom and an empty payload buffer that directly follows it.
fn allocate(payload_capacity: usize) -> (BytesMut, BytesMut) {
    let mut head = BytesMut::with_capacity(HEADROOM.saturating_add(payload_capacity));
    head.resize(HEADROOM, 0);
    let payload = head.split_off(HEADROOM);
    (head, payload)
}

/// Length of the header of an unmasked frame with a `payload_len`-byte payload.
fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes a FIN=1 unmasked header into `dst`, which must be exactly
/// `header_len(payload_len)` bytes long.
fn write_header(dst: &mut [u8], opcode: OpCode, payload_len: usize) {
    dst[0] = FIN | opcode.as_u8();
    match dst.len() {
        2 => dst[1] = payload_len as u8,
        4 => {
            dst[1] = 126;
            dst[2..].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            dst[1] = 127;
            dst[2..].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
}

/// Returns the longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Splits a server frame into (fin, opcode, payload), checking that it is
    /// unmasked, has no RSV bits, uses the minimal length encoding and has no
    /// trailing bytes.
    fn parse_server_frame(frame: &[u8]) -> (bool, u8, &[u8]) {
        assert!(frame.len() >= 2);
        assert_eq!(frame[0] & 0x70, 0, "RSV bits set");
        assert_eq!(frame[1] & 0x80, 0, "server frame masked");
        let (len, offset) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&frame[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert_eq!(offset, header_len(len), "non-minimal length encoding");
        assert_eq!(frame.len(), offset + len, "length mismatch");
        (frame[0] & FIN != 0, frame[0] & 0x0F, &frame[offset..])
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    const BOUNDARY_LENGTHS: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 70_000];

    #[test]
    fn opcode_round_trip() {
        for value in 0u8..16 {
            match OpCode::from_u8(value) {
                Some(op) => assert_eq!(op.as_u8(), value),
                None => assert!(matches!(value, 3..=7 | 0xB..=0xF)),
            }
        }
        assert!(OpCode::Ping.is_control());
        assert!(!OpCode::Continuation.is_control());
    }

    #[test]
    fn header_bytes_at_boundaries() {
        assert_eq!(&encode(OpCode::Binary, &[])[..], &[0x82, 0]);
        assert_eq!(&encode(OpCode::Text, &[0; 125])[..2], &[0x81, 125]);
        assert_eq!(&encode(OpCode::Text, &[0; 126])[..4], &[0x81, 126, 0, 126]);
        assert_eq!(
            &encode(OpCode::Binary, &[0; 65535])[..4],
            &[0x82, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            &encode(OpCode::Binary, &[0; 65536])[..10],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn encode_lengths() {
        for len in BOUNDARY_LENGTHS {
            let payload = pattern(len);
            let frame = encode(OpCode::Binary, &payload);
            let (fin, opcode, body) = parse_server_frame(&frame);
            assert!(fin);
            assert_eq!(opcode, 0x2);
            assert_eq!(body, &payload[..], "len {len}");
        }
    }

    #[test]
    fn builder_lengths_without_copy() {
        for len in BOUNDARY_LENGTHS {
            let payload = pattern(len);
            let mut builder = FrameBuilder::with_capacity(OpCode::Text, len);
            builder.payload_mut().extend_from_slice(&payload);
            let payload_ptr = builder.payload_mut().as_ptr();
            let frame = builder.finish();
            let header = header_len(len);
            assert_eq!(frame[header..].as_ptr(), payload_ptr, "copied at len {len}");
            let (_, opcode, body) = parse_server_frame(&frame);
            assert_eq!(opcode, 0x1);
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn io_write_grows_without_losing_headroom() {
        let mut builder = FrameBuilder::new(OpCode::Text);
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            let piece = format!("{i},");
            builder
                .write_all(piece.as_bytes())
                .expect("in-memory write");
            expected.extend_from_slice(piece.as_bytes());
        }
        let payload_ptr = builder.payload_mut().as_ptr();
        let frame = builder.finish();
        let header = header_len(expected.len());
        assert_eq!(frame[header..].as_ptr(), payload_ptr, "payload copied");
        assert_eq!(parse_server_frame(&frame).2, &expected[..]);
    }

    #[test]
    fn serde_json_writes_straight_into_builder() {
        let value = serde_json::json!({ "event": "joined", "ids": [1, 2, 3] });
        let mut builder = FrameBuilder::new(OpCode::Text);
        serde_json::to_writer(&mut builder, &value).expect("in-memory write");
        let frame = builder.finish();
        let (fin, opcode, body) = parse_server_frame(&frame);
        assert!(fin);
        assert_eq!(opcode, 0x1);
        assert_eq!(body, br#"{"event":"joined","ids":[1,2,3]}"#);
    }

    #[test]
    fn growth_through_payload_mut_still_correct() {
        let mut builder = FrameBuilder::new(OpCode::Binary);
        let payload = pattern(300);
        for chunk in payload.chunks(7) {
            builder.payload_mut().extend_from_slice(chunk);
        }
        let frame = builder.finish();
        assert_eq!(parse_server_frame(&frame).2, &payload[..]);
    }

    #[test]
    fn close_frame_layout() {
        let frame = encode_close(1000, "bye");
        assert_eq!(&frame[..], &[0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
    }

    #[test]
    fn close_reason_truncated_at_char_boundary() {
        // 'é' is 2 bytes: 61 of them plus one ASCII byte is 123 bytes, so a
        // 62nd 'é' would straddle the limit.
        let reason = format!("x{}", "é".repeat(80));
        let frame = encode_close(1011, &reason);
        let (_, opcode, body) = parse_server_frame(&frame);
        assert_eq!(opcode, 0x8);
        assert!(body.len() <= MAX_CONTROL_PAYLOAD);
        let text = std::str::from_utf8(&body[2..]).expect("valid UTF-8");
        assert_eq!(text, format!("x{}", "é".repeat(61)));

        let long_ascii = "a".repeat(200);
        let frame = encode_close(1000, &long_ascii);
        assert_eq!(parse_server_frame(&frame).2.len(), MAX_CONTROL_PAYLOAD);
    }

    #[test]
    fn close_code_validity() {
        let valid = (1000..=1003)
            .chain(1007..=1014)
            .chain([3000, 3999, 4000, 4999]);
        let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX];
        for code in valid {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in invalid {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }
}
