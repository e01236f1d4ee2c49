//! A raw-protocol WebSocket client for tests, shared by every suite.
//!
//! It speaks `docs/protocol.md` as written and hides nothing: every frame
//! the server sends reaches the test, in order, except transport pings and
//! pongs while a JSON frame or a close is awaited (the WebSocket library
//! answers pings, as RFC 6455 requires; nothing else is answered for the
//! test). Nothing is buffered, reordered, deduplicated or retried; a frame
//! that is not the one awaited is a panic that names what was awaited and
//! what came instead.
//!
//! It knows URLs only, never a server: suites start their server (in
//! process or as a binary, behind a proxy or not) and hand it `ws://` URLs,
//! or requests with headers built by [`request`].
//!
//! - [`Client::connect`] opens a protocol endpoint and reads its `welcome`;
//!   [`Client::open`] opens any endpoint and reads nothing;
//!   [`Client::try_open`] returns a refused upgrade instead of panicking,
//!   and [`expect_refused`] insists on one.
//! - [`Client::next_json`], [`Client::join`],
//!   [`Client::expect_nothing_but_barrier`], [`Client::expect_close`] and
//!   [`Client::frames_until_close`] wait with a deadline ([`WAIT`]).
//! - [`eventually`] polls state that has no frame to wait for.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::http::header::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket message as the client library has it: text, binary, ping,
/// pong, close, or a raw frame to send.
pub use tokio_tungstenite::tungstenite::Message;

/// An upgrade request: the URL and the headers to send.
pub use tokio_tungstenite::tungstenite::handshake::client::Request;

/// The server's answer to an upgrade, with the body it had, if any.
pub use tokio_tungstenite::tungstenite::handshake::client::Response;

/// How long a test waits for any one expected frame, close or upgrade.
pub const WAIT: Duration = Duration::from_secs(10);

/// The room a barrier leaves: a valid name that no test joins.
const BARRIER_ROOM: &str = "testkit-barrier";

/// The socket under a [`Client`], for tests that drive it themselves.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An upgrade request for `url` with extra headers (`Origin`,
/// `Authorization`, `Sec-WebSocket-Protocol`, …), each appended as given.
/// Panics on a URL or header the HTTP library refuses.
pub fn request(url: &str, headers: &[(&str, &str)]) -> Request {
    let mut req = url
        .into_client_request()
        .unwrap_or_else(|e| panic!("{url} is not a WebSocket URL: {e}"));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("header name {name:?}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("header {name}: {value:?}: {e}"));
        req.headers_mut().append(name, value);
    }
    req
}

/// An upgrade the server answered with an HTTP response other than `101`.
#[derive(Debug)]
pub struct Refusal {
    /// The response's status.
    pub status: u16,
    /// The response's headers (`Retry-After`, …).
    pub headers: HeaderMap,
    /// The response's body, as text (lossy UTF-8); empty when it had none.
    pub body: String,
}

/// Upgrades with `req` (a URL or a [`request`]) and insists that the server
/// refuses; returns the status and the body. Panics when the upgrade
/// succeeds.
pub async fn expect_refused(req: impl IntoClientRequest) -> (u16, String) {
    let req = into_request(req);
    let url = req.uri().to_string();
    match Client::try_open(req).await {
        Ok(_) => panic!("upgrade to {url}: expected a refusal, got 101"),
        Err(refusal) => (refusal.status, refusal.body),
    }
}

/// Polls `check` every 10 ms until it returns `Some`, and returns that;
/// panics after `timeout` naming `what`. For state that has no frame to
/// await (counters, indexes, logs).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One WebSocket connection, read and written frame by frame.
#[derive(Debug)]
pub struct Client {
    socket: Socket,
    url: String,
    response: Response,
    welcome: Option<Value>,
}

impl Client {
    /// Opens a protocol endpoint (`/ws/chat`, `/ws/notifications`) with
    /// `req`, a URL or a [`request`], and reads its `welcome` frame, which
    /// must be the first. Panics when the upgrade is refused.
    pub async fn connect(req: impl IntoClientRequest) -> Client {
        let mut client = Client::open(req).await;
        client.read_welcome().await;
        client
    }

    /// Opens any endpoint and reads nothing: for endpoints that do not
    /// speak the protocol (`/ws/echo`, custom handlers) and for tests that
    /// read the first frame themselves. Panics when the upgrade is refused.
    pub async fn open(req: impl IntoClientRequest) -> Client {
        let req = into_request(req);
        let url = req.uri().to_string();
        match Client::try_open(req).await {
            Ok(client) => client,
            Err(r) => panic!("upgrade to {url} refused with {}: {}", r.status, r.body),
        }
    }

    /// Opens any endpoint and reads nothing, or returns the server's
    /// refusal of the upgrade. Panics on anything else (no answer within
    /// [`WAIT`], a connection refused, a broken handshake).
    pub async fn try_open(req: impl IntoClientRequest) -> Result<Client, Refusal> {
        let req = into_request(req);
        let url = req.uri().to_string();
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
            Err(_) => panic!("upgrade to {url}: no answer within {WAIT:?}"),
            Ok(Ok((socket, response))) => Ok(Client {
                socket,
                url,
                response,
                welcome: None,
            }),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(Refusal {
                    status: resp.status().as_u16(),
                    headers: resp.headers().clone(),
                    body,
                })
            }
            Ok(Err(e)) => panic!("upgrade to {url}: {e}"),
        }
    }

    /// Reads the `welcome` frame (after [`Client::open`] or
    /// [`Client::try_open`]); it must be the next frame. Returns it; it is
    /// kept for [`Client::user`] and [`Client::conn`].
    pub async fn read_welcome(&mut self) -> &Value {
        let frame = self.expect_json("the welcome frame").await;
        assert_eq!(
            frame["type"], "welcome",
            "{}: the first frame must be welcome: {frame}",
            self.url
        );
        self.welcome.insert(frame)
    }

    /// The `welcome` frame. Panics when none was read.
    pub fn welcome(&self) -> &Value {
        self.welcome
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no welcome frame was read", self.url))
    }

    /// The user id from `welcome`.
    pub fn user(&self) -> &str {
        self.welcome()["user"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without a user: {}", self.welcome()))
    }

    /// The connection id from `welcome`.
    pub fn conn(&self) -> &str {
        self.welcome()["conn"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without a conn: {}", self.welcome()))
    }

    /// The URL it connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's `101` response (its `Sec-WebSocket-Protocol`, …).
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The socket, to send or read what the helpers do not (raw frames).
    pub fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// The socket, for a test that splits it into a sender and a reader.
    pub fn into_socket(self) -> Socket {
        self.socket
    }

    /// Sends one JSON value as a text message.
    pub async fn send(&mut self, frame: Value) {
        self.send_message(Message::text(frame.to_string())).await;
    }

    /// Sends `text` as it is, as a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    /// Sends one message of any kind (binary, ping, a raw frame).
    pub async fn send_message(&mut self, message: Message) {
        if let Err(e) = self.socket.send(message).await {
            panic!("{}: send: {e}", self.name());
        }
    }

    /// The next message of any kind, pings included, within [`WAIT`].
    /// Panics when the connection ends or fails first.
    pub async fn next_message(&mut self) -> Message {
        self.next_raw("a message").await
    }

    /// The next text message as JSON, within [`WAIT`], skipping only
    /// transport pings and pongs. Panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        self.expect_json("a JSON frame").await
    }

    /// [`Client::next_json`], naming `what` was awaited when it panics.
    pub async fn expect_json(&mut self, what: &str) -> Value {
        loop {
            match self.next_raw(what).await {
                Message::Text(text) => {
                    return serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!(
                            "{}: {what}: a text frame that is not JSON ({e}): {text}",
                            self.name()
                        )
                    });
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(frame) => panic!(
                    "{}: awaiting {what}, the server closed: {}",
                    self.name(),
                    describe_close(frame.as_ref())
                ),
                other => panic!("{}: awaiting {what}, got {other:?}", self.name()),
            }
        }
    }

    /// Sends `{"type":"join","room":room}` and returns the reply, which
    /// must be the next frame and a `joined` for `room`. The protocol lets
    /// a busy room's messages come before `joined`; a test that joins one
    /// sends the `join` itself and reads them.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        let what = format!("joined for room {room:?}");
        let reply = self.expect_json(&what).await;
        assert!(
            reply["type"] == "joined" && reply["room"] == room,
            "{}: awaiting {what}, got {reply}",
            self.name()
        );
        reply
    }

    /// Proves that nothing is queued for this connection, without waiting
    /// for silence: sends a `leave` of a room no test joins, with an `id`
    /// of its own, and checks that the next frame is its reply (an `error`
    /// with that `id`). Replies follow requests, and a connection's frames
    /// keep their order, so anything queued before the `leave` was read
    /// comes first and fails the check. Returns the reply.
    pub async fn expect_nothing_but_barrier(&mut self) -> Value {
        static NEXT: AtomicU64 = AtomicU64::new(1 << 50);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.send(json!({"type": "leave", "room": BARRIER_ROOM, "id": id}))
            .await;
        let reply = self
            .expect_json(&format!("the reply to barrier {id}"))
            .await;
        assert!(
            reply["type"] == "error" && reply["id"] == id,
            "{}: expected nothing but the reply to barrier {id}, got {reply}",
            self.name()
        );
        reply
    }

    /// Waits for the server's close frame, which must be the next frame
    /// (transport pings and pongs aside); returns its code (1005 when it
    /// had none) and reason. Keeps reading afterwards, so the library sends
    /// its reply and sees the server end the connection, as a real client
    /// does.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next_raw("a close frame").await {
                Message::Close(frame) => return self.finish_close(frame).await,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("{}: awaiting a close frame, got {other:?}", self.name()),
            }
        }
    }

    /// Like [`Client::expect_close`], for a connection whose queued frames
    /// may come first (a slow consumer, a flood): returns those frames, in
    /// order, with the close's code and reason.
    pub async fn frames_until_close(&mut self) -> (Vec<Message>, u16, String) {
        let mut frames = Vec::new();
        loop {
            match self.next_raw("a close frame").await {
                Message::Close(frame) => {
                    let (code, reason) = self.finish_close(frame).await;
                    return (frames, code, reason);
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => frames.push(other),
            }
        }
    }

    /// Closes the connection (1005) and reads until the server answered,
    /// within [`WAIT`].
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    /// The connection id once `welcome` was read, else the URL.
    fn name(&self) -> String {
        match self.welcome.as_ref().and_then(|w| w["conn"].as_str()) {
            Some(conn) => format!("conn {conn}"),
            None => self.url.clone(),
        }
    }

    async fn next_raw(&mut self, what: &str) -> Message {
        match tokio::time::timeout(WAIT, self.socket.next()).await {
            Err(_) => panic!("{}: no {what} within {WAIT:?}", self.name()),
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => panic!("{}: awaiting {what}: {e}", self.name()),
            Ok(None) => panic!("{}: awaiting {what}, the connection ended", self.name()),
        }
    }

    async fn finish_close(&mut self, frame: Option<CloseFrame>) -> (u16, String) {
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
        match frame {
            Some(CloseFrame { code, reason }) => (u16::from(code), reason.to_string()),
            None => (1005, String::new()),
        }
    }
}

fn into_request(req: impl IntoClientRequest) -> Request {
    req.into_client_request()
        .unwrap_or_else(|e| panic!("not a WebSocket request: {e}"))
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {:?}", u16::from(f.code), f.reason.as_str()),
        None => "1005 (no code)".to_string(),
    }
}
