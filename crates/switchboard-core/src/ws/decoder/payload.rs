//! What a payload must hold: valid UTF-8 in a text message (checked
//! across fragments as they arrive) and a well-formed close body.

use super::{CloseFrame, DecodeError};
use crate::ws::frame::is_valid_close_code;

/// Validates `data[checked..]` as UTF-8 and returns the new validated length.
///
/// Unless `complete`, an incomplete code point at the end is accepted (it may
/// be finished by the next fragment); any other error fails immediately.
pub(super) fn check_utf8(
    data: &[u8],
    checked: usize,
    complete: bool,
) -> Result<usize, DecodeError> {
    match std::str::from_utf8(&data[checked..]) {
        Ok(_) => Ok(data.len()),
        Err(e) if e.error_len().is_none() && !complete => Ok(checked + e.valid_up_to()),
        Err(_) => Err(DecodeError::InvalidUtf8),
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
