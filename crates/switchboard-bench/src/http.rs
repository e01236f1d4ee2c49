//! A minimal keep-alive HTTP/1.1 client for the publisher and readiness
//! checks: one connection, one request at a time, request and response
//! buffers reused.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net;
use crate::target::Target;
use crate::ws::parse_response_head;

/// Largest response accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// Where the body of a response ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    /// Status code.
    pub status: u16,
    /// Length of head plus body.
    pub total_len: usize,
    /// Whether the server will close the connection after it.
    pub close: bool,
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Finds the end of the chunked body starting at `buf[0]`: `Ok(None)` when
/// incomplete.
fn chunked_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    loop {
        let Some(eol) = memchr::memmem::find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|_| "bad chunk size")?;
        let size_txt = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16)
            .map_err(|_| format!("bad chunk size {size_txt:?}"))?;
        pos += eol + 2;
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                let Some(eol) = memchr::memmem::find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// Parses a complete response at the start of `buf`: `Ok(None)` when more
/// bytes are needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseFrame>, String> {
    let Some((status, head_len)) = parse_response_head(buf)? else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| "response head not UTF-8")?;
    let close = header_value(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let body_len = if status == 204 || status == 304 || (100..200).contains(&status) {
        Some(0)
    } else if header_value(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        chunked_len(&buf[head_len..])?
    } else if let Some(cl) = header_value(head, "content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| format!("bad Content-Length {cl:?}"))?;
        (buf.len() >= head_len + n).then_some(n)
    } else {
        return Err("response without Content-Length or chunked encoding".into());
    };
    Ok(body_len.map(|n| ResponseFrame {
        status,
        total_len: head_len + n,
        close,
    }))
}

/// A keep-alive HTTP/1.1 connection to one target.
#[derive(Debug)]
pub struct HttpClient {
    target: Target,
    src: Option<std::net::IpAddr>,
    stream: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
    last_body: (usize, usize),
    timeout: Duration,
}

impl HttpClient {
    /// A client for `target`, connecting from `src`; each request must
    /// complete within `timeout`.
    pub fn new(target: Target, src: Option<std::net::IpAddr>, timeout: Duration) -> HttpClient {
        HttpClient {
            target,
            src,
            stream: None,
            req: Vec::with_capacity(512),
            buf: vec![0; 4096],
            last_body: (0, 0),
            timeout,
        }
    }

    /// POSTs `body` as `application/json` and returns the status.
    pub async fn post(&mut self, body: &[u8]) -> io::Result<u16> {
        self.request("POST", body).await
    }

    /// GETs the target and returns the status.
    pub async fn get(&mut self) -> io::Result<u16> {
        self.request("GET", b"").await
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.last_body.0..self.last_body.1]
    }

    async fn request(&mut self, method: &str, body: &[u8]) -> io::Result<u16> {
        use std::io::Write;
        self.req.clear();
        write!(
            self.req,
            "{method} {} HTTP/1.1\r\nHost: {}\r\n",
            self.target.path_and_query, self.target.host_header
        )?;
        if method == "POST" {
            write!(
                self.req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        match tokio::time::timeout(self.timeout, self.exchange()).await {
            Ok(r) => {
                if r.is_err() {
                    self.stream = None;
                }
                r
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP request timed out",
                ))
            }
        }
    }

    async fn exchange(&mut self) -> io::Result<u16> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => self
                .stream
                .insert(net::connect(self.target.addr, self.src).await?),
        };
        stream.write_all(&self.req).await?;
        let mut filled = 0;
        loop {
            let parsed = parse_response(&self.buf[..filled])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(f) = parsed {
                let head = parse_response_head(&self.buf[..filled])
                    .ok()
                    .flatten()
                    .map_or(0, |(_, h)| h);
                self.last_body = (head, f.total_len);
                if f.close {
                    self.stream = None;
                }
                return Ok(f.status);
            }
            if filled == self.buf.len() {
                if self.buf.len() >= MAX_RESPONSE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "HTTP response too large",
                    ));
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = stream.read(&mut self.buf[filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before responding",
                ));
            }
            filled += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let f = parse_response(r).unwrap().unwrap();
        assert_eq!(f.status, 200);
        assert_eq!(f.total_len, r.len());
        assert!(!f.close);
        assert_eq!(parse_response(&r[..r.len() - 1]).unwrap(), None);
        let r = b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nConnection: close\r\n\r\n";
        let f = parse_response(r).unwrap().unwrap();
        assert_eq!((f.status, f.close), (503, true));
    }

    #[test]
    fn chunked_responses() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        let f = parse_response(r).unwrap().unwrap();
        assert_eq!(f.total_len, r.len());
        for cut in 1..r.len() - 40 {
            assert_eq!(
                parse_response(&r[..r.len() - cut]).unwrap(),
                None,
                "cut {cut}"
            );
        }
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn no_length_is_an_error_and_204_has_no_body() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc").is_err());
        let f = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(f.total_len, 27);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keep_alive_round_trips() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            for _ in 0..2 {
                let mut got = 0;
                loop {
                    let n = s.read(&mut buf[got..]).await.unwrap();
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let cl = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if got >= i + 4 + cl {
                            seen.push(text);
                            break;
                        }
                    }
                }
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
            seen
        });
        let t = Target::parse(&format!("http://127.0.0.1:{port}/publish")).unwrap();
        let mut c = HttpClient::new(t, None, Duration::from_secs(5));
        assert_eq!(c.post(b"{\"a\":1}").await.unwrap(), 200);
        assert_eq!(c.body(), b"ok");
        assert_eq!(c.post(b"{}").await.unwrap(), 200);
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /publish HTTP/1.1\r\nHost: 127.0.0.1:"));
        assert!(seen[0].ends_with("{\"a\":1}"));
        assert!(seen[1].ends_with("\r\n\r\n{}"));
    }
}
