//! The WebSocket upgrade as the server receives it: a request head written
//! to an in-memory socket served by hyper with the node's router, as
//! `switchboard::serve` does, so that the gate of `switchboard::http`
//! (`http/upgrade.rs`) judges it and, when it says `101`, a session starts.
//!
//! Input: byte 0 picks the method (bits 0-1: GET, GET, HEAD, POST) and the
//! path (bits 2-3: `/ws/echo`, no subprotocol; `/ws/chat`,
//! `switchboard.v1`; `/ws/multi`, `a`, `switchboard.v1` and `Chat`; an
//! unknown path). Then up to 64 headers, each a byte that picks the name
//! (`Connection`, `Upgrade`, `Sec-WebSocket-Version`, `Sec-WebSocket-Key`,
//! `Sec-WebSocket-Protocol`, `Origin`, `Host` or another, in varied case), a
//! length byte and the value (bytes that may not appear in a header value
//! are dropped). Checks that the response is the one RFC 6455 section 4.2
//! and the gate's documentation call for, computed here from the headers:
//!
//! - an unknown path is `404`, a method other than GET (or HEAD, which the
//!   router answers as GET) `405`;
//! - a HEAD request, or one without `Connection: upgrade` and `Upgrade:
//!   websocket` (tokens in any case, in any of the header's lines) or with a
//!   first `Sec-WebSocket-Version` other than `13`: `426` with
//!   `Sec-WebSocket-Version: 13`;
//! - a first `Sec-WebSocket-Key` that is not the base64 of 16 bytes: `400`;
//! - an `Origin` that is not ASCII, or that the same-origin policy refuses
//!   against `Host`: `403`;
//! - otherwise `101`, with `Upgrade:
//!   websocket`, `Connection: Upgrade`, the `Sec-WebSocket-Accept` of the
//!   key, and as `Sec-WebSocket-Protocol` the first subprotocol the client
//!   offers that the endpoint accepts (none when there is none);
//! - every request is answered, and a session whose client has gone ends.

#![no_main]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use switchboard::gate::origin::OriginPolicy;
use switchboard::{Config, Endpoint, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    runtime: tokio::runtime::Runtime,
    node: Node,
    app: switchboard::axum::Router,
}

thread_local! {
    static SERVER: Server = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let node = runtime.block_on(async {
            Node::builder()
                .config(Config {
                    upgrade_rate: None,
                    ..Config::default()
                })
                .endpoint(Endpoint::echo("/ws/echo"))
                .endpoint(Endpoint::chat("/ws/chat"))
                .endpoint(
                    Endpoint::echo("/ws/multi")
                        .subprotocol("a")
                        .subprotocol("switchboard.v1")
                        .subprotocol("Chat"),
                )
                .build()
                .expect("a valid node")
        });
        let app = switchboard::http::router(&node);
        Server { runtime, node, app }
    };
}

const PATHS: [(&str, &[&str]); 4] = [
    ("/ws/echo", &[]),
    ("/ws/chat", &["switchboard.v1"]),
    ("/ws/multi", &["a", "switchboard.v1", "Chat"]),
    ("/ws/none", &[]),
];

const NAMES: [&str; 16] = [
    "Connection",
    "connection",
    "Upgrade",
    "UPGRADE",
    "Sec-WebSocket-Version",
    "sec-websocket-version",
    "Sec-WebSocket-Key",
    "SEC-WEBSOCKET-KEY",
    "Sec-WebSocket-Protocol",
    "sec-websocket-protocol",
    "Origin",
    "origin",
    "Host",
    "host",
    "X-Other",
    "Sec-WebSocket-Extensions",
];

/// A request as the fuzzer made it.
struct Request {
    method: &'static str,
    path: &'static str,
    accepted: &'static [&'static str],
    /// Lowercase names and values, in order.
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    fn parse(data: &[u8]) -> Option<Request> {
        let [first, rest @ ..] = data else {
            return None;
        };
        let mut rest = rest;
        let method = ["GET", "GET", "HEAD", "POST"][usize::from(first & 0x03)];
        let (path, accepted) = PATHS[usize::from(first >> 2 & 0x03)];
        let mut headers = Vec::new();
        while let [name, len, tail @ ..] = rest {
            if headers.len() == 64 {
                break;
            }
            let len = usize::from(*len).min(tail.len());
            let (value, tail) = tail.split_at(len);
            rest = tail;
            // Field values: tab, visible ASCII, space and obs-text.
            let value = value
                .iter()
                .copied()
                .filter(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
                .collect();
            let name = NAMES[usize::from(*name) % NAMES.len()];
            headers.push((name.to_string(), value));
        }
        Some(Request {
            method,
            path,
            accepted,
            headers,
        })
    }

    fn head(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        for (name, value) in &self.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Every value of a header, without the whitespace around it (RFC 9110
    /// section 5.5), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_ascii())
    }

    fn first<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// The values that are text (visible ASCII, space, tab).
    fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name).filter_map(text)
    }

    /// Whether a comma-separated header lists `token`, in any case.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.texts(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).expect("ASCII"))
}

/// What the server must answer.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Status(u16),
    Upgraded {
        accept: String,
        protocol: Option<&'static str>,
    },
}

/// The canonical base64 of 16 bytes: 22 characters, the last of which
/// carries only two bits, then `==`.
fn is_key(key: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24
        && key[..22].iter().all(alphabet)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

fn expected(request: &Request) -> Expected {
    if request.path == "/ws/none" {
        return Expected::Status(404);
    }
    if request.method == "POST" {
        return Expected::Status(405);
    }
    let upgrade = request.method == "GET"
        && request.has_token("connection", "upgrade")
        && request.has_token("upgrade", "websocket")
        && request.first("sec-websocket-version") == Some(b"13");
    if !upgrade {
        return Expected::Status(426);
    }
    let Some(key) = request.first("sec-websocket-key").filter(|k| is_key(k)) else {
        return Expected::Status(400);
    };
    let origin = request.first("origin");
    let host = request.first("host").and_then(text);
    let origin_ok = match origin {
        None => true,
        Some(origin) => text(origin)
            .is_some_and(|origin| OriginPolicy::default().check(Some(origin), host).is_ok()),
    };
    if !origin_ok {
        return Expected::Status(403);
    }
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = STANDARD.encode(sha.finalize());
    let protocol = request
        .texts("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|offered| request.accepted.iter().find(|a| **a == offered).copied());
    Expected::Upgraded { accept, protocol }
}

/// A response head: the status and the headers (lowercase names).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn parse(head: &[u8]) -> Response {
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, value) = l.split_once(':').expect("a header line");
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        Response { status, headers }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = Request::parse(data) else {
        return;
    };
    let expected = expected(&request);
    SERVER.with(|server| {
        let response = server.runtime.block_on(exchange(server, &request.head()));
        check(&request, &expected, &response);
        server.runtime.block_on(async {
            for _ in 0..5000 {
                if server.node.connection_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("a session outlived its client");
        });
    });
});

/// Writes the request head and reads the response head.
async fn exchange(server: &Server, head: &[u8]) -> Response {
    let (mut client, socket) = tokio::io::duplex(64 * 1024);
    let service = TowerToHyperService::new(server.app.clone());
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service)
        .with_upgrades();
    let connection = tokio::spawn(connection);
    client.write_all(head).await.expect("write the request");
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                received.truncate(end);
                return;
            }
            let n = client.read(&mut buf).await.expect("read the response");
            assert!(n > 0, "the connection closed without a response");
            received.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no response within 5 s");
    drop(client);
    let _ = connection.await;
    Response::parse(&received)
}

fn check(request: &Request, expected: &Expected, response: &Response) {
    let context = || format!("request {:?}", String::from_utf8_lossy(&request.head()));
    match expected {
        Expected::Status(status) => {
            assert_eq!(response.status, *status, "{}", context());
            if *status == 426 {
                assert_eq!(
                    response.get("sec-websocket-version"),
                    Some("13"),
                    "{}",
                    context()
                );
            }
        }
        Expected::Upgraded { accept, protocol } => {
            assert_eq!(response.status, 101, "{}", context());
            assert!(
                response
                    .get("upgrade")
                    .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
                "{}",
                context()
            );
            assert!(
                response
                    .get("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
                "{}",
                context()
            );
            assert_eq!(
                response.get("sec-websocket-accept"),
                Some(accept.as_str()),
                "{}",
                context()
            );
            assert_eq!(
                response.get("sec-websocket-protocol"),
                *protocol,
                "{}",
                context()
            );
        }
    }
}
