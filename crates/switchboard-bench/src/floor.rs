//! The raw floor: a bare epoll server (through `mio`, on one thread) that
//! speaks just enough HTTP and WebSocket for the `raw` protocol scenarios,
//! and on `POST /publish` writes the body, framed once, to every WebSocket
//! with one `write` each and does nothing else: no queue, no task, no
//! allocation per delivery. What it costs per delivery is the kernel's cost
//! of a loopback write, which no server goes under without putting several
//! messages into one write.
//!
//! Endpoints: `GET /health` (200), `GET /ws/chat` with an upgrade (101),
//! `POST /publish` (the raw body to every WebSocket; 200). Frames from
//! clients are read and dropped. A socket that does not take a whole frame
//! is closed, so a partial frame is never followed by another; the tool's
//! loss counter shows it. It binds to 127.0.0.1 only.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

const LISTENER: Token = Token(usize::MAX);
/// Requests (heads plus bodies) larger than this are refused.
const MAX_REQUEST: usize = 1 << 20;

enum State {
    Http(Vec<u8>),
    Ws,
}

struct Conn {
    stream: TcpStream,
    state: State,
}

/// Serves on 127.0.0.1:`port` until the process is killed.
pub fn serve(port: u16) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut scratch = vec![0u8; 64 * 1024];
    eprintln!("floor: listening on {}", listener.local_addr()?);
    loop {
        poll.poll(&mut events, None)?;
        for ev in &events {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let t = next;
                            next += 1;
                            poll.registry()
                                .register(&mut stream, Token(t), Interest::READABLE)?;
                            conns.insert(
                                t,
                                Conn {
                                    stream,
                                    state: State::Http(Vec::new()),
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                continue;
            }
            let t = ev.token().0;
            let mut publish = None;
            let keep = match conns.get_mut(&t) {
                Some(c) => on_readable(c, &mut scratch, &mut publish),
                None => continue,
            };
            if !keep && let Some(mut c) = conns.remove(&t) {
                let _ = poll.registry().deregister(&mut c.stream);
            }
            if let Some(body) = publish {
                broadcast(&mut conns, &poll, &frame(&body));
            }
        }
    }
}

/// Reads what arrived; returns whether the connection stays open. A
/// complete `POST /publish` leaves its body in `publish`.
fn on_readable(c: &mut Conn, scratch: &mut [u8], publish: &mut Option<Vec<u8>>) -> bool {
    loop {
        match c.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                if let State::Http(buf) = &mut c.state {
                    buf.extend_from_slice(&scratch[..n]);
                    if buf.len() > MAX_REQUEST {
                        return false;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    // Answer every complete request in the buffer (keep-alive).
    loop {
        let State::Http(buf) = &mut c.state else {
            return true;
        };
        let Some(head_end) = find(buf, b"\r\n\r\n") else {
            return true;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request = lines.next().unwrap_or("");
        let mut parts = request.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut length = 0usize;
        let mut key = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.to_string());
            }
        }
        let total = head_end + 4 + length;
        if buf.len() < total {
            return true;
        }
        let body = buf[head_end + 4..total].to_vec();
        buf.drain(..total);
        let reply: Vec<u8> = match (method, path, key) {
            ("GET", "/ws/chat", Some(key)) => {
                c.state = State::Ws;
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    accept_key(&key)
                )
                .into_bytes()
            }
            ("GET", "/health", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            ("POST", "/publish", _) => {
                *publish = Some(body);
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        // Replies are small; a socket that cannot take one is dropped.
        if c.stream.write_all(&reply).is_err() {
            return false;
        }
    }
}

/// One unmasked text frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    crate::ws::encode_frame(&mut f, crate::ws::OP_TEXT, payload, None);
    f
}

/// One `write` of the same frame to every WebSocket.
fn broadcast(conns: &mut HashMap<usize, Conn>, poll: &Poll, frame: &[u8]) {
    let mut dead = Vec::new();
    for (t, c) in conns.iter_mut() {
        if matches!(c.state, State::Ws) {
            match c.stream.write(frame) {
                Ok(n) if n == frame.len() => {}
                _ => dead.push(*t),
            }
        }
    }
    for t in dead {
        if let Some(mut c) = conns.remove(&t) {
            let _ = poll.registry().deregister(&mut c.stream);
        }
    }
}

fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_use_the_right_length_form() {
        assert_eq!(frame(b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = frame(&[0u8; 200]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 200]);
        let f = frame(&vec![0u8; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70_000 + 10);
    }
}
