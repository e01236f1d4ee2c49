//! Incremental decoding of client-to-server frames into messages.
//!
//! Bytes read from the socket are handed to [`Decoder::push`]; complete
//! messages come out of [`Decoder::next_message`]. Headers are validated as
//! soon as their bytes arrive, so oversized or malformed frames are rejected
//! before their payload is buffered. Payloads are split off the internal
//! buffer and unmasked in place, without copying, except that fragmented
//! messages are concatenated into one buffer.

use bytes::{Buf, Bytes, BytesMut};

use switchboard_protocol::CloseCode;

use super::frame::{MAX_CONTROL_PAYLOAD, OpCode, is_valid_close_code};

/// First header byte: FIN flag.
const FIN_BIT: u8 = 0x80;
/// First header byte: RSV1, RSV2 and RSV3 (no extension is negotiated).
const RSV_BITS: u8 = 0x70;
/// First header byte: opcode.
const OPCODE_BITS: u8 = 0x0F;
/// Second header byte: MASK flag.
const MASK_BIT: u8 = 0x80;
/// Second header byte: 7-bit payload length.
const LEN_BITS: u8 = 0x7F;

/// A complete message received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message. Invariant: the bytes are valid UTF-8, checked by the
    /// decoder over the whole (reassembled) message.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the payload is at most 125 bytes and should be echoed in a pong.
    Ping(Bytes),
    /// A pong; the payload is at most 125 bytes.
    Pong(Bytes),
    /// A close request, with its status code and reason if the frame had a body.
    Close(Option<CloseFrame>),
}

impl Message {
    /// Returns the text of a [`Message::Text`], or `None` for other messages.
    ///
    /// The decoder has already validated the bytes, so this never fails for a
    /// text message produced by [`Decoder`]; it re-runs the (fast) UTF-8
    /// check because the crate does not use `unsafe`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// Status code and reason carried by a Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Close status code; always satisfies [`is_valid_close_code`].
    pub code: u16,
    /// UTF-8 reason, possibly empty, at most 123 bytes.
    pub reason: String,
}

/// A protocol violation by the client.
///
/// The connection must be closed with [`close_code`](Self::close_code); the
/// `Display` text is short enough to be sent as the close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An RSV bit was set but no extension was negotiated.
    #[error("reserved bits set")]
    ReservedBits,
    /// The opcode is reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpCode(u8),
    /// A client frame was not masked.
    #[error("client frame not masked")]
    Unmasked,
    /// A control frame had FIN=0.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame carried more than 125 bytes.
    #[error("control frame too long")]
    ControlTooLong,
    /// A 64-bit payload length had its most significant bit set.
    #[error("invalid payload length")]
    InvalidLength,
    /// A continuation frame arrived while no fragmented message was open.
    #[error("unexpected continuation frame")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived inside a fragmented message.
    #[error("expected continuation frame")]
    ExpectedContinuation,
    /// A close frame carried a 1-byte payload.
    #[error("truncated close code")]
    TruncatedCloseCode,
    /// A close frame carried a code that must not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message was not valid UTF-8.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A close reason was not valid UTF-8.
    #[error("invalid UTF-8 in close reason")]
    InvalidCloseReason,
    /// A frame or reassembled message exceeded the configured maximum size.
    #[error("message too big")]
    MessageTooBig,
}

impl DecodeError {
    /// The close status code to send for this error: 1002 (protocol error),
    /// 1007 (invalid payload data) or 1009 (message too big).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD.0,
            Self::MessageTooBig => CloseCode::MESSAGE_TOO_BIG.0,
            _ => CloseCode::PROTOCOL_ERROR.0,
        }
    }
}

/// Incremental decoder of masked client frames.
///
/// Feed it bytes with [`push`](Self::push) and drain complete messages with
/// [`next_message`](Self::next_message) until it returns `Ok(None)`.
///
/// Memory: the input buffer is allocated lazily and released (replaced by a
/// zero-capacity buffer) as soon as it has been fully consumed, so an idle
/// connection holds no heap buffer. Returned payloads may share an
/// allocation with bytes that were pushed together with them.
///
/// Errors are final: after `next_message` has returned an error, the
/// decoder drops its buffers, ignores further input and returns the same
/// error on every call.
#[derive(Debug)]
pub struct Decoder {
    max_message_size: usize,
    /// Received bytes not yet consumed.
    buf: BytesMut,
    /// Header of the frame whose payload is being awaited.
    header: Option<FrameHeader>,
    /// Text or binary message whose final fragment has not arrived yet.
    /// Boxed: rare, and the decoder is part of every idle connection.
    fragmented: Option<Box<Fragmented>>,
    /// Set once an error has been returned.
    error: Option<DecodeError>,
}

/// A validated frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Payload length, already checked against the limits.
    len: usize,
}

/// A text or binary message being assembled from one or more frames.
#[derive(Debug)]
struct Fragmented {
    is_text: bool,
    data: BytesMut,
    /// For text: length of the prefix of `data` known to be valid UTF-8.
    /// The rest is at most an incomplete code point split by a fragment
    /// boundary.
    utf8_checked: usize,
}

impl Decoder {
    /// Creates a decoder that rejects text and binary messages larger than
    /// `max_message_size` bytes (after reassembly) with
    /// [`DecodeError::MessageTooBig`].
    ///
    /// Control frames are limited to 125 bytes by the protocol regardless of
    /// this setting.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            buf: BytesMut::new(),
            header: None,
            fragmented: None,
            error: None,
        }
    }

    /// Appends bytes read from the socket.
    ///
    /// Nothing is parsed here; call [`next_message`](Self::next_message)
    /// after every push so oversized frames are rejected from their header.
    /// Input is discarded once the decoder has failed.
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() && !data.is_empty() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Decodes buffered bytes and returns the next complete message, or
    /// `Ok(None)` if more bytes are needed.
    ///
    /// Control frames interleaved with a fragmented message are returned as
    /// soon as they are complete.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let result = self.decode();
        match result {
            Ok(_) => self.release_consumed_buffer(),
            Err(error) => self.fail(error),
        }
        result
    }

    /// Returns `true` when no partial frame or fragmented message is held,
    /// i.e. the decoder owns no heap buffer.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.header.is_none() && self.fragmented.is_none()
    }

    /// Capacity of the internal input buffer.
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn decode(&mut self) -> Result<Option<Message>, DecodeError> {
        loop {
            let Some(header) = self.take_header()? else {
                return Ok(None);
            };
            if self.buf.len() < header.len {
                self.header = Some(header);
                return Ok(None);
            }
            let payload = self.take_payload(&header);
            if let Some(message) = self.handle_frame(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Returns the pending header, or parses and consumes the next one.
    fn take_header(&mut self) -> Result<Option<FrameHeader>, DecodeError> {
        if let Some(header) = self.header.take() {
            return Ok(Some(header));
        }
        let in_message = self.fragmented.as_ref().map(|f| f.data.len());
        let limits = Limits {
            max_message_size: self.max_message_size,
            in_message,
        };
        let Some((header, header_len)) = parse_header(&self.buf, limits)? else {
            return Ok(None);
        };
        self.buf.advance(header_len);
        Ok(Some(header))
    }

    /// Splits the payload off the input buffer and unmasks it in place.
    fn take_payload(&mut self, header: &FrameHeader) -> BytesMut {
        let mut payload = self.buf.split_to(header.len);
        unmask(&mut payload, header.mask);
        self.release_consumed_buffer();
        payload
    }

    /// Turns a complete frame into a message, or stores a fragment.
    fn handle_frame(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Message>, DecodeError> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => parse_close(&payload).map(|close| Some(Message::Close(close))),
            OpCode::Text | OpCode::Binary => {
                let fragmented = Fragmented {
                    is_text: header.opcode == OpCode::Text,
                    data: payload,
                    utf8_checked: 0,
                };
                self.continue_message(fragmented, header.fin)
            }
            OpCode::Continuation => {
                // `parse_header` rejects continuations outside a message.
                let mut fragmented = self
                    .fragmented
                    .take()
                    .ok_or(DecodeError::UnexpectedContinuation)?;
                fragmented.data.extend_from_slice(&payload);
                self.continue_message(*fragmented, header.fin)
            }
        }
    }

    /// Validates the data received so far and either completes the message
    /// (`fin`) or keeps it for the next continuation frame.
    fn continue_message(
        &mut self,
        mut fragmented: Fragmented,
        fin: bool,
    ) -> Result<Option<Message>, DecodeError> {
        if fragmented.is_text {
            fragmented.utf8_checked = check_utf8(&fragmented.data, fragmented.utf8_checked, fin)?;
        }
        if !fin {
            self.fragmented = Some(Box::new(fragmented));
            return Ok(None);
        }
        let data = fragmented.data.freeze();
        Ok(Some(if fragmented.is_text {
            Message::Text(data)
        } else {
            Message::Binary(data)
        }))
    }

    /// Drops the input buffer's allocation once everything has been consumed.
    fn release_consumed_buffer(&mut self) {
        // Not conditional on capacity: after a payload is split off the end,
        // the empty remainder has no capacity of its own but still holds a
        // reference to the shared allocation, which would keep the last
        // message's bytes alive for as long as the connection is idle.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Records `error` and drops all buffered state.
    fn fail(&mut self, error: DecodeError) {
        self.error = Some(error);
        self.buf = BytesMut::new();
        self.header = None;
        self.fragmented = None;
    }
}

/// Message-size context needed to validate a header.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message_size: usize,
    /// Bytes already received of a fragmented message, if one is open.
    in_message: Option<usize>,
}

/// Parses and validates a frame header at the start of `buf`.
///
/// Returns `Ok(None)` if more bytes are needed. Errors are reported as soon as
/// the bytes that prove them are available.
fn parse_header(buf: &[u8], limits: Limits) -> Result<Option<(FrameHeader, usize)>, DecodeError> {
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

/// Validates `data[checked..]` as UTF-8 and returns the new validated length.
///
/// Unless `complete`, an incomplete code point at the end is accepted (it may
/// be finished by the next fragment); any other error fails immediately.
fn check_utf8(data: &[u8], checked: usize, complete: bool) -> Result<usize, DecodeError> {
    match std::str::from_utf8(&data[checked..]) {
        Ok(_) => Ok(data.len()),
        Err(e) if e.error_len().is_none() && !complete => Ok(checked + e.valid_up_to()),
        Err(_) => Err(DecodeError::InvalidUtf8),
    }
}

/// Parses the body of a Close frame.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, DecodeError> {
    let (code, reason) = match *payload {
        [] => return Ok(None),
        [_] => return Err(DecodeError::TruncatedCloseCode),
        [a, b, ref reason @ ..] => (u16::from_be_bytes([a, b]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(DecodeError::InvalidCloseCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::InvalidCloseReason)?;
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}

/// XORs `data` with the repeating 4-byte `mask`, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
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

#[cfg(test)]
mod tests {
    use super::super::frame::{self, FrameBuilder};
    use super::*;

    const MAX: usize = 1 << 20;

    /// Builds a client frame. `first` is the whole first header byte
    /// (FIN, RSV and opcode); `mask` of `None` produces an unmasked frame.
    fn raw_frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(first);
        match payload.len() {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().zip(mask.iter().cycle()).map(|(p, m)| p ^ m));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// Builds a masked client frame.
    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let first = if fin { FIN_BIT } else { 0 } | opcode.as_u8();
        raw_frame(first, Some([0x37, 0xFA, 0x21, 0x3D]), payload)
    }

    /// Converts a server frame into the equivalent masked client frame.
    fn mask_server_frame(frame: &[u8]) -> Vec<u8> {
        let header_len = match frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut out = frame[..header_len].to_vec();
        out[1] |= MASK_BIT;
        let mask = [0xA1, 0x02, 0xF3, 0x44];
        out.extend_from_slice(&mask);
        out.extend(
            frame[header_len..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(p, m)| p ^ m),
        );
        out
    }

    /// Decodes everything in `input` pushed in one go.
    fn decode_all(input: &[u8]) -> Result<Vec<Message>, DecodeError> {
        decode_chunked(input, &[input.len().max(1)])
    }

    /// Decodes `input` pushed in chunks whose sizes cycle through `sizes`,
    /// draining messages after every push.
    fn decode_chunked(input: &[u8], sizes: &[usize]) -> Result<Vec<Message>, DecodeError> {
        let mut decoder = Decoder::new(MAX);
        let mut messages = Vec::new();
        let mut rest = input;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let size = (*sizes.next().expect("non-empty sizes")).clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            decoder.push(chunk);
            while let Some(message) = decoder.next_message()? {
                messages.push(message);
            }
        }
        assert!(decoder.is_idle(), "trailing partial frame");
        Ok(messages)
    }

    /// Pushes `input` and returns the first error.
    fn decode_error(input: &[u8]) -> DecodeError {
        decode_all(input).expect_err("expected a decode error")
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    /// Small deterministic xorshift generator for chunk sizes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// A stream mixing every kind of frame, and the messages it decodes to.
    fn mixed_stream() -> (Vec<u8>, Vec<Message>) {
        let big = pattern(70_000);
        let mut input = Vec::new();
        input.extend(client_frame(true, OpCode::Text, "héllo".as_bytes()));
        input.extend(client_frame(true, OpCode::Binary, &big));
        input.extend(client_frame(false, OpCode::Text, b"frag"));
        input.extend(client_frame(true, OpCode::Ping, b"p"));
        input.extend(client_frame(false, OpCode::Continuation, b"men"));
        input.extend(client_frame(true, OpCode::Continuation, b"ted"));
        input.extend(client_frame(true, OpCode::Pong, b""));
        input.extend(client_frame(true, OpCode::Binary, b""));
        input.extend(mask_server_frame(&frame::encode_close(1000, "done")));
        let expected = vec![
            Message::Text(Bytes::from_static("héllo".as_bytes())),
            Message::Binary(Bytes::from(big)),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Text(Bytes::from_static(b"fragmented")),
            Message::Pong(Bytes::new()),
            Message::Binary(Bytes::new()),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "done".to_owned(),
            })),
        ];
        (input, expected)
    }

    #[test]
    fn round_trip_encoded_frames_at_length_boundaries() {
        for len in [0, 1, 125, 126, 65535, 65536] {
            let payload = pattern(len);
            let encoded = frame::encode(OpCode::Binary, &payload);
            let mut builder = FrameBuilder::with_capacity(OpCode::Binary, len);
            builder.payload_mut().extend_from_slice(&payload);
            let built = builder.finish();
            assert_eq!(encoded, built);
            let messages = decode_all(&mask_server_frame(&encoded)).expect("valid frame");
            assert_eq!(messages, vec![Message::Binary(Bytes::from(payload))]);
        }
    }

    #[test]
    fn text_round_trip_and_as_text() {
        let encoded = frame::encode(OpCode::Text, "¡hola!".as_bytes());
        let messages = decode_all(&mask_server_frame(&encoded)).expect("valid frame");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].as_text(), Some("¡hola!"));
        assert_eq!(Message::Binary(Bytes::new()).as_text(), None);
    }

    #[test]
    fn single_push_decodes_mixed_stream() {
        let (input, expected) = mixed_stream();
        assert_eq!(decode_all(&input).expect("valid stream"), expected);
    }

    #[test]
    fn byte_by_byte_matches_single_push() {
        let (input, expected) = mixed_stream();
        assert_eq!(
            decode_chunked(&input, &[1]).expect("valid stream"),
            expected
        );
    }

    #[test]
    fn random_chunkings_match_single_push() {
        let (input, expected) = mixed_stream();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let sizes: Vec<usize> = (0..16).map(|_| 1 + (rng.next() % 300) as usize).collect();
            assert_eq!(
                decode_chunked(&input, &sizes).expect("valid stream"),
                expected
            );
        }
    }

    #[test]
    fn unmask_matches_bytewise_xor_for_all_lengths() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let original = pattern(len);
            let mut data = original.clone();
            unmask(&mut data, mask);
            let expected: Vec<u8> = original
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(data, expected, "len {len}");
        }
    }

    #[test]
    fn zero_mask_is_accepted() {
        let input = raw_frame(0x82, Some([0; 4]), b"abc");
        let messages = decode_all(&input).expect("valid frame");
        assert_eq!(messages, vec![Message::Binary(Bytes::from_static(b"abc"))]);
    }

    #[test]
    fn ping_interleaved_in_fragmented_text() {
        let mut input = client_frame(false, OpCode::Text, b"Hel");
        input.extend(client_frame(true, OpCode::Ping, b"are you there"));
        input.extend(client_frame(true, OpCode::Continuation, b"lo"));
        let messages = decode_all(&input).expect("valid stream");
        assert_eq!(
            messages,
            vec![
                Message::Ping(Bytes::from_static(b"are you there")),
                Message::Text(Bytes::from_static(b"Hello")),
            ]
        );
    }

    #[test]
    fn code_point_split_across_fragments() {
        let text = "a€b"; // '€' is E2 82 AC
        let bytes = text.as_bytes();
        let mut input = client_frame(false, OpCode::Text, &bytes[..2]);
        input.extend(client_frame(false, OpCode::Continuation, &bytes[2..3]));
        input.extend(client_frame(false, OpCode::Continuation, &[]));
        input.extend(client_frame(true, OpCode::Continuation, &bytes[3..]));
        let messages = decode_all(&input).expect("valid stream");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].as_text(), Some(text));
    }

    #[test]
    fn idle_after_message_with_no_buffer() {
        let mut decoder = Decoder::new(MAX);
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffer_capacity(), 0);

        let input = client_frame(true, OpCode::Text, &[b'x'; 1000]);
        let (head, tail) = input.split_at(500);
        decoder.push(head);
        assert_eq!(decoder.next_message(), Ok(None));
        assert!(!decoder.is_idle());
        decoder.push(tail);
        assert!(matches!(decoder.next_message(), Ok(Some(Message::Text(_)))));
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffer_capacity(), 0);
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffer_capacity(), 0);
    }

    #[test]
    fn a_decoded_message_is_not_shared_with_the_idle_decoder() {
        // The decoder must hold no reference to a message's allocation once
        // it has handed the message out: an idle connection would otherwise
        // keep its last message alive.
        let mut decoder = Decoder::new(MAX);
        decoder.push(&client_frame(
            true,
            OpCode::Text,
            br#"{"type":"join","room":"r"}"#,
        ));
        let Ok(Some(Message::Text(text))) = decoder.next_message() else {
            panic!("expected a text message");
        };
        assert!(decoder.is_idle());
        assert!(
            text.is_unique(),
            "the decoder still shares the message's bytes"
        );
    }

    #[test]
    fn not_idle_inside_fragmented_message() {
        let mut decoder = Decoder::new(MAX);
        decoder.push(&client_frame(false, OpCode::Binary, b"part"));
        assert_eq!(decoder.next_message(), Ok(None));
        assert!(!decoder.is_idle());
        assert_eq!(decoder.buffer_capacity(), 0);
        decoder.push(&client_frame(true, OpCode::Continuation, b"s"));
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Binary(Bytes::from_static(b"parts"))))
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn two_messages_in_one_push_returned_one_at_a_time() {
        let mut decoder = Decoder::new(MAX);
        let mut input = client_frame(true, OpCode::Text, b"one");
        input.extend(client_frame(true, OpCode::Text, b"two"));
        decoder.push(&input);
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Text("one".into())))
        );
        assert!(!decoder.is_idle());
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Text("two".into())))
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffer_capacity(), 0);
    }

    #[test]
    fn close_frames() {
        let empty = decode_all(&client_frame(true, OpCode::Close, &[])).expect("valid");
        assert_eq!(empty, vec![Message::Close(None)]);
        let mut body = 4000u16.to_be_bytes().to_vec();
        body.extend_from_slice("ciao ✓".as_bytes());
        let coded = decode_all(&client_frame(true, OpCode::Close, &body)).expect("valid");
        assert_eq!(
            coded,
            vec![Message::Close(Some(CloseFrame {
                code: 4000,
                reason: "ciao ✓".to_owned(),
            }))]
        );
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let masked = |first: u8, payload: &[u8]| raw_frame(first, Some([1, 2, 3, 4]), payload);
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("rsv1", masked(0xC1, b"x"), DecodeError::ReservedBits),
            ("rsv2", masked(0xA1, b"x"), DecodeError::ReservedBits),
            ("rsv3", masked(0x91, b"x"), DecodeError::ReservedBits),
            (
                "opcode 3",
                masked(0x83, b""),
                DecodeError::ReservedOpCode(3),
            ),
            (
                "opcode 0xB",
                masked(0x8B, b""),
                DecodeError::ReservedOpCode(0xB),
            ),
            (
                "unmasked",
                raw_frame(0x81, None, b"hi"),
                DecodeError::Unmasked,
            ),
            (
                "fragmented ping",
                masked(0x09, b""),
                DecodeError::FragmentedControl,
            ),
            (
                "long ping",
                masked(0x89, &[0; 126]),
                DecodeError::ControlTooLong,
            ),
            (
                "long close",
                masked(0x88, &[0x03; 126]),
                DecodeError::ControlTooLong,
            ),
            (
                "lone continuation",
                masked(0x80, b"x"),
                DecodeError::UnexpectedContinuation,
            ),
            (
                "close 1 byte",
                masked(0x88, &[0x03]),
                DecodeError::TruncatedCloseCode,
            ),
            (
                "close 1005",
                masked(0x88, &[0x03, 0xED]),
                DecodeError::InvalidCloseCode(1005),
            ),
            (
                "close 999",
                masked(0x88, &[0x03, 0xE7]),
                DecodeError::InvalidCloseCode(999),
            ),
            (
                "close 5000",
                masked(0x88, &[0x13, 0x88]),
                DecodeError::InvalidCloseCode(5000),
            ),
        ];
        for (name, input, expected) in cases {
            let error = decode_error(&input);
            assert_eq!(error, expected, "{name}");
            assert_eq!(error.close_code(), 1002, "{name}");
        }
    }

    #[test]
    fn new_data_frame_inside_fragmented_message() {
        for opcode in [OpCode::Text, OpCode::Binary] {
            let mut input = client_frame(false, OpCode::Text, b"a");
            input.extend(client_frame(true, opcode, b"b"));
            let error = decode_error(&input);
            assert_eq!(error, DecodeError::ExpectedContinuation);
            assert_eq!(error.close_code(), 1002);
        }
    }

    #[test]
    fn continuation_after_completed_message() {
        let mut input = client_frame(false, OpCode::Binary, b"a");
        input.extend(client_frame(true, OpCode::Continuation, b"b"));
        input.extend(client_frame(true, OpCode::Continuation, b"c"));
        assert_eq!(decode_error(&input), DecodeError::UnexpectedContinuation);
    }

    #[test]
    fn length_with_most_significant_bit_is_rejected_from_header() {
        let mut decoder = Decoder::new(usize::MAX);
        decoder.push(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
        let error = decoder.next_message().expect_err("invalid length");
        assert_eq!(error, DecodeError::InvalidLength);
        assert_eq!(error.close_code(), 1002);
    }

    #[test]
    fn errors_detected_from_first_two_bytes() {
        let mut decoder = Decoder::new(MAX);
        decoder.push(&[0x81, 0x05]); // unmasked, rest of the frame not sent
        assert_eq!(decoder.next_message(), Err(DecodeError::Unmasked));
    }

    #[test]
    fn invalid_utf8_closes_with_1007() {
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            (
                "text",
                client_frame(true, OpCode::Text, &[b'a', 0xFF]),
                DecodeError::InvalidUtf8,
            ),
            (
                "truncated code point at end of text",
                client_frame(true, OpCode::Text, &[b'a', 0xE2, 0x82]),
                DecodeError::InvalidUtf8,
            ),
            (
                "fragmented text",
                {
                    let mut input = client_frame(false, OpCode::Text, &[0xE2, 0x82]);
                    input.extend(client_frame(true, OpCode::Continuation, b"x"));
                    input
                },
                DecodeError::InvalidUtf8,
            ),
            (
                "fragmented text ending mid code point",
                {
                    let mut input = client_frame(false, OpCode::Text, b"ok");
                    input.extend(client_frame(true, OpCode::Continuation, &[0xF0, 0x9F]));
                    input
                },
                DecodeError::InvalidUtf8,
            ),
            (
                "close reason",
                client_frame(true, OpCode::Close, &[0x03, 0xE8, 0xC3, 0x28]),
                DecodeError::InvalidCloseReason,
            ),
        ];
        for (name, input, expected) in cases {
            let error = decode_error(&input);
            assert_eq!(error, expected, "{name}");
            assert_eq!(error.close_code(), 1007, "{name}");
        }
    }

    #[test]
    fn invalid_utf8_fails_fast_in_first_fragment() {
        let mut decoder = Decoder::new(MAX);
        decoder.push(&client_frame(false, OpCode::Text, &[0xC0, 0x80]));
        assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn binary_is_not_utf8_checked() {
        let messages = decode_all(&client_frame(true, OpCode::Binary, &[0xFF])).expect("valid");
        assert_eq!(messages, vec![Message::Binary(Bytes::from_static(&[0xFF]))]);
    }

    #[test]
    fn oversize_detected_from_header_alone() {
        let mut decoder = Decoder::new(MAX);
        // Header of a masked binary frame claiming 1 GiB, and nothing else.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        decoder.push(&header);
        let error = decoder.next_message().expect_err("too big");
        assert_eq!(error, DecodeError::MessageTooBig);
        assert_eq!(error.close_code(), 1009);
    }

    #[test]
    fn frame_exactly_at_limit_is_accepted() {
        let mut decoder = Decoder::new(100);
        decoder.push(&client_frame(true, OpCode::Binary, &[7; 100]));
        assert!(matches!(decoder.next_message(), Ok(Some(Message::Binary(b))) if b.len() == 100));
        decoder.push(&client_frame(true, OpCode::Binary, &[7; 101]));
        assert_eq!(decoder.next_message(), Err(DecodeError::MessageTooBig));
    }

    #[test]
    fn oversize_fragmented_total_detected_from_header() {
        let mut decoder = Decoder::new(100);
        decoder.push(&client_frame(false, OpCode::Text, &[b'a'; 60]));
        decoder.push(&client_frame(false, OpCode::Continuation, &[b'a'; 40]));
        assert_eq!(decoder.next_message(), Ok(None));
        // Only the header (2 + 4 bytes) of a 1-byte continuation.
        let frame = client_frame(true, OpCode::Continuation, b"a");
        decoder.push(&frame[..6]);
        let error = decoder.next_message().expect_err("too big");
        assert_eq!(error, DecodeError::MessageTooBig);
        assert_eq!(error.close_code(), 1009);
    }

    #[test]
    fn control_frames_not_limited_by_small_max() {
        let mut decoder = Decoder::new(10);
        decoder.push(&client_frame(true, OpCode::Ping, &[0; 125]));
        assert!(matches!(decoder.next_message(), Ok(Some(Message::Ping(p))) if p.len() == 125));
    }

    #[test]
    fn decoder_is_poisoned_after_error() {
        let mut decoder = Decoder::new(MAX);
        decoder.push(&raw_frame(0xC1, Some([1, 2, 3, 4]), b"x"));
        assert_eq!(decoder.next_message(), Err(DecodeError::ReservedBits));
        decoder.push(&client_frame(true, OpCode::Text, b"fine"));
        assert_eq!(decoder.next_message(), Err(DecodeError::ReservedBits));
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffer_capacity(), 0);
    }

    #[test]
    fn error_display_fits_close_reason() {
        let errors = [
            DecodeError::ReservedBits,
            DecodeError::ReservedOpCode(0xF),
            DecodeError::InvalidCloseCode(u16::MAX),
            DecodeError::InvalidUtf8,
            DecodeError::MessageTooBig,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(
                !text.is_empty() && text.len() <= frame::MAX_CLOSE_REASON,
                "{text}"
            );
        }
        assert_eq!(
            DecodeError::ReservedOpCode(0xB).to_string(),
            "reserved opcode 0xb"
        );
    }
}
