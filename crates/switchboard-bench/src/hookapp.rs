//! The hook application of the `hooks` benchmark: the smallest HTTP/1.1
//! server that answers Switchboard's connect and publish hooks, so that what
//! the benchmark measures is Switchboard's cost of asking, not the
//! application's cost of answering.
//!
//! One thread, one current-thread Tokio runtime, keep-alive connections, a
//! request parsed in place from a reused buffer, and fixed answers:
//!
//! - `POST …/connect`: `200 {"user":"u-<sid>"}` for the `sid` cookie in the
//!   body's `cookies`, `401 {"reason":"no session"}` without one;
//! - `POST …/publish` (and any other `POST`): `200 {}`;
//! - `GET` (any path): `200 ok`, for readiness checks.
//!
//! The signature is not checked: a real application must check it (see
//! docs/hooks.md), but its cost is the application's, not Switchboard's.

use std::io;
use std::net::SocketAddr;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head or body accepted (hook requests are small).
const MAX_REQUEST: usize = 64 << 10;

/// What a request is answered with.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `200` with this JSON body.
    Ok(Vec<u8>),
    /// `401` with a reason.
    Unauthorized,
    /// `200 ok` to a `GET`.
    Health,
}

/// The `sid` cookie's value in a connect hook's body
/// (`{"cookies":{"sid":"…"}}`), when it is a plain token (letters, digits,
/// `-`, `_`, `.`, `%`: what the load tool sends, and what needs no JSON
/// escaping in the answer).
pub fn sid_from_body(body: &[u8]) -> Option<&[u8]> {
    let c = memmem::find(body, b"\"cookies\"")?;
    let rest = &body[c..];
    let i = memmem::find(rest, b"\"sid\"")? + 5;
    let rest = &rest[i..];
    let q = rest.iter().position(|&b| !matches!(b, b' ' | b':'))?;
    let rest = rest.get(q..)?.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let sid = &rest[..end];
    let plain = !sid.is_empty()
        && sid.len() <= 200
        && sid
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'%'));
    plain.then_some(sid)
}

/// The answer to a request with this method, path and body.
pub fn answer(method: &[u8], path: &[u8], body: &[u8]) -> Answer {
    if method == b"GET" {
        return Answer::Health;
    }
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    if path.ends_with(b"/connect") {
        return match sid_from_body(body) {
            Some(sid) => {
                let mut v = Vec::with_capacity(sid.len() + 12);
                v.extend_from_slice(b"{\"user\":\"u-");
                v.extend_from_slice(sid);
                v.extend_from_slice(b"\"}");
                Answer::Ok(v)
            }
            None => Answer::Unauthorized,
        };
    }
    Answer::Ok(b"{}".to_vec())
}

/// A parsed request head: method, path, body length, head length, and
/// whether the client asked to close.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: (usize, usize),
    /// The request target.
    pub path: (usize, usize),
    /// `Content-Length` (0 without one).
    pub content_length: usize,
    /// Bytes of head, blank line included.
    pub head_len: usize,
    /// `Connection: close` was sent.
    pub close: bool,
}

/// Parses a request head at the start of `buf`: `Ok(None)` until the blank
/// line has arrived.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buf[..end];
    let line_end = memmem::find(head, b"\r\n").unwrap_or(head.len());
    let line = &head[..line_end];
    let sp1 = memchr::memchr(b' ', line).ok_or("no method")?;
    let sp2 = memchr::memchr(b' ', &line[sp1 + 1..]).ok_or("no path")? + sp1 + 1;
    let mut content_length = 0;
    let mut close = false;
    for h in head[line_end..].split(|&b| b == b'\n') {
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        let Some(colon) = memchr::memchr(b':', h) else {
            continue;
        };
        let (name, value) = (&h[..colon], h[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("bad content-length")?;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("chunked bodies are not supported".into());
        }
    }
    if content_length > MAX_REQUEST {
        return Err("body too large".into());
    }
    Ok(Some(Head {
        method: (0, sp1),
        path: (sp1 + 1, sp2),
        content_length,
        head_len: end + 4,
        close,
    }))
}

/// Appends the response for `a` to `out`.
pub fn write_response(out: &mut Vec<u8>, a: &Answer) {
    use std::io::Write;
    let (status, body): (&str, &[u8]) = match a {
        Answer::Ok(b) => ("200 OK", b),
        Answer::Unauthorized => ("401 Unauthorized", b"{\"reason\":\"no session\"}"),
        Answer::Health => ("200 OK", b"ok"),
    };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

async fn serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 8 << 10];
    let mut len = 0;
    let mut out = Vec::with_capacity(256);
    loop {
        // Answer every complete request in the buffer, then write once.
        let mut used = 0;
        let mut close = false;
        out.clear();
        while let Some(h) = parse_head(&buf[used..len]).map_err(io::Error::other)? {
            let total = h.head_len + h.content_length;
            if len - used < total {
                break;
            }
            let r = &buf[used..used + total];
            let a = answer(
                &r[h.method.0..h.method.1],
                &r[h.path.0..h.path.1],
                &r[h.head_len..],
            );
            write_response(&mut out, &a);
            used += total;
            if h.close {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
        }
        if close {
            return Ok(());
        }
        buf.copy_within(used..len, 0);
        len -= used;
        if len == buf.len() {
            if buf.len() >= 2 * MAX_REQUEST {
                return Err(io::Error::other("request too large"));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
}

/// Serves the hook application on `127.0.0.1:port` until the process ends.
pub fn serve(port: u16) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        eprintln!("hook app listening on {}", l.local_addr()?);
        loop {
            let (s, _) = l.accept().await?;
            tokio::task::spawn_local(async move {
                if let Err(e) = serve_conn(s).await {
                    eprintln!("hook app: connection ended: {e}");
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers_with_the_sid() {
        let body =
            br#"{"path":"/ws/chat","client_ip":"127.0.0.2","cookies":{"sid":"s-17"},"headers":{}}"#;
        assert_eq!(sid_from_body(body), Some(&b"s-17"[..]));
        assert_eq!(
            answer(b"POST", b"/hooks/connect", body),
            Answer::Ok(br#"{"user":"u-s-17"}"#.to_vec())
        );
        let none = br#"{"path":"/ws/chat","client_ip":"127.0.0.2","cookies":{},"headers":{}}"#;
        assert_eq!(answer(b"POST", b"/connect", none), Answer::Unauthorized);
        let odd = br#"{"cookies":{"sid":"a\"b"}}"#;
        assert_eq!(sid_from_body(odd), None);
        assert_eq!(
            answer(b"POST", b"/hooks/publish", br#"{"room":"r"}"#),
            Answer::Ok(b"{}".to_vec())
        );
        assert_eq!(answer(b"GET", b"/health", b""), Answer::Health);
    }

    #[test]
    fn parses_pipelined_heads() {
        let req = b"POST /hooks/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /";
        let h = parse_head(req).unwrap().unwrap();
        assert_eq!(&req[h.method.0..h.method.1], b"POST");
        assert_eq!(&req[h.path.0..h.path.1], b"/hooks/publish");
        assert_eq!(h.content_length, 2);
        assert_eq!(&req[h.head_len..h.head_len + 2], b"{}");
        assert!(!h.close);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n").unwrap(), None);
        assert!(parse_head(b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n").is_err());
        let c = parse_head(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(c.close);
        let mut out = Vec::new();
        write_response(&mut out, &Answer::Ok(b"{}".to_vec()));
        assert!(out.ends_with(b"content-length: 2\r\n\r\n{}"));
    }
}
