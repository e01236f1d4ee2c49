use super::header::{FIN_BIT, MASK_BIT};
use super::*;
use crate::ws::frame::{self, FrameBuilder};

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

// Text that arrives in pieces: frames, fragments and reads.
mod pieces;
