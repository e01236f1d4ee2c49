//! One task per socket. The session owns the connection's I/O and runs one
//! loop over four sources: inbound frames, the outbound queue, the heartbeat
//! timer, and close requests (which arrive through the outbound queue).
//!
//! The loop is written against any `AsyncRead + AsyncWrite`, so unit tests
//! drive it over an in-memory pipe with time paused.
//!
//! # Writing
//!
//! Frames are moved from the [`Outbox`] into a small write queue and written
//! with one vectored write for as many as are ready, so a connection that
//! has several messages queued costs one syscall, while a lone message is
//! written at once without waiting for company.
//!
//! Over TCP, the socket is shared with the node's [flusher](crate::flush):
//! fan-out frames to an idle connection are written by a flusher task
//! without waking this one. The session takes the write side over (see
//! [`Outbox::claim`](crate::outbox::Outbox)) before it queues a frame of its
//! own, and when the socket does not take a flusher's write at once.
//!
//! # Reading
//!
//! Bytes are read into a buffer on the stack and handed to the [`Decoder`],
//! which keeps a heap buffer only while a frame is incomplete: an idle
//! connection holds no read buffer.
//!
//! # Heartbeats
//!
//! Every `heartbeat_interval` the server sends a ping; if no pong arrives
//! within `heartbeat_timeout`, the connection is terminated (4001) and leaves
//! every room at once.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard_protocol::CloseCode;
use switchboard_protocol::server::{ServerFrame, Welcome};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::either::Either;

use crate::broker::Topic;
use crate::conn::Conn;
use crate::endpoint::{Disconnect, Endpoint, Inbound};
use crate::gate::rate::{Bucket, RateLimit};
use crate::outbox::{CloseRequest, Drained, FrameQueue, MAX_BATCH};
use crate::ws::{Decoder, Message, OpCode, frame};
/// Size of the on-stack read buffer.
const READ_CHUNK: usize = 8 * 1024;
/// Longest wait for the peer during a close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

enum Event {
    Message(Message),
    CloseRequested(CloseRequest),
    HeartbeatDue,
    Expired,
    Eof,
    Decode(crate::ws::DecodeError),
    Io(io::Error),
}

pin_project_lite::pin_project! {
    /// The credentials' expiry and the timer armed for it.
    struct Expiry {
        at: SystemTime,
        #[pin]
        sleep: Sleep,
    }
}

impl Expiry {
    fn project_sleep(self: Pin<&mut Self>) -> Pin<&mut Sleep> {
        self.project().sleep
    }
}

/// A session's socket with its decoder, write queue and timers.
pub(crate) struct Transport<IO> {
    io: IO,
    decoder: Decoder,
    writing: FrameQueue,
    heartbeat: Pin<Box<Sleep>>,
    /// A ping is out: the heartbeat timer is then armed for its deadline
    /// (the ping was sent `heartbeat_timeout` before it).
    awaiting_pong: bool,
    /// Fires when the credentials expire; only connections whose credentials
    /// expire have one, boxed with the time it was armed for.
    expiry: Option<Pin<Box<Expiry>>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Transport<IO> {
    /// A transport over `io`; `read_ahead` holds bytes the HTTP layer read
    /// past the handshake (frames a client sent without waiting).
    pub(crate) fn new(io: IO, read_ahead: &[u8], conn: &Conn) -> Self {
        let config = conn.node.config();
        let mut transport = Transport {
            io,
            decoder: Decoder::new(config.max_message_size),
            writing: FrameQueue::new(),
            heartbeat: Box::pin(tokio::time::sleep(config.heartbeat_interval)),
            awaiting_pong: false,
            expiry: None,
        };
        transport.arm_expiry(conn.identity.expires_at);
        if !read_ahead.is_empty() {
            transport.decoder.push(read_ahead);
        }
        transport
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, conn: &Conn) -> Poll<Event> {
        if let Poll::Ready(Err(e)) = self.poll_write_all(cx, conn, true) {
            return Poll::Ready(Event::Io(e));
        }
        if let Some(ev) = self.drained_close(cx, conn) {
            return Poll::Ready(ev);
        }
        if let Poll::Ready(ev) = self.poll_read(cx) {
            return Poll::Ready(ev);
        }
        if self.heartbeat.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::HeartbeatDue);
        }
        if let Some(expiry) = &mut self.expiry
            && expiry.as_mut().project_sleep().poll(cx).is_ready()
        {
            return Poll::Ready(Event::Expired);
        }
        Poll::Pending
    }

    /// Arms (or re-arms, after a refresh) the expiry timer.
    fn arm_expiry(&mut self, expires_at: Option<SystemTime>) {
        if self.expiry.as_ref().map(|e| e.at) == expires_at {
            return;
        }
        self.expiry = expires_at.map(|at| {
            // Wall-clock expiry, converted once to the runtime's clock.
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Box::pin(Expiry {
                at,
                sleep: tokio::time::sleep(left),
            })
        });
    }

    /// Reports a close request once everything queued before it is written.
    fn drained_close(&mut self, cx: &mut Context<'_>, conn: &Conn) -> Option<Event> {
        if !self.writing.is_empty() {
            // A slow consumer's writes may never drain: close it now.
            return conn
                .outbox
                .poll_slow_consumer_close(cx)
                .map(Event::CloseRequested);
        }
        match conn.outbox.poll_drain(cx, &mut self.writing, 0) {
            Poll::Ready(Drained::Close(req)) => Some(Event::CloseRequested(req)),
            _ => None,
        }
    }

    /// Moves frames from the outbox (when `refill`) and writes as much as the
    /// socket takes. `Ready(Ok)` means everything queued is written.
    fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        conn: &Conn,
        refill: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if refill && self.writing.len() < MAX_BATCH {
                let room = MAX_BATCH - self.writing.len();
                // A close request is picked up by `drained_close`.
                let _ = conn.outbox.poll_drain(cx, &mut self.writing, room);
            }
            if self.writing.is_empty() {
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let (n, _) = self.writing.as_io_slices(&mut slices);
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(w)) => w,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.writing.advance(written);
        }
    }

    /// Queues a frame of the session's own (a reply to a ping, a ping, a
    /// close), after taking the socket's write side over from the flusher.
    fn queue(&mut self, conn: &Conn, frame: Bytes) {
        conn.outbox.claim();
        self.writing.push_back(frame);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(msg)) => return Poll::Ready(Event::Message(msg)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Event::Decode(e)),
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Event::Eof),
                Poll::Ready(Ok(())) => self.decoder.push(buf.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Io(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes everything queued (without taking more from the outbox), within
    /// `limit`.
    async fn flush_within(&mut self, conn: &Conn, limit: Duration) -> io::Result<()> {
        let write = poll_fn(|cx| self.poll_write_all(cx, conn, false));
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Server-initiated close: drop what the client will never read if the
    /// close is for a slow consumer, send the close frame, wait briefly for
    /// the client's close frame, then shut the socket.
    async fn close(&mut self, conn: &Conn, code: CloseCode, reason: &str, discard: bool) {
        if discard {
            self.discard_unwritten();
        }
        self.queue(conn, frame::encode_close(code.0, reason));
        let deadline = CLOSE_GRACE.min(conn.node.config().heartbeat_timeout);
        if self.flush_within(conn, deadline).await.is_ok() {
            let _ = tokio::time::timeout(deadline, self.await_peer_close()).await;
        }
        let _ =
            tokio::time::timeout(deadline, tokio::io::AsyncWriteExt::shutdown(&mut self.io)).await;
    }

    /// Keeps a partially written frame (cutting it would corrupt the stream)
    /// and drops the rest.
    fn discard_unwritten(&mut self) {
        self.writing.truncate_to_front();
    }

    async fn await_peer_close(&mut self) {
        poll_fn(|cx| {
            loop {
                match self.poll_read(cx) {
                    Poll::Ready(Event::Message(Message::Close(_))) => return Poll::Ready(()),
                    Poll::Ready(Event::Message(_)) => continue,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }
}

/// The transport of an upgraded connection. The TCP stream is taken back
/// from hyper when it can be (the bytes hyper read ahead share its 8-16 KiB
/// read buffer, which would otherwise stay allocated for the life of the
/// connection) and shared with the node's flushers for direct writes.
pub(crate) fn upgraded_transport(upgraded: Upgraded, conn: &Conn) -> Transport<SessionIo> {
    match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            let stream = Arc::new(parts.io.into_inner());
            let shard = conn.node.flusher().shard_for(conn.id);
            conn.outbox.attach_tcp(stream.clone(), shard);
            Transport::new(Either::Left(SharedTcp(stream)), &parts.read_buf, conn)
        }
        // Only when a layer wrapped the connection.
        Err(upgraded) => {
            let io = Either::Right(Box::new(TokioIo::new(upgraded)));
            Transport::new(io, &[], conn)
        }
    }
}

/// A session's socket: the TCP stream, or (rarely) whatever a layer wrapped
/// it in. One type, so that the session's code exists once.
pub(crate) type SessionIo = Either<SharedTcp, Box<TokioIo<Upgraded>>>;

/// A TCP stream whose write side the session shares with the flushers; all
/// its I/O goes through `&TcpStream`.
pub(crate) struct SharedTcp(Arc<tokio::net::TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            // `try_read` clears the readiness when the socket is drained, so
            // the next `poll_read_ready` waits for new data.
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sock = socket2::SockRef::from(&*self.0);
        match sock.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Runs one connection from open to close.
///
/// The connection and endpoint are borrowed from the task that owns them, so
/// that they are stored once in the task, not once per layer of futures:
/// the task's size is what every idle connection costs.
///
/// The transport is built beforehand (see [`Transport::new`]) and moved in,
/// so that nothing used only to set it up is kept in the task.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in every session"
)]
pub(crate) fn run<'a, IO>(
    mut transport: Transport<IO>,
    conn: &'a mut Conn,
    endpoint: &'a Arc<Endpoint>,
) -> impl Future<Output = ()> + Send + 'a
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    // An `async move` block rather than an `async fn`: an async fn keeps its
    // arguments twice (as passed, and moved into its body), and this future
    // is what every idle connection costs.
    async move {
        let node = conn.node.clone();
        node.register_conn(conn.id, &conn.outbox);
        tracing::info!(
            conn = %conn.id(), user = %conn.user(), remote = ?conn.remote, path = %conn.path(),
            "connected"
        );
        let disconnect = drive(&mut transport, conn, endpoint).await;
        // Flushers let go of the socket, so that it closes with the transport.
        conn.outbox.detach_direct();
        drop(transport);
        // Rare, large futures are boxed so that they do not inflate the
        // session's state machine, which every idle connection carries.
        Box::pin(leave_everything(conn, endpoint)).await;
        node.unregister_conn(conn.id);
        endpoint.handler.on_close(conn, &disconnect).await;
        tracing::info!(
            conn = %conn.id(), user = %conn.user(), code = ?disconnect.code,
            reason = %disconnect.reason, by_server = disconnect.by_server, "disconnected"
        );
    }
}

async fn subscribe_identity(conn: &mut Conn, endpoint: &Endpoint) -> Result<(), String> {
    let hub = conn.node.hub();
    if endpoint.user_messages {
        hub.add(
            Topic::User(conn.identity.user.clone()),
            conn.id,
            &conn.outbox,
        )
        .await
        .map_err(|e| format!("cannot subscribe user: {e}"))?;
    }
    if endpoint.broadcasts {
        hub.add(Topic::Broadcast, conn.id, &conn.outbox)
            .await
            .map_err(|e| format!("cannot subscribe broadcasts: {e}"))?;
    }
    Ok(())
}

/// Leaves every room and index, at once, whatever ended the connection.
async fn leave_everything(conn: &mut Conn, endpoint: &Endpoint) {
    conn.leave_all().await;
    let node = conn.node.clone();
    let hub = node.hub();
    if endpoint.user_messages {
        hub.remove(Topic::User(conn.identity.user.clone()), conn.id)
            .await;
    }
    if endpoint.broadcasts {
        hub.remove(Topic::Broadcast, conn.id).await;
    }
}

/// The session from the handshake on: subscriptions, `welcome`, then the
/// main loop. Every idle connection is parked inside it, so its state is
/// kept small: the only awaits in the loop are the next event and the
/// handler; whatever ends the connection runs in a boxed future.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in every session"
)]
fn drive<'a, IO>(
    t: &'a mut Transport<IO>,
    conn: &'a mut Conn,
    endpoint: &'a Endpoint,
) -> impl Future<Output = Disconnect> + Send + 'a
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    // An `async move` block, like `run`, so the arguments are kept once.
    async move {
        let node = conn.node.clone();
        let config = node.config();
        if let Err(reason) = Box::pin(subscribe_identity(conn, endpoint)).await {
            let code = CloseCode::TRY_AGAIN_LATER;
            return Box::pin(close_with(t, conn, code, reason, false)).await;
        }
        conn.outbox.claim();
        if endpoint.welcome {
            let _ = conn.send_frame(&ServerFrame::Welcome(Welcome {
                user: conn.user().to_string(),
                conn: conn.id(),
                protocol: switchboard_protocol::SUBPROTOCOL.to_string(),
                heartbeat_ms: config.heartbeat_interval.as_millis() as u64,
            }));
        }
        endpoint.handler.on_open(conn).await;
        let handler = endpoint.handler.clone();
        let mut throttle = config
            .message_limit(conn.identity.guest)
            .map(|limit| Box::new(Throttle::new(limit, Instant::now())));
        loop {
            let event = poll_fn(|cx| t.poll_event(cx, conn)).await;
            let inbound = match event {
                Event::Message(Message::Text(text)) => Inbound::Text(text),
                Event::Message(Message::Binary(data)) => Inbound::Binary(data),
                Event::Message(Message::Ping(payload)) => {
                    t.queue(conn, frame::encode(OpCode::Pong, &payload));
                    continue;
                }
                Event::Message(Message::Pong(_)) => {
                    if t.awaiting_pong {
                        t.awaiting_pong = false;
                        let ping_sent = t.heartbeat.deadline() - config.heartbeat_timeout;
                        t.heartbeat
                            .as_mut()
                            .reset(ping_sent + config.heartbeat_interval);
                    }
                    continue;
                }
                Event::HeartbeatDue if !t.awaiting_pong => {
                    conn.outbox.release_idle_storage();
                    t.writing.release_spare();
                    t.queue(conn, frame::encode(OpCode::Ping, b""));
                    t.awaiting_pong = true;
                    t.heartbeat
                        .as_mut()
                        .reset(Instant::now() + config.heartbeat_timeout);
                    continue;
                }
                ending => return Box::pin(end(t, conn, ending, config)).await,
            };
            // Data messages go to the handler, through the rate limit.
            match throttle
                .as_mut()
                .map_or(Verdict::Allow, |th| th.check(config, Instant::now()))
            {
                Verdict::Allow => {
                    // Replies are written by this task right after the handler,
                    // not handed to a flusher.
                    conn.outbox.claim();
                    handler.on_message(conn, inbound).await;
                    t.arm_expiry(conn.identity.expires_at);
                }
                Verdict::Drop => {
                    if endpoint.welcome {
                        refuse_rate_limited(conn, &inbound);
                    }
                }
                Verdict::Close => {
                    let code = CloseCode::RATE_LIMITED;
                    let reason = "message rate limit exceeded repeatedly";
                    return Box::pin(close_with(t, conn, code, reason.into(), false)).await;
                }
            }
        }
    }
}

/// Tells the client its message was dropped by the rate limit.
fn refuse_rate_limited(conn: &mut Conn, inbound: &Inbound) {
    let id = match inbound {
        Inbound::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| switchboard_protocol::client::parse(t).ok())
            .and_then(|f| f.id()),
        Inbound::Binary(_) => None,
    };
    crate::handlers::send_error(
        conn,
        id,
        switchboard_protocol::ErrorCode::RateLimited,
        "too many messages; this one was dropped",
    );
}

/// A server-initiated close with the close handshake; `discard` drops
/// queued frames first (for a client that is not reading them).
async fn close_with<IO>(
    t: &mut Transport<IO>,
    conn: &mut Conn,
    code: CloseCode,
    reason: String,
    discard: bool,
) -> Disconnect
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    t.close(conn, code, &reason, discard).await;
    Disconnect {
        code: Some(code.0),
        reason,
        by_server: true,
    }
}

/// Handles an event that ends the connection.
async fn end<IO>(
    t: &mut Transport<IO>,
    conn: &mut Conn,
    event: Event,
    config: &crate::Config,
) -> Disconnect
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    match event {
        Event::Expired => {
            let reason = "credentials expired; refresh them and reconnect";
            close_with(t, conn, CloseCode::TOKEN_EXPIRED, reason.into(), false).await
        }
        Event::Message(Message::Close(close)) => {
            let code = close.as_ref().map_or(CloseCode::NORMAL.0, |c| c.code);
            let reason = close.map(|c| c.reason).unwrap_or_default();
            t.queue(conn, frame::encode_close(code, ""));
            let grace = CLOSE_GRACE.min(config.heartbeat_timeout);
            let _ = t.flush_within(conn, grace).await;
            let shutdown = tokio::io::AsyncWriteExt::shutdown(&mut t.io);
            let _ = tokio::time::timeout(grace, shutdown).await;
            Disconnect {
                code: Some(code),
                reason,
                by_server: false,
            }
        }
        Event::CloseRequested(req) => {
            let discard = req.code == CloseCode::SLOW_CONSUMER;
            close_with(t, conn, req.code, req.reason, discard).await
        }
        Event::HeartbeatDue => {
            conn.node
                .stats()
                .heartbeat_timeouts
                .fetch_add(1, Ordering::Relaxed);
            let code = CloseCode::HEARTBEAT_TIMEOUT;
            let reason = "no pong within the heartbeat timeout";
            t.discard_unwritten();
            t.queue(conn, frame::encode_close(code.0, reason));
            // The peer is presumed dead: one short attempt, no handshake.
            let _ = t.flush_within(conn, Duration::from_millis(100)).await;
            Disconnect {
                code: Some(code.0),
                reason: reason.into(),
                by_server: true,
            }
        }
        Event::Eof => Disconnect {
            code: None,
            reason: "connection dropped without a close frame".into(),
            by_server: false,
        },
        Event::Decode(e) => {
            close_with(t, conn, CloseCode(e.close_code()), e.to_string(), false).await
        }
        Event::Io(e) => Disconnect {
            code: None,
            reason: format!("i/o error: {e}"),
            by_server: false,
        },
        // Data, pings, pongs and a heartbeat with no ping outstanding are
        // handled in the loop and never reach here.
        Event::Message(_) => Disconnect {
            code: None,
            reason: "unexpected event".into(),
            by_server: true,
        },
    }
}

/// The per-connection message rate limit, with strikes for sustained abuse.
struct Throttle {
    bucket: Bucket,
    limit: RateLimit,
    strikes: u32,
    window_start: Instant,
}

/// What to do with an inbound message.
enum Verdict {
    Allow,
    Drop,
    Close,
}

/// Strikes are counted over this window.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

impl Throttle {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Throttle {
            bucket: Bucket::full(&limit, now),
            limit,
            strikes: 0,
            window_start: now,
        }
    }

    fn check(&mut self, config: &crate::Config, now: Instant) -> Verdict {
        if self.bucket.take(&self.limit, now).is_ok() {
            return Verdict::Allow;
        }
        if now.duration_since(self.window_start) > STRIKE_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > config.message_rate_strikes {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}

/// The shared pieces a session needs besides its I/O.
pub(crate) fn new_conn(
    node: &crate::node::Node,
    identity: crate::auth::Identity,
    endpoint: &Arc<Endpoint>,
    remote: Option<std::net::SocketAddr>,
    subprotocol: Option<usize>,
    extensions: http::Extensions,
) -> Conn {
    let config = node.config();
    Conn {
        id: node.next_conn_id(),
        identity,
        endpoint: endpoint.clone(),
        remote,
        subprotocol,
        outbox: Arc::new(crate::outbox::Outbox::new(
            config.outbound_queue_frames,
            config.outbound_queue_bytes,
        )),
        node: node.clone(),
        rooms: Default::default(),
        extensions,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio::time::Instant;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::auth::Identity;
    use crate::node::Node;

    type Opened = (
        Node,
        WebSocketStream<DuplexStream>,
        tokio::task::JoinHandle<()>,
    );

    /// A session over an in-memory pipe, with a real client on the other end.
    async fn open(endpoint: Endpoint) -> Opened {
        let endpoint = Arc::new(endpoint);
        let node = Node::builder()
            .endpoint((*endpoint).clone())
            .build()
            .unwrap();
        open_on(node, endpoint, Identity::guest()).await
    }

    async fn open_on(node: Node, endpoint: Arc<Endpoint>, identity: Identity) -> Opened {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let mut conn = new_conn(&node, identity, &endpoint, None, None, Default::default());
        let task = tokio::spawn(async move {
            let transport = Transport::new(server_io, &[], &conn);
            run(transport, &mut conn, &endpoint).await
        });
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        (node, client, task)
    }

    async fn next_json(ws: &mut WebSocketStream<DuplexStream>) -> serde_json::Value {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_is_terminated_after_interval_plus_timeout_and_leaves_its_rooms() {
        let (node, mut ws, task) = open(Endpoint::chat("/chat")).await;
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        ws.send(Message::text(r#"{"type":"join","room":"r"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "joined");
        assert_eq!(node.hub().count(&Topic::Room("r".into())), 1);
        let start = Instant::now();
        // The client stops reading, so it never answers the ping.
        task.await.unwrap();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(40) && elapsed < Duration::from_secs(41),
            "terminated after {elapsed:?}"
        );
        assert_eq!(node.hub().count(&Topic::Room("r".into())), 0);
        assert_eq!(node.hub().count(&Topic::Broadcast), 0);
        assert_eq!(node.connection_count(), 0);
        assert_eq!(node.stats().snapshot().heartbeat_timeouts, 1);
        // Read the raw bytes: a client library would try to answer the ping
        // into the closed pipe. Server frames are unmasked: a ping with no
        // payload, then a close frame carrying 4001.
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(ws.get_mut(), &mut raw)
            .await
            .unwrap();
        assert_eq!(&raw[..2], &[0x89, 0x00], "ping");
        assert_eq!(raw[2], 0x88, "close frame");
        assert_eq!(u16::from_be_bytes([raw[4], raw[5]]), 4001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_pings_stays_connected() {
        let (node, mut ws, task) = open(Endpoint::echo("/echo")).await;
        let mut pings = 0;
        let read = async {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Ping(_) = msg {
                    pings += 1;
                }
            }
        };
        // Five minutes of virtual time: the read loop answers every ping.
        assert!(
            tokio::time::timeout(Duration::from_secs(300), read)
                .await
                .is_err()
        );
        assert!(pings >= 9, "saw {pings} pings");
        assert!(!task.is_finished());
        assert_eq!(node.connection_count(), 1);
        assert_eq!(node.stats().snapshot().heartbeat_timeouts, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_frames_are_written_before_a_going_away_close() {
        let (node, mut ws, task) = open(Endpoint::echo("/echo")).await;
        ws.send(Message::text("one")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one"));
        let outbox = node.inner_conn_outboxes().pop().unwrap();
        outbox
            .push(frame::encode(OpCode::Text, b"last words"))
            .unwrap();
        node.begin_shutdown();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text("last words")
        );
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        // The client completes the handshake; the session ends promptly.
        while ws.next().await.is_some() {}
        task.await.unwrap();
        assert_eq!(node.connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_close_times_out_instead_of_hanging() {
        let (node, ws, task) = open(Endpoint::echo("/echo")).await;
        let start = Instant::now();
        node.begin_shutdown();
        task.await.unwrap();
        // Bounded by the close grace (5 s), not by the client.
        assert!(
            start.elapsed() <= Duration::from_secs(11),
            "{:?}",
            start.elapsed()
        );
        drop(ws);
    }

    const SECRET: &[u8] = b"session-test-secret-32-bytes-long";

    fn token(sub: &str, valid_for: Duration) -> String {
        let exp = (std::time::SystemTime::now() + valid_for)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({ "sub": sub, "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    async fn jwt_session(valid_for: Duration) -> Opened {
        use crate::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
        let endpoint = Endpoint::chat("/chat");
        let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
        let identity = jwt.verify(&token("ana", valid_for)).unwrap();
        let node = Node::builder()
            .endpoint(endpoint.clone())
            .authenticator(jwt)
            .build()
            .unwrap();
        open_on(node, Arc::new(endpoint), identity).await
    }

    /// Reads (answering pings) until a close frame; returns its code and the
    /// virtual time it took.
    async fn close_code(ws: &mut WebSocketStream<DuplexStream>) -> (u16, Duration) {
        let start = Instant::now();
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), start.elapsed()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_credentials_close_the_connection_with_4004() {
        let (_node, mut ws, _task) = jwt_session(Duration::from_secs(90)).await;
        assert_eq!(next_json(&mut ws).await["user"], "ana");
        let (code, after) = close_code(&mut ws).await;
        assert_eq!(code, 4004);
        // exp plus the 5 s leeway; exp has one-second resolution.
        assert!(
            after > Duration::from_secs(93) && after <= Duration::from_secs(96),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_before_expiry_keeps_the_connection_open() {
        let (_node, mut ws, task) = jwt_session(Duration::from_secs(90)).await;
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        let fresh = token("ana", Duration::from_secs(3600));
        ws.send(Message::text(format!(
            r#"{{"type":"refresh","token":"{fresh}","id":1}}"#
        )))
        .await
        .unwrap();
        let reply = next_json(&mut ws).await;
        assert_eq!(
            (reply["type"].as_str(), reply["id"].as_u64()),
            (Some("refreshed"), Some(1))
        );
        // Well past the first expiry, the connection is still open.
        let read = async { while let Some(Ok(_)) = ws.next().await {} };
        assert!(
            tokio::time::timeout(Duration::from_secs(600), read)
                .await
                .is_err()
        );
        assert!(!task.is_finished());
        // And the new expiry closes it in its turn.
        let (code, _) = close_code(&mut ws).await;
        assert_eq!(code, 4004);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_refresh_leaves_the_old_expiry_in_force() {
        let (_node, mut ws, _task) = jwt_session(Duration::from_secs(90)).await;
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        let other = token("bob", Duration::from_secs(3600));
        ws.send(Message::text(format!(
            r#"{{"type":"refresh","token":"{other}","id":2}}"#
        )))
        .await
        .unwrap();
        assert_eq!(next_json(&mut ws).await["code"], "forbidden");
        let (code, after) = close_code(&mut ws).await;
        assert_eq!(code, 4004);
        assert!(after <= Duration::from_secs(96), "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_admitted_within_the_leeway_lives_until_the_leeway_ends() {
        use crate::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
        let endpoint = Endpoint::chat("/chat");
        let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::Hs256(SECRET.to_vec()))).unwrap();
        // Expired two seconds ago, within the default 5 s leeway.
        let exp = std::time::SystemTime::now() - Duration::from_secs(2);
        let exp = exp.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({ "sub": "ana", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let identity = jwt.verify(&token).unwrap();
        let node = Node::builder()
            .endpoint(endpoint.clone())
            .authenticator(jwt)
            .build()
            .unwrap();
        let (_node, mut ws, _task) = open_on(node, Arc::new(endpoint), identity).await;
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        let (code, after) = close_code(&mut ws).await;
        assert_eq!(code, 4004);
        assert!(
            after >= Duration::from_secs(1) && after <= Duration::from_secs(4),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_with_a_blocked_socket_is_closed_at_once() {
        let (node, ws, task) = open(Endpoint::echo("/echo")).await;
        while node.connection_count() == 0 {
            tokio::task::yield_now().await;
        }
        let outbox = node.inner_conn_outboxes().pop().unwrap();
        let start = Instant::now();
        // The client reads nothing: the pipe fills, then the write batch,
        // then the queue, which overflows.
        let frame = frame::encode(OpCode::Binary, &[0u8; 1024]);
        let mut overflowed = false;
        for _ in 0..2000 {
            if outbox.push(frame.clone()).is_err() {
                overflowed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(overflowed);
        task.await.unwrap();
        // Bounded by the close grace (5 s), not by the 30 s heartbeat.
        assert!(
            start.elapsed() <= Duration::from_secs(6),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(node.connection_count(), 0);
        drop(ws);
    }
}
