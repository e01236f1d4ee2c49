//! What a payload must hold: valid UTF-8 in a text message (checked piece
//! by piece as it arrives, across frames and reads) and a well-formed close
//! body.

use super::{CloseFrame, DecodeError};
use crate::ws::frame::is_valid_close_code;

/// Checks `new`, the next bytes of a text message, as UTF-8.
///
/// `before` ends with the bytes of the message that came before `new`
/// (only its last three bytes are looked at; it may be shorter, or empty at
/// the start of a message). Those bytes were checked by earlier calls, so
/// they are valid UTF-8 except, perhaps, for a code point that `new` is to
/// finish. Unless `complete`, `new` may itself end in an incomplete code
/// point; any other error fails at once.
///
/// Every byte is checked once, plus at most three bytes of `before` again:
/// the message's pieces are never joined for the check.
pub(super) fn check_utf8(before: &[u8], new: &[u8], complete: bool) -> Result<(), DecodeError> {
    let tail = incomplete_tail(before);
    let mut rest = new;
    if !tail.is_empty() {
        // Finish the code point that `before` started, in a small copy.
        let take = (sequence_width(tail[0]) - tail.len()).min(new.len());
        let mut joined = [0u8; 4];
        joined[..tail.len()].copy_from_slice(tail);
        joined[tail.len()..tail.len() + take].copy_from_slice(&new[..take]);
        check_piece(&joined[..tail.len() + take], complete)?;
        rest = &new[take..];
    }
    check_piece(rest, complete)
}

/// Checks one contiguous piece; an incomplete code point at its end is
/// accepted unless `complete`.
fn check_piece(bytes: &[u8], complete: bool) -> Result<(), DecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) if e.error_len().is_none() && !complete => Ok(()),
        Err(_) => Err(DecodeError::InvalidUtf8),
    }
}

/// The incomplete code point at the end of `text`, which is valid UTF-8
/// but for, perhaps, that code point: its lead byte and the continuation
/// bytes after it, when fewer than the lead byte announces.
fn incomplete_tail(text: &[u8]) -> &[u8] {
    for back in 1..=text.len().min(3) {
        let at = text.len() - back;
        if text[at] & 0xC0 != 0x80 {
            // The last byte that is not a continuation byte.
            return if sequence_width(text[at]) > back {
                &text[at..]
            } else {
                &[]
            };
        }
    }
    &[]
}

/// How many bytes the UTF-8 sequence that `lead` starts has.
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Parses the body of a Close frame.
pub(super) fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, DecodeError> {
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
