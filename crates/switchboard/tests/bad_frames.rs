//! The corpus of bad frames (`fixtures/bad-frames.json`) replayed against a
//! live server over raw TCP: each frame gets its documented error frame or
//! close code, the server stays up, and a bystander in a room keeps getting
//! its messages.

mod common;

use common::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Deserialize)]
struct Corpus {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default = "text_opcode")]
    opcode: u8,
    #[serde(default = "yes")]
    fin: bool,
    #[serde(default)]
    rsv: u8,
    #[serde(default)]
    unmasked: bool,
    text: Option<String>,
    hex: Option<String>,
    #[serde(default = "one")]
    repeat: usize,
    prefix: Option<String>,
    nest: Option<usize>,
    suffix: Option<String>,
    raw: Option<String>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    error: Option<String>,
    reply: Option<String>,
    close: Option<u16>,
    id: Option<u64>,
    mentions: Option<String>,
}

fn text_opcode() -> u8 {
    1
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

impl Case {
    fn payload(&self) -> Vec<u8> {
        let one = match (&self.text, &self.hex, self.nest) {
            (Some(t), _, _) => t.clone().into_bytes(),
            (_, Some(h), _) => unhex(h),
            (_, _, Some(n)) => {
                let mut p = self.prefix.clone().unwrap_or_default();
                p.push_str(&"[".repeat(n));
                p.push_str(&"]".repeat(n));
                p.push_str(self.suffix.as_deref().unwrap_or_default());
                p.into_bytes()
            }
            _ => Vec::new(),
        };
        one.repeat(self.repeat)
    }

    /// The bytes on the wire.
    fn wire(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return unhex(raw);
        }
        let payload = self.payload();
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let mask_bit = if self.unmasked { 0 } else { 0x80 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if self.unmasked {
            out.extend_from_slice(&payload);
        } else {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        out
    }
}

/// A client that speaks raw bytes after a real handshake.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// A frame from the server (servers do not mask).
enum Frame {
    Text(Value),
    Close(u16, String),
    Other,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        let request = format!(
            "GET /ws/chat HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.buf[..end]).to_string();
                raw.buf.drain(..end + 4);
                break head;
            }
            raw.fill().await;
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        match raw.frame().await {
            Frame::Text(v) => assert_eq!(v["type"], "welcome", "{v}"),
            _ => panic!("no welcome"),
        }
        raw
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if self.buf.len() >= 2 {
                let len7 = (self.buf[1] & 0x7f) as usize;
                let (len, at) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload: Vec<u8> = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return match opcode {
                        1 => Frame::Text(serde_json::from_slice(&payload).expect("JSON")),
                        8 => {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            Frame::Close(code, String::from_utf8_lossy(&payload[2..]).into())
                        }
                        _ => Frame::Other,
                    };
                }
            }
            assert!(
                self.fill().await > 0,
                "the connection ended without a close frame"
            );
        }
    }

    /// The next text or close frame (pings skipped).
    async fn next(&mut self) -> Frame {
        loop {
            match self.frame().await {
                Frame::Other => continue,
                f => return f,
            }
        }
    }
}

#[tokio::test]
async fn every_bad_frame_gets_its_documented_answer_and_nobody_else_notices() {
    let corpus: Corpus =
        serde_json::from_str(include_str!("fixtures/bad-frames.json")).expect("corpus");
    assert!(corpus.cases.len() >= 30);
    let server = TestServer::start_default().await;
    let mut bystander = connect(&server.ws("/ws/chat")).await;
    bystander.join("lobby").await;
    for (n, case) in corpus.cases.iter().enumerate() {
        let mut raw = Raw::connect(&server).await;
        raw.tcp.write_all(&case.wire()).await.unwrap();
        let name = &case.name;
        let error = case
            .expect
            .error
            .as_ref()
            .map(|code| ("error", code.as_str()));
        let reply = case.expect.reply.as_ref().map(|kind| (kind.as_str(), ""));
        match (error.or(reply), case.expect.close) {
            (Some((kind, code)), None) => {
                let v = match raw.next().await {
                    Frame::Text(v) => v,
                    Frame::Close(code, reason) => {
                        panic!("{name}: expected an error frame, got close {code} {reason:?}")
                    }
                    Frame::Other => unreachable!("skipped by next"),
                };
                assert_eq!(v["type"].as_str(), Some(kind), "{name}: {v}");
                if kind == "error" {
                    assert_eq!(v["code"].as_str(), Some(code), "{name}: {v}");
                }
                if let Some(id) = case.expect.id {
                    assert_eq!(v["id"], id, "{name}: {v}");
                }
                if let Some(m) = &case.expect.mentions {
                    assert!(
                        v["message"].as_str().unwrap().contains(m.as_str()),
                        "{name}: {v}"
                    );
                }
                // Still open: a valid frame is answered.
                raw.tcp
                    .write_all(
                        &Case {
                            text: Some(r#"{"type":"presence","room":"lobby","id":99}"#.into()),
                            ..serde_json::from_value(json!({"name": "ok", "expect": {}})).unwrap()
                        }
                        .wire(),
                    )
                    .await
                    .unwrap();
                let Frame::Text(v) = raw.next().await else {
                    panic!("{name}: the connection did not stay open");
                };
                assert_eq!(
                    (v["type"].as_str(), v["id"].as_u64()),
                    (Some("presence"), Some(99)),
                    "{name}: {v}"
                );
            }
            (None, Some(code)) => {
                let frame = raw.next().await;
                let (got, reason) = match frame {
                    Frame::Close(got, reason) => (got, reason),
                    Frame::Text(v) => panic!("{name}: expected close {code}, got {v}"),
                    Frame::Other => unreachable!("skipped by next"),
                };
                assert_eq!(got, code, "{name}: {reason}");
                if let Some(m) = &case.expect.mentions {
                    assert!(reason.contains(m.as_str()), "{name}: {reason}");
                }
                // The client answers the close, as RFC 6455 asks, and the
                // server ends the connection.
                let _ = raw
                    .tcp
                    .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
                    .await;
                let ended =
                    tokio::time::timeout(WAIT, async { while raw.fill().await > 0 {} }).await;
                assert!(ended.is_ok(), "{name}: the socket stayed open");
            }
            _ => panic!("{name}: the case expects neither an error nor a close"),
        }
        // Nobody else noticed.
        let (status, _) = server
            .post(
                "/api/rooms/lobby/messages",
                &json!({"data": {"n": n}}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{name}");
        let m = bystander.next_json().await;
        assert_eq!(m["data"]["n"], n, "{name}: {m}");
    }
    bystander.expect_nothing_but_barrier().await;
}
