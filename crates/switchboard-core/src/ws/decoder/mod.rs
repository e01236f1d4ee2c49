//! Incremental decoding of client-to-server frames into messages.
//!
//! Bytes read from the socket are handed to [`Decoder::push`]; complete
//! messages come out of [`Decoder::next_message`]. Headers are validated as
//! soon as their bytes arrive, so oversized or malformed frames are rejected
//! before their payload is buffered. Payloads are split off the internal
//! buffer and unmasked in place, without copying, except that fragmented
//! messages are concatenated into one buffer.
//!
//! Text is checked as it arrives: a frame that comes in several reads has
//! each new part unmasked and checked once, so invalid UTF-8 fails the
//! message on the read that brings it, not when the frame or the message is
//! complete. A frame that arrives in one read is unmasked and checked in
//! one pass each, as a whole.
//!
//! After an error the decoder can go on reading ([`Decoder::drain`]): it
//! discards what the client still sends until the client's close frame, so
//! that the connection is not closed under bytes in flight.
//!
//! This module reassembles messages from frames; `header` parses and
//! validates frame headers (and unmasks payloads), `payload` checks what a
//! payload holds (UTF-8 of text, close bodies), `drain` reads past an
//! error.

use bytes::{Buf, Bytes, BytesMut};

use switchboard_protocol::CloseCode;

use super::frame::OpCode;

mod drain;
mod header;
mod payload;
#[cfg(test)]
mod tests;

use drain::Drain;
pub(crate) use drain::Drained;
use header::{FrameHeader, Limits, parse_header, unmask, unmask_from};
use payload::{check_utf8, parse_close};

/// A complete message received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A text message. Invariant: the bytes are valid UTF-8, checked by the
    /// decoder over the whole (reassembled) message, piece by piece as it
    /// arrived.
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
    #[cfg(test)]
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// Status code and reason carried by a Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseFrame {
    /// Close status code; always satisfies
    /// [`is_valid_close_code`](super::frame::is_valid_close_code).
    pub code: u16,
    /// UTF-8 reason, possibly empty, at most 123 bytes.
    pub reason: String,
}

/// A protocol violation by the client.
///
/// The connection must be closed with [`close_code`](Self::close_code); the
/// `Display` text is short enough to be sent as the close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
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
    pub(crate) fn close_code(&self) -> u16 {
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
/// decoder drops its buffers, ignores further pushes and returns the same
/// error on every call; what the client sends next goes to
/// [`drain`](Self::drain).
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The largest message accepted. A `u32`, like `unmasked`, so that the
    /// decoder (part of every idle connection) stays 72 bytes: limits are
    /// at most 64 MiB (`Config::validate`), and a larger one is taken as
    /// 4 GiB - 1.
    max_message_size: u32,
    /// Bytes at the start of the pending frame's payload (in `buf`) already
    /// unmasked and, for text, checked: the part of a frame that came in
    /// earlier reads. Never more than the frame's length, so a `u32`.
    unmasked: u32,
    /// Received bytes not yet consumed.
    buf: BytesMut,
    /// Header of the frame whose payload is being awaited.
    header: Option<FrameHeader>,
    /// Text or binary message whose final fragment has not arrived yet.
    /// Boxed: rare, and the decoder is part of every idle connection.
    fragmented: Option<Box<Fragmented>>,
    /// Set once an error has been returned. Boxed for the same reason.
    failed: Option<Box<Failed>>,
}

/// A text or binary message being assembled from one or more frames.
#[derive(Debug)]
struct Fragmented {
    is_text: bool,
    /// For text: valid UTF-8, except that it may end in an incomplete code
    /// point split by a fragment boundary.
    data: BytesMut,
}

/// The error a decoder failed with, and what it makes of the bytes after.
#[derive(Debug)]
struct Failed {
    error: DecodeError,
    drain: Drain,
}

impl Decoder {
    /// Creates a decoder that rejects text and binary messages larger than
    /// `max_message_size` bytes (after reassembly) with
    /// [`DecodeError::MessageTooBig`].
    ///
    /// Control frames are limited to 125 bytes by the protocol regardless of
    /// this setting.
    pub(crate) fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size: u32::try_from(max_message_size).unwrap_or(u32::MAX),
            unmasked: 0,
            buf: BytesMut::new(),
            header: None,
            fragmented: None,
            failed: None,
        }
    }

    /// Appends bytes read from the socket.
    ///
    /// Nothing is parsed here; call [`next_message`](Self::next_message)
    /// after every push so oversized frames are rejected from their header.
    /// Input is discarded once the decoder has failed: it goes to
    /// [`drain`](Self::drain) instead.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() && !data.is_empty() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Decodes buffered bytes and returns the next complete message, or
    /// `Ok(None)` if more bytes are needed.
    ///
    /// Control frames interleaved with a fragmented message are returned as
    /// soon as they are complete.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(failed) = &self.failed {
            return Err(failed.error);
        }
        let result = self.decode();
        match result {
            Ok(_) => self.release_consumed_buffer(),
            Err(error) => self.fail(error),
        }
        result
    }

    /// Whether `next_message` has returned an error.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// After an error: discards `data`, the next bytes from the client,
    /// looking for the client's close frame (see the `drain` module), and
    /// tells where that stands. Bytes that were pushed but not decoded when
    /// the error came are drained first, at the error; `drain(&[])` tells
    /// what they held. Before an error, returns [`Drained::More`] and
    /// ignores `data`.
    pub(crate) fn drain(&mut self, data: &[u8]) -> Drained {
        match &mut self.failed {
            Some(failed) => failed.drain.feed(data),
            None => Drained::More,
        }
    }

    /// Returns `true` when no partial frame or fragmented message is held,
    /// i.e. the decoder owns no heap buffer.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
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
                if self.is_text(&header) {
                    self.check_partial_text(&header)?;
                }
                return Ok(None);
            }
            let (payload, unmasked) = self.take_payload(&header);
            if let Some(message) = self.handle_frame(header, payload, unmasked)? {
                return Ok(Some(message));
            }
        }
    }

    /// Whether a data frame's payload is text: a text frame, or a
    /// continuation of a text message.
    fn is_text(&self, header: &FrameHeader) -> bool {
        match header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.fragmented.as_ref().is_some_and(|f| f.is_text),
            _ => false,
        }
    }

    /// Unmasks and checks what arrived of a pending text frame's payload
    /// since the last call, so that invalid UTF-8 fails the message on the
    /// read that brings it. `buf` holds the start of the payload and nothing
    /// else.
    fn check_partial_text(&mut self, header: &FrameHeader) -> Result<(), DecodeError> {
        let done = self.unmasked as usize;
        let (earlier, new) = self.buf.split_at_mut(done);
        if new.is_empty() {
            return Ok(());
        }
        unmask_from(new, header.mask, done);
        let before = message_end(self.fragmented.as_deref(), earlier);
        check_utf8(before.as_slice(), new, false)?;
        // Less than the frame's length, which is at most `max_message_size`.
        self.unmasked = self.buf.len() as u32;
        Ok(())
    }

    /// Returns the pending header, or parses and consumes the next one.
    fn take_header(&mut self) -> Result<Option<FrameHeader>, DecodeError> {
        if let Some(header) = self.header.take() {
            return Ok(Some(header));
        }
        let in_message = self.fragmented.as_ref().map(|f| f.data.len());
        let limits = Limits {
            max_message_size: self.max_message_size as usize,
            in_message,
        };
        let Some((header, header_len)) = parse_header(&self.buf, limits)? else {
            return Ok(None);
        };
        self.buf.advance(header_len);
        Ok(Some(header))
    }

    /// Splits the payload off the input buffer and unmasks it in place:
    /// the part that earlier reads did not. Returns the payload and how
    /// many bytes at its start earlier reads unmasked (and checked).
    fn take_payload(&mut self, header: &FrameHeader) -> (BytesMut, usize) {
        let mut payload = self.buf.split_to(header.len);
        let unmasked = std::mem::take(&mut self.unmasked) as usize;
        if unmasked == 0 {
            unmask(&mut payload, header.mask);
        } else {
            unmask_from(&mut payload[unmasked..], header.mask, unmasked);
        }
        self.release_consumed_buffer();
        (payload, unmasked)
    }

    /// Turns a complete frame into a message, or stores a fragment. The
    /// first `unmasked` bytes of a text payload were checked by earlier
    /// reads; the rest is checked here.
    fn handle_frame(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
        unmasked: usize,
    ) -> Result<Option<Message>, DecodeError> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => parse_close(&payload).map(|close| Some(Message::Close(close))),
            OpCode::Text | OpCode::Binary => {
                let is_text = header.opcode == OpCode::Text;
                if is_text {
                    let (earlier, new) = payload.split_at(unmasked);
                    check_utf8(earlier, new, header.fin)?;
                }
                let fragmented = Fragmented {
                    is_text,
                    data: payload,
                };
                Ok(self.continue_message(fragmented, header.fin))
            }
            OpCode::Continuation => {
                // `parse_header` rejects continuations outside a message.
                let mut fragmented = self
                    .fragmented
                    .take()
                    .ok_or(DecodeError::UnexpectedContinuation)?;
                if fragmented.is_text {
                    let (earlier, new) = payload.split_at(unmasked);
                    let before = message_end(Some(&fragmented), earlier);
                    check_utf8(before.as_slice(), new, header.fin)?;
                }
                fragmented.data.extend_from_slice(&payload);
                Ok(self.continue_message(*fragmented, header.fin))
            }
        }
    }

    /// Completes the message (`fin`) or keeps it for the next continuation
    /// frame.
    fn continue_message(&mut self, fragmented: Fragmented, fin: bool) -> Option<Message> {
        if !fin {
            self.fragmented = Some(Box::new(fragmented));
            return None;
        }
        let data = fragmented.data.freeze();
        Some(if fragmented.is_text {
            Message::Text(data)
        } else {
            Message::Binary(data)
        })
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

    /// Records `error`, drops all buffered state and starts draining at
    /// the error: after the frame that failed, whose header `buf` starts
    /// with (an error in a header) or whose payload was pending (an error
    /// in a text frame that is still arriving) or consumed (an error in a
    /// complete frame).
    fn fail(&mut self, error: DecodeError) {
        let drain = match error {
            // The client's own close frame was the one at fault: the
            // client waits for the server to end the connection.
            DecodeError::TruncatedCloseCode
            | DecodeError::InvalidCloseCode(_)
            | DecodeError::InvalidCloseReason => Drain::peer_closed(),
            // `buf` holds the start of the pending frame's payload, and
            // nothing after it.
            _ => match self.header.take() {
                Some(pending) => Drain::after_error((pending.len - self.buf.len()) as u64, &[]),
                None => Drain::after_error(0, &self.buf),
            },
        };
        self.failed = Some(Box::new(Failed { error, drain }));
        self.buf = BytesMut::new();
        self.unmasked = 0;
        self.header = None;
        self.fragmented = None;
    }
}

/// The last bytes (at most three) of a text message before a new piece:
/// the end of its earlier fragments, if any, then `earlier`, the part of
/// the current frame that came before the piece. Enough for `check_utf8`
/// to finish a code point cut between pieces.
fn message_end(fragmented: Option<&Fragmented>, earlier: &[u8]) -> MessageEnd {
    let mut end = MessageEnd {
        bytes: [0; 3],
        len: 0,
    };
    let from_frame = earlier.len().min(3);
    let previous = fragmented.map_or(&[][..], |f| &f.data[..]);
    let from_previous = (3 - from_frame).min(previous.len());
    end.bytes[..from_previous].copy_from_slice(&previous[previous.len() - from_previous..]);
    end.bytes[from_previous..from_previous + from_frame]
        .copy_from_slice(&earlier[earlier.len() - from_frame..]);
    end.len = from_previous + from_frame;
    end
}

/// See [`message_end`].
struct MessageEnd {
    bytes: [u8; 3],
    len: usize,
}

impl MessageEnd {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
