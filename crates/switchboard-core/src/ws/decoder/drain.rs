//! Reading past a protocol error, so that the close handshake can finish.
//!
//! Once the decoder has failed, the server sends its close frame, but the
//! client may still be sending: the rest of a message over the size limit,
//! the frames it wrote before it read the close. Closing the socket with
//! those bytes unread makes the kernel answer with a reset, which can reach
//! the client before it has read the close frame, and the client then sees
//! a dropped connection instead of the close code. So the bytes are read
//! and thrown away, frame by frame, until the client's own close frame
//! (which completes the handshake), and no further than [`DRAIN_LIMIT`];
//! the session bounds the time.

/// Most bytes read and discarded after an error before the connection is
/// given up on (the socket is then closed with whatever is still unread).
pub(crate) const DRAIN_LIMIT: u64 = 16 << 20;

/// Longest frame header: 2 bytes, a 64-bit length and the mask.
const MAX_HEADER: usize = 14;

/// Where reading past an error stands; see [`Drain::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Nothing decisive yet: read more.
    More,
    /// The client's close frame arrived: the handshake is complete.
    PeerClosed,
    /// More than [`DRAIN_LIMIT`] bytes were discarded.
    Limit,
}

/// The state of reading past an error.
#[derive(Debug)]
pub(super) struct Drain {
    state: State,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// The next frame's header, as far as it has arrived.
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Bytes discarded since the error.
    discarded: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Frame boundaries are known: skip frames, looking for a close.
    Frames,
    /// A length could not be read: frame boundaries are lost, every byte is
    /// discarded until the limit.
    Lost,
    /// The client's close frame was seen.
    PeerClosed,
}

impl Drain {
    /// Drains a stream that is `skip` bytes before a frame boundary, then
    /// `buffered`, bytes that arrived before the error was found (they do
    /// not count against the limit).
    pub(super) fn after_error(skip: u64, buffered: &[u8]) -> Self {
        let mut drain = Drain {
            state: State::Frames,
            skip,
            head: [0; MAX_HEADER],
            head_len: 0,
            discarded: 0,
        };
        drain.skim(buffered);
        drain
    }

    /// Drains a stream whose last frame was the client's close frame.
    pub(super) fn peer_closed() -> Self {
        Drain {
            state: State::PeerClosed,
            ..Drain::after_error(0, &[])
        }
    }

    /// Discards `data`, the next bytes from the client, and tells what is
    /// known so far.
    pub(super) fn feed(&mut self, data: &[u8]) -> Drained {
        self.discarded = self.discarded.saturating_add(data.len() as u64);
        self.skim(data);
        match self.state {
            State::PeerClosed => Drained::PeerClosed,
            _ if self.discarded > DRAIN_LIMIT => Drained::Limit,
            _ => Drained::More,
        }
    }

    /// Walks over `data` frame by frame. Header rules are not checked
    /// again: a frame of any opcode, masked or not, is skipped by its
    /// length, and one whose opcode is Close ends the drain.
    fn skim(&mut self, mut data: &[u8]) {
        while self.state == State::Frames && !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let need = self.header_len();
            let take = (need - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            data = &data[take..];
            if self.head_len == need && need == self.header_len() {
                self.end_header();
            }
        }
    }

    /// Length of the header being read, as far as its first two bytes
    /// tell (2 until they have arrived).
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let extension = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extension + mask
    }

    /// A whole header has arrived: a close ends the drain, any other frame
    /// is skipped.
    fn end_header(&mut self) {
        self.head_len = 0;
        if self.head[0] & 0x0F == 0x8 {
            self.state = State::PeerClosed;
            return;
        }
        let len = match self.head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(bytes)
            }
            len7 => u64::from(len7),
        };
        if len >> 63 != 0 {
            self.state = State::Lost;
        }
        self.skip = len;
    }
}
