//! A lean WebSocket client (RFC 6455), just what load generation needs.
//!
//! Frames are parsed in place from one reused read buffer: a received text
//! message is a slice of that buffer ([`WsClient::payload`]) valid until the
//! next receive, so delivering a message allocates nothing. Outgoing frames
//! are masked (as clients must) into one reused write buffer. Pings are
//! answered, fragmented messages are reassembled, and close codes are
//! reported. No extensions (no compression) are offered.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net;
use crate::target::Target;

/// Largest frame or reassembled message accepted (16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Largest handshake response accepted.
const MAX_HANDSHAKE: usize = 16 << 10;
/// Initial read buffer size per connection.
const INITIAL_BUF: usize = 4 << 10;

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;
const OP_CONT: u8 = 0x0;

/// Why a WebSocket connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP or I/O failure.
    Io(io::Error),
    /// The server answered with an HTTP status other than 101.
    Status(u16),
    /// The response was not a valid handshake response.
    Malformed(String),
    /// No complete response in time.
    Timeout,
}

impl ConnectError {
    /// A short stable label for failure counts: `http_401`, `refused`, ...
    pub fn label(&self) -> String {
        match self {
            ConnectError::Io(e) => net::error_kind(e),
            ConnectError::Status(s) => format!("http_{s}"),
            ConnectError::Malformed(_) => "malformed_response".into(),
            ConnectError::Timeout => "timeout".into(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "I/O error: {e}"),
            ConnectError::Status(s) => write!(f, "server answered HTTP {s} instead of 101"),
            ConnectError::Malformed(m) => write!(f, "malformed handshake response: {m}"),
            ConnectError::Timeout => write!(f, "handshake timed out"),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// What [`WsClient::recv`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A text message; read it with [`WsClient::payload`].
    Text,
    /// A binary message; read it with [`WsClient::payload`].
    Binary,
    /// The server sent a close frame with this code (`None`: no code).
    Close(Option<u16>),
    /// The TCP connection ended without a close frame.
    Eof,
}

/// The fixed part of a parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Bytes of header.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
}

/// Parses a frame header at the start of `buf`: `Ok(None)` when more bytes
/// are needed, an error for reserved bits, unknown opcodes or oversize
/// frames.
pub fn parse_header(buf: &[u8]) -> io::Result<Option<FrameHeader>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(invalid("reserved bits set (no extension was negotiated)"));
    }
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(invalid("unknown opcode"));
    }
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(invalid("frame larger than 16 MiB"));
    }
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return Err(invalid("bad control frame"));
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        header_len: pos,
        payload_len: len as usize,
    }))
}

/// XORs `data` with the masking key (RFC 6455 section 5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one complete, final frame with `opcode` and `payload` to `out`,
/// masked with `mask` when given.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n <= 0xFFFF {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], m);
        }
        None => out.extend_from_slice(payload),
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Parses an HTTP response head at the start of `buf`: `Ok(None)` when the
/// blank line has not arrived yet, else the status code and the head's
/// length.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let line_end = memchr::memmem::find(buf, b"\r\n").unwrap_or(end);
    let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| "status line not UTF-8")?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    Ok(Some((status, end + 4)))
}

/// A WebSocket client connection.
#[derive(Debug)]
pub struct WsClient {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    frag: Vec<u8>,
    frag_opcode: u8,
    payload: (usize, usize),
    payload_in_frag: bool,
    mask_state: u32,
    pong_due: Option<Vec<u8>>,
    auto_pong: bool,
}

impl WsClient {
    /// Opens a TCP connection from `src` and performs the opening handshake
    /// for `target` (its path and query), within `timeout`.
    pub async fn connect(
        target: &Target,
        src: Option<std::net::IpAddr>,
        timeout: Duration,
    ) -> Result<WsClient, ConnectError> {
        Self::connect_with_headers(target, src, timeout, "").await
    }

    /// [`connect`](Self::connect) with extra request headers: `headers` is
    /// empty or whole header lines, each ending with `\r\n` (e.g.
    /// `Cookie: sid=a\r\n`).
    pub async fn connect_with_headers(
        target: &Target,
        src: Option<std::net::IpAddr>,
        timeout: Duration,
        headers: &str,
    ) -> Result<WsClient, ConnectError> {
        match tokio::time::timeout(timeout, Self::connect_inner(target, src, headers)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect_inner(
        target: &Target,
        src: Option<std::net::IpAddr>,
        headers: &str,
    ) -> Result<WsClient, ConnectError> {
        let stream = net::connect(target.addr, src).await?;
        let seed = src
            .map(|ip| match ip {
                std::net::IpAddr::V4(v4) => u32::from(v4),
                std::net::IpAddr::V6(_) => 1,
            })
            .unwrap_or(1);
        Self::handshake(stream, target, headers, seed).await
    }

    /// Performs the opening handshake for `target` on a TCP connection
    /// the caller opened (for example with socket options of its own),
    /// within `timeout`.
    pub async fn upgrade(
        stream: TcpStream,
        target: &Target,
        timeout: Duration,
    ) -> Result<WsClient, ConnectError> {
        match tokio::time::timeout(timeout, Self::handshake(stream, target, "", 1)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn handshake(
        stream: TcpStream,
        target: &Target,
        headers: &str,
        seed: u32,
    ) -> Result<WsClient, ConnectError> {
        let seed = seed ^ (crate::clock::now_ns() as u32) | 1;
        let mut c = WsClient {
            stream,
            rbuf: vec![0; INITIAL_BUF],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(256),
            frag: Vec::new(),
            frag_opcode: 0,
            payload: (0, 0),
            payload_in_frag: false,
            mask_state: seed,
            pong_due: None,
            auto_pong: true,
        };
        let key = c.handshake_key();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
            target.path_and_query, target.host_header
        );
        c.stream.write_all(req.as_bytes()).await?;
        loop {
            match parse_response_head(&c.rbuf[..c.rend]) {
                Ok(Some((101, head_len))) => {
                    c.rstart = head_len;
                    return Ok(c);
                }
                Ok(Some((status, _))) => return Err(ConnectError::Status(status)),
                Ok(None) => {}
                Err(m) => return Err(ConnectError::Malformed(m)),
            }
            if c.rend == c.rbuf.len() {
                if c.rbuf.len() >= MAX_HANDSHAKE {
                    return Err(ConnectError::Malformed("response head too large".into()));
                }
                c.rbuf.resize(c.rbuf.len() * 2, 0);
            }
            let n = c.stream.read(&mut c.rbuf[c.rend..]).await?;
            if n == 0 {
                return Err(ConnectError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during handshake",
                )));
            }
            c.rend += n;
        }
    }

    /// A base64 `Sec-WebSocket-Key` (16 pseudo-random bytes).
    fn handshake_key(&mut self) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bytes = [0u8; 18];
        for chunk in bytes[..16].chunks_mut(4) {
            chunk.copy_from_slice(&self.next_mask());
        }
        let mut s = String::with_capacity(24);
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            for shift in [18, 12, 6, 0] {
                s.push(B64[((n >> shift) & 63) as usize] as char);
            }
        }
        // 16 bytes encode to 22 characters plus "==".
        s.truncate(22);
        s.push_str("==");
        s
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be cryptographic for a load generator
        // talking to loopback, only non-constant.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_le_bytes()
    }

    /// Reads up to `bytes` from the socket at a time (4 KiB unless set).
    /// A socket with a small receive buffer that was let fill up wants its
    /// buffer emptied in one read: reads smaller than the buffer open the
    /// peer's window by less than the kernel waits for before it tells the
    /// peer, and on loopback the sender may then fall back to probing a
    /// closed window with growing pauses.
    pub fn set_read_size(&mut self, bytes: usize) {
        if bytes > self.rbuf.len() {
            self.rbuf.resize(bytes, 0);
        }
    }

    /// Whether pings are answered inside [`recv`](Self::recv) (the default).
    /// When off, the pong is sent before the next outgoing frame instead,
    /// which keeps `recv` free of writes and so safe to cancel in
    /// `select!`.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// The payload of the last text or binary message returned by
    /// [`recv`](Self::recv); valid until the next call.
    pub fn payload(&self) -> &[u8] {
        if self.payload_in_frag {
            &self.frag
        } else {
            &self.rbuf[self.payload.0..self.payload.1]
        }
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.wbuf.clear();
        if let Some(p) = self.pong_due.take() {
            let m = self.next_mask();
            encode_frame(&mut self.wbuf, OP_PONG, &p, Some(m));
        }
        let m = self.next_mask();
        encode_frame(&mut self.wbuf, opcode, payload, Some(m));
        self.stream.write_all(&self.wbuf).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.write_frame(OP_TEXT, payload).await
    }

    /// Sends a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) -> io::Result<()> {
        self.write_frame(OP_CLOSE, &code.to_be_bytes()).await
    }

    /// Receives the next text, binary or close message (pings and pongs are
    /// handled inside). Cancel-safe when auto-pong is off.
    pub async fn recv(&mut self) -> io::Result<Msg> {
        loop {
            let msg = self.parse_buffered()?;
            if let Some(p) = self.pong_due.take_if(|_| self.auto_pong) {
                // Only the latest ping needs an answer (RFC 6455 5.5.3).
                self.wbuf.clear();
                let m = self.next_mask();
                encode_frame(&mut self.wbuf, OP_PONG, &p, Some(m));
                self.stream.write_all(&self.wbuf).await?;
            }
            if let Some(m) = msg {
                return Ok(m);
            }
            self.make_room();
            let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
            if n == 0 {
                return Ok(Msg::Eof);
            }
            self.rend += n;
        }
    }

    /// Ensures free space after `rend`: reuses the buffer from its start when
    /// everything was consumed, moves a partial frame to the front, and grows
    /// for frames larger than the buffer.
    fn make_room(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
            return;
        }
        let need = parse_header(&self.rbuf[self.rstart..self.rend])
            .ok()
            .flatten()
            .map(|h| h.header_len + h.payload_len)
            .unwrap_or(14);
        if self.rstart > 0 && (self.rend == self.rbuf.len() || self.rstart + need > self.rbuf.len())
        {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == self.rbuf.len() || need > self.rbuf.len() {
            let want = need.max(self.rbuf.len() * 2);
            self.rbuf.resize(want, 0);
        }
    }

    /// Consumes complete frames already in the buffer until one yields a
    /// message; `Ok(None)` when more bytes are needed.
    fn parse_buffered(&mut self) -> io::Result<Option<Msg>> {
        loop {
            let avail = &self.rbuf[self.rstart..self.rend];
            let Some(h) = parse_header(avail)? else {
                return Ok(None);
            };
            let total = h.header_len + h.payload_len;
            if avail.len() < total {
                return Ok(None);
            }
            let ps = self.rstart + h.header_len;
            let pe = self.rstart + total;
            self.rstart += total;
            if let Some(m) = h.mask {
                apply_mask(&mut self.rbuf[ps..pe], m);
            }
            match h.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag_opcode != 0 {
                        return Err(invalid("new message inside a fragmented one"));
                    }
                    if h.fin {
                        self.payload = (ps, pe);
                        self.payload_in_frag = false;
                        return Ok(Some(if h.opcode == OP_TEXT {
                            Msg::Text
                        } else {
                            Msg::Binary
                        }));
                    }
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.rbuf[ps..pe]);
                    self.frag_opcode = h.opcode;
                }
                OP_CONT => {
                    if self.frag_opcode == 0 {
                        return Err(invalid("continuation without a first fragment"));
                    }
                    if self.frag.len() + (pe - ps) > MAX_MESSAGE {
                        return Err(invalid("message larger than 16 MiB"));
                    }
                    self.frag.extend_from_slice(&self.rbuf[ps..pe]);
                    if h.fin {
                        let op = std::mem::take(&mut self.frag_opcode);
                        self.payload_in_frag = true;
                        return Ok(Some(if op == OP_TEXT {
                            Msg::Text
                        } else {
                            Msg::Binary
                        }));
                    }
                }
                OP_CLOSE => {
                    let code = (pe - ps >= 2)
                        .then(|| u16::from_be_bytes([self.rbuf[ps], self.rbuf[ps + 1]]));
                    return Ok(Some(Msg::Close(code)));
                }
                OP_PING => {
                    self.pong_due = Some(self.rbuf[ps..pe].to_vec());
                }
                _ => {} // pong
            }
        }
    }

    /// Sends a close frame (1000) and waits up to `wait` for the server's
    /// close or the end of the connection.
    pub async fn close(mut self, wait: Duration) {
        if self.send_close(1000).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(wait, async {
            while let Ok(Msg::Text | Msg::Binary) = self.recv().await {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
