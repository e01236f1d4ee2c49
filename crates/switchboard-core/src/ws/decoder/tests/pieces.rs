//! UTF-8 checked as each piece of a text message arrives, and code points
//! cut anywhere by fragments and reads.

use super::*;

/// The text of Autobahn|Testsuite's cases 6.4.1 to 6.4.4: valid UTF-8
/// ("κόσμε"), then a code point past U+10FFFF (F4 90 80 80), then more
/// valid text.
fn invalid_in_the_middle() -> (Vec<u8>, usize) {
    let mut text = "κόσμε".as_bytes().to_vec();
    let bad_at = text.len();
    text.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
    text.extend_from_slice(b"edited");
    (text, bad_at)
}

#[test]
fn invalid_utf8_fails_on_the_read_that_brings_it_within_one_frame() {
    let (text, bad_at) = invalid_in_the_middle();
    let frame = client_frame(true, OpCode::Text, &text);
    let header_len = frame.len() - text.len();
    // Cut after the valid part, then after F4 (a valid start), then after
    // 90 (which F4 cannot take): the frame is never complete.
    let cuts = [header_len + bad_at, header_len + bad_at + 1];
    let mut decoder = Decoder::new(MAX);
    decoder.push(&frame[..cuts[0]]);
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.push(&frame[cuts[0]..cuts[1]]);
    assert_eq!(
        decoder.next_message(),
        Ok(None),
        "F4 may start a code point"
    );
    decoder.push(&frame[cuts[1]..cuts[1] + 1]);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_on_the_read_that_brings_it_in_a_continuation() {
    let (text, bad_at) = invalid_in_the_middle();
    // The valid part is a fragment of its own, ending with F4; the
    // continuation starts with 90 and arrives one byte at a time.
    let mut input = client_frame(false, OpCode::Text, &text[..=bad_at]);
    let before = input.len();
    input.extend(client_frame(
        true,
        OpCode::Continuation,
        &text[bad_at + 1..],
    ));
    let continuation_payload = before + 6;
    let mut decoder = Decoder::new(MAX);
    decoder.push(&input[..continuation_payload]);
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.push(&input[continuation_payload..=continuation_payload]);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
}

#[test]
fn invalid_utf8_in_a_later_read_of_a_continuation_fails_at_once() {
    let mut input = client_frame(false, OpCode::Text, "ab".as_bytes());
    let start = input.len();
    let mut payload = "é".repeat(100).into_bytes();
    payload.push(0xFF);
    payload.extend_from_slice(&[b'z'; 100]);
    let continuation = client_frame(true, OpCode::Continuation, &payload);
    let bad = start + (continuation.len() - payload.len()) + 200;
    input.extend(continuation);
    let mut decoder = Decoder::new(MAX);
    decoder.push(&input[..bad - 51]);
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.push(&input[bad - 51..=bad]);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
}

#[test]
fn code_points_cut_anywhere_by_fragments_and_reads_decode() {
    let text = "a€b𝄞c\u{7ff}é\u{10ffff}z";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let mut input = client_frame(false, OpCode::Text, &bytes[..cut]);
        input.extend(client_frame(true, OpCode::Continuation, &bytes[cut..]));
        for sizes in [&[1][..], &[2], &[3, 1], &[7], &[9, 2]] {
            let messages = decode_chunked(&input, sizes).expect("valid text");
            assert_eq!(messages.len(), 1, "cut at {cut}, reads of {sizes:?}");
            assert_eq!(messages[0].as_text(), Some(text), "cut at {cut}");
        }
    }
}

#[test]
fn a_frame_in_pieces_is_unmasked_once() {
    // Every mask phase: pieces of 1 to 5 bytes, text and binary.
    let text = "héllo wörld, ünïcödé and plain ascii".repeat(3);
    for opcode in [OpCode::Text, OpCode::Binary] {
        let input = client_frame(true, opcode, text.as_bytes());
        for size in 1..=5 {
            let messages = decode_chunked(&input, &[size]).expect("valid frame");
            let expected = Bytes::from(text.clone().into_bytes());
            let expected = match opcode {
                OpCode::Text => Message::Text(expected),
                _ => Message::Binary(expected),
            };
            assert_eq!(messages, vec![expected], "{opcode:?} in reads of {size}");
        }
    }
}

/// The masked close frame a client answers the server's close with.
fn client_close(code: u16) -> Vec<u8> {
    client_frame(true, OpCode::Close, &code.to_be_bytes())
}

#[test]
fn after_an_oversized_header_the_rest_of_the_frame_is_skipped_to_the_close() {
    let mut input = client_frame(true, OpCode::Binary, &[7; 5000]);
    input.extend(client_frame(
        true,
        OpCode::Text,
        b"sent before the close arrived",
    ));
    input.extend(client_frame(true, OpCode::Ping, b""));
    // The drain ends once the close frame's header (6 bytes) is in.
    let close_header_end = input.len() + 6;
    input.extend(client_close(1009));
    for size in [1, 3, 100, 4096, input.len()] {
        let mut decoder = Decoder::new(100);
        decoder.push(&input[..8]);
        assert_eq!(decoder.next_message(), Err(DecodeError::MessageTooBig));
        assert_eq!(decoder.drain(&[]), Drained::More);
        let mut fed = 8;
        for chunk in input[8..].chunks(size) {
            fed += chunk.len();
            let expected = if fed >= close_header_end {
                Drained::PeerClosed
            } else {
                Drained::More
            };
            assert_eq!(decoder.drain(chunk), expected, "reads of {size}, {fed} fed");
        }
        // The error stays.
        assert_eq!(decoder.next_message(), Err(DecodeError::MessageTooBig));
    }
}

#[test]
fn bytes_pushed_with_the_error_are_drained_first() {
    // A frame with invalid UTF-8, then the client's close, in one push.
    let mut input = client_frame(true, OpCode::Text, &[b'a', 0xFF]);
    input.extend(client_close(1000));
    let mut decoder = Decoder::new(MAX);
    decoder.push(&input);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
    assert_eq!(decoder.drain(&[]), Drained::PeerClosed);
    assert!(decoder.is_idle());
    assert_eq!(decoder.buffer_capacity(), 0);
}

#[test]
fn after_invalid_utf8_in_a_pending_frame_its_rest_is_skipped() {
    let (text, bad_at) = invalid_in_the_middle();
    let mut input = client_frame(true, OpCode::Text, &text);
    // Up to F4 90, which F4 cannot take.
    let cut = input.len() - text.len() + bad_at + 2;
    input.extend(client_close(1007));
    let mut decoder = Decoder::new(MAX);
    decoder.push(&input[..cut]);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidUtf8));
    assert_eq!(decoder.drain(&[]), Drained::More);
    // The rest of the frame (80 80 "edited") is skipped by its length.
    assert_eq!(decoder.drain(&input[cut..cut + 4]), Drained::More);
    assert_eq!(decoder.drain(&input[cut + 4..]), Drained::PeerClosed);
}

#[test]
fn a_bad_close_frame_ends_the_drain_at_once() {
    let mut decoder = Decoder::new(MAX);
    decoder.push(&client_frame(true, OpCode::Close, &[0x03, 0xED]));
    assert_eq!(
        decoder.next_message(),
        Err(DecodeError::InvalidCloseCode(1005))
    );
    assert_eq!(decoder.drain(&[]), Drained::PeerClosed);
}

#[test]
fn header_errors_are_skipped_by_the_frame_length() {
    // Reserved bits, a reserved opcode, an unmasked frame: the frame is
    // skipped by its length, whatever else is wrong with it.
    let frames = [
        raw_frame(0xC1, Some([1, 2, 3, 4]), &[0x88; 300]),
        raw_frame(0x83, Some([1, 2, 3, 4]), &[0x88; 10]),
        raw_frame(0x81, None, &[0x88; 10]),
    ];
    for bad in frames {
        let mut input = bad.clone();
        input.extend(client_close(1002));
        let mut decoder = Decoder::new(MAX);
        decoder.push(&input[..2]);
        assert!(decoder.next_message().is_err());
        assert_eq!(decoder.drain(&input[2..bad.len()]), Drained::More);
        assert_eq!(decoder.drain(&input[bad.len()..]), Drained::PeerClosed);
    }
}

#[test]
fn draining_stops_at_the_limit() {
    // A length with its top bit set: frame boundaries are lost, and only
    // the limit ends the drain.
    let mut decoder = Decoder::new(MAX);
    decoder.push(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    assert_eq!(decoder.next_message(), Err(DecodeError::InvalidLength));
    let chunk = client_close(1000).repeat(1024);
    let mut total = 0u64;
    loop {
        let drained = decoder.drain(&chunk);
        total += chunk.len() as u64;
        if total > drain::DRAIN_LIMIT {
            assert_eq!(drained, Drained::Limit);
            break;
        }
        assert_eq!(drained, Drained::More, "after {total} bytes");
    }
}

#[test]
fn draining_an_oversized_frame_stops_at_the_limit() {
    let mut decoder = Decoder::new(100);
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    decoder.push(&header);
    assert_eq!(decoder.next_message(), Err(DecodeError::MessageTooBig));
    let chunk = vec![0u8; 1 << 20];
    let mut fed = 0u64;
    while decoder.drain(&chunk) == Drained::More {
        fed += chunk.len() as u64;
        assert!(fed <= drain::DRAIN_LIMIT, "no limit");
    }
    assert_eq!(decoder.drain(&[]), Drained::Limit);
}
