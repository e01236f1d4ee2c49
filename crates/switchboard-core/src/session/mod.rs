//! One task per socket. The session owns the connection's I/O and runs one
//! loop over four sources: inbound frames, the outbound queue, the heartbeat
//! timer, and close requests (which arrive through the outbound queue).
//!
//! The loop is written against any [`Transport`], so unit tests drive it
//! over an in-memory pipe with time paused, and a new transport needs no
//! change here.
//!
//! - this module: [`run`], the session from open to close, and its main
//!   loop;
//! - `open`: the connection's shared pieces;
//! - `channel`: the transport with its write queue and timers, and the poll
//!   for the next event;
//! - `close`: the close handshake, and every other way a connection ends;
//! - `throttle`: the per-connection message rate limit.
//!
//! # Writing
//!
//! Frames are moved from the [`Outbox`](crate::outbox::Outbox) into a small
//! write queue and written with one vectored write for as many as are ready,
//! so a connection that has several messages queued costs one syscall, while
//! a lone message is written at once without waiting for company.
//!
//! Over TCP, the socket is shared with the node's
//! [flushers](crate::write::flush): fan-out frames to an idle connection are
//! written by a flusher task without waking this one. The session takes the
//! write side over (through its [`SessionWrites`](crate::write::SessionWrites),
//! the only holder of the claim) before it queues a frame of its own, and
//! when the socket does not take a flusher's write at once. The write path,
//! and the locks it takes, are described in [`crate::write`].
//!
//! # Heartbeats
//!
//! Every `heartbeat_interval` the server sends the transport's ping; if no
//! pong arrives within `heartbeat_timeout`, the connection is terminated
//! (4001) and leaves every room at once.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use switchboard_protocol::CloseCode;
use switchboard_protocol::server::{ServerFrame, Welcome};
use tokio::time::Instant;

use crate::broker::Topic;
use crate::conn::Conn;
use crate::endpoint::{Disconnect, Endpoint, Inbound};
use crate::outbox::CloseRequest;
use crate::streams::StreamRequest;
use crate::transport::{Received, Transport};
use crate::ws::{OpCode, frame};

mod channel;
mod close;
mod open;
#[cfg(test)]
mod tests;
mod throttle;

pub(crate) use channel::Channel;
use close::{close_with, end};
pub(crate) use open::new_conn;
use throttle::{Throttle, Verdict};

/// What woke the session's loop.
enum Event {
    Received(Received),
    CloseRequested(CloseRequest),
    HeartbeatDue,
    Expired,
    Io(io::Error),
}

/// Runs one connection from open to close.
///
/// The connection and endpoint are borrowed from the task that owns them, so
/// that they are stored once in the task, not once per layer of futures:
/// the task's size is what every idle connection costs.
///
/// The channel is built beforehand (see [`Channel::new`]) and moved in,
/// so that nothing used only to set it up is kept in the task.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in every session"
)]
pub(crate) fn run<'a, T: Transport + 'a>(
    mut channel: Channel<T>,
    conn: &'a mut Conn,
    endpoint: &'a Arc<Endpoint>,
) -> impl Future<Output = ()> + Send + 'a {
    // An `async move` block rather than an `async fn`: an async fn keeps its
    // arguments twice (as passed, and moved into its body), and this future
    // is what every idle connection costs.
    async move {
        let node = conn.node.clone();
        node.register_conn(conn.id, &conn.outbox);
        node.stats()
            .connection_opened(endpoint.path(), channel.transport.name());
        record_open(conn);
        // Per-connection lines are debug: at info, a node with 100k
        // connections and their churn would write little else.
        tracing::debug!(
            conn = %conn.id(), user = %conn.user(), remote = ?conn.remote, path = %conn.path(),
            transport = channel.transport.name(), "connected"
        );
        let disconnect = drive(&mut channel, conn, endpoint).await;
        // Flushers let go of the socket, so that it closes with the transport.
        conn.outbox.detach_direct();
        node.stats()
            .connection_closed(endpoint.path(), channel.transport.name());
        drop(channel);
        // Rare, large futures are boxed so that they do not inflate the
        // session's state machine, which every idle connection carries.
        Box::pin(leave_everything(conn, endpoint)).await;
        node.unregister_conn(conn.id);
        record_close(conn, &disconnect);
        endpoint.handler.on_close(conn, &disconnect).await;
        tracing::debug!(
            conn = %conn.id(), user = %conn.user(), code = ?disconnect.code,
            reason = %disconnect.reason, by_server = disconnect.by_server, "disconnected"
        );
    }
}

/// Tells the node's events sink that `conn` opened.
fn record_open(conn: &Conn) {
    let node = &conn.node;
    if node.has_events() {
        node.record(|| crate::events::Event::Connect {
            user: conn.identity.user.clone(),
            conn: conn.id(),
            path: conn.path().to_string(),
        });
        node.count_user(&conn.identity.user, true);
    }
}

/// Tells the node's events sink that `conn` ended.
fn record_close(conn: &Conn, disconnect: &Disconnect) {
    let node = &conn.node;
    if node.has_events() {
        node.record(|| crate::events::Event::Disconnect {
            user: conn.identity.user.clone(),
            conn: conn.id(),
            code: disconnect.code,
            reason: disconnect.reason.clone(),
        });
        node.count_user(&conn.identity.user, false);
    }
}

/// Subscribes the connection to its user's messages (and to broadcasts when
/// `broadcasts`), while it is recorded as online (`online_status`): the two
/// wait on the broker side by side, so a connection that subscribes waits
/// for one round trip, not two. A failed record is logged, never fatal.
async fn open_identity(conn: &Conn, endpoint: &Endpoint, broadcasts: bool) -> Result<(), String> {
    let id = conn.id();
    let online = conn.node.record_online(&id, &conn.identity.user, true);
    let (subscribed, ()) = tokio::join!(subscribe_identity(conn, endpoint, broadcasts), online);
    subscribed
}

async fn subscribe_identity(
    conn: &Conn,
    endpoint: &Endpoint,
    broadcasts: bool,
) -> Result<(), String> {
    let hub = conn.node.hub();
    if endpoint.user_messages {
        let topic = Topic::User(conn.identity.user.clone());
        let added = match stream_request(conn, endpoint) {
            // Held until the stream's position is read: see `streams`.
            Some(_) => hub.add_joining(&topic, conn.id, &conn.outbox).await,
            None => hub.add(topic, conn.id, &conn.outbox).await,
        };
        added.map_err(|e| format!("cannot subscribe user: {e}"))?;
    }
    if broadcasts {
        subscribe_broadcasts(conn, endpoint).await?;
    }
    Ok(())
}

async fn subscribe_broadcasts(conn: &Conn, endpoint: &Endpoint) -> Result<(), String> {
    if endpoint.broadcasts {
        conn.node
            .hub()
            .add(Topic::Broadcast, conn.id, &conn.outbox)
            .await
            .map_err(|e| format!("cannot subscribe broadcasts: {e}"))?;
    }
    Ok(())
}

/// The user stream the connection asked for at the upgrade, when it has
/// one: an endpoint that speaks the protocol and delivers user messages,
/// and a user that is not a guest.
fn stream_request<'a>(conn: &'a Conn, endpoint: &Endpoint) -> Option<&'a StreamRequest> {
    if !endpoint.user_messages || !endpoint.speaks_protocol || conn.identity.guest {
        return None;
    }
    conn.extensions.get::<StreamRequest>()
}

/// Subscribes the connection (see [`open_identity`]) and queues its
/// `welcome` ahead of everything delivered to it meanwhile.
///
/// The task is the writer from the start, so nothing queued is written
/// before this returns: the client reads its `welcome` only once the
/// connection is subscribed, and anything sent after that reaches it. A
/// `welcome` that needs nothing from the broker is queued first. One that
/// carries the user stream's position is queued after the stream is read,
/// with the replay, ahead of the user messages held meanwhile; broadcasts
/// are subscribed after it, so that none is queued before it.
async fn open_and_welcome(
    conn: &Conn,
    endpoint: &Endpoint,
    writes: &crate::write::SessionWrites,
) -> Result<(), String> {
    writes.claim(&conn.outbox);
    let Some(request) = stream_request(conn, endpoint) else {
        if endpoint.speaks_protocol {
            let _ = conn.send_frame(&ServerFrame::Welcome(welcome(conn)));
        }
        return open_identity(conn, endpoint, true).await;
    };
    open_identity(conn, endpoint, false).await?;
    welcome_with_stream(conn, request).await?;
    subscribe_broadcasts(conn, endpoint).await
}

/// The `welcome` frame, without a user stream.
fn welcome(conn: &Conn) -> Welcome {
    Welcome {
        user: conn.user().to_string(),
        conn: conn.id(),
        protocol: switchboard_protocol::SUBPROTOCOL.to_string(),
        heartbeat_ms: conn.node.config().heartbeat_interval.as_millis() as u64,
        user_stream: None,
    }
}

/// Reads the user stream the connection asked for and queues the
/// `welcome`, followed by the replay, ahead of the live user messages held
/// meanwhile (see `streams`). `Err` when the stream cannot be read.
async fn welcome_with_stream(conn: &Conn, request: &StreamRequest) -> Result<(), String> {
    let broker = conn.node.broker().clone();
    let opened = crate::streams::open(&*broker, &conn.identity.user, request)
        .await
        .map_err(|e| format!("cannot read user stream: {e}"))?;
    let welcome = ServerFrame::Welcome(Welcome {
        user_stream: Some(opened.field),
        ..welcome(conn)
    });
    let mut prelude = Vec::with_capacity(opened.replay.len() + 1);
    prelude.push(frame::encode(OpCode::Text, welcome.to_json().as_bytes()));
    prelude.extend(opened.replay);
    let topic = Topic::User(conn.identity.user.clone());
    conn.node
        .hub()
        .finish_join(&topic, conn.id, prelude, opened.after);
    Ok(())
}

/// Leaves every room and index, at once, whatever ended the connection, and
/// forgets the connection in the users' presence (`online_status`).
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
    node.record_online(&conn.id(), &conn.identity.user, false)
        .await;
}

/// The session from the handshake on: subscriptions, `welcome`, then the
/// main loop. Every idle connection is parked inside it, so its state is
/// kept small: the only awaits in the loop are the next event and the
/// handler; whatever ends the connection runs in a boxed future.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in every session"
)]
fn drive<'a, T: Transport>(
    t: &'a mut Channel<T>,
    conn: &'a mut Conn,
    endpoint: &'a Endpoint,
) -> impl Future<Output = Disconnect> + Send + 'a {
    // An `async move` block, like `run`, so the arguments are kept once.
    async move {
        let node = conn.node.clone();
        let config = node.config();
        if let Err(reason) = Box::pin(open_and_welcome(conn, endpoint, &t.writes)).await {
            // The close is written alone: the welcome queued for it, and
            // what was delivered meanwhile, stay in the outbox unwritten.
            let code = CloseCode::TRY_AGAIN_LATER;
            return Box::pin(close_with(t, conn, code, reason, false)).await;
        }
        endpoint.handler.on_open(conn).await;
        let handler = endpoint.handler.clone();
        let mut throttle = endpoint
            .message_limit_for(config, conn.identity.guest)
            .map(|limit| Box::new(Throttle::new(limit, Instant::now())));
        loop {
            let event = poll_fn(|cx| t.poll_event(cx, conn)).await;
            let inbound = match event {
                Event::Received(Received::Data(inbound)) => {
                    let stats = conn.node.stats();
                    stats.frames_received.inc();
                    let (Inbound::Text(b) | Inbound::Binary(b)) = &inbound;
                    stats.received_bytes.inc_by(b.len() as u64);
                    inbound
                }
                Event::Received(Received::Ping(payload)) => {
                    t.queue(conn, t.transport.pong(&payload));
                    continue;
                }
                Event::Received(Received::Pong) => {
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
                    t.writes.release_idle_storage(&conn.outbox);
                    t.queue(conn, t.transport.ping());
                    t.awaiting_pong = true;
                    t.heartbeat
                        .as_mut()
                        .reset(Instant::now() + config.heartbeat_timeout);
                    continue;
                }
                Event::Expired if Box::pin(conn.renew()).await => {
                    t.arm_expiry(conn.identity.expires_at);
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
                    t.writes.claim(&conn.outbox);
                    if endpoint.hooks.is_some() {
                        // A hook may wait for the application: keep writing
                        // what is delivered meanwhile.
                        Box::pin(handle_while_writing(t, conn, &*handler, inbound)).await;
                    } else {
                        handler.on_message(conn, inbound).await;
                    }
                    t.arm_expiry(conn.identity.expires_at);
                }
                Verdict::Drop => {
                    if endpoint.speaks_protocol {
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

/// Runs the handler on `inbound` while writing what reaches the outbox in
/// the meantime, so that a handler waiting on the application does not hold
/// back the connection's deliveries. Reading waits: frames are handled one
/// at a time, in order.
async fn handle_while_writing<T: Transport>(
    t: &mut Channel<T>,
    conn: &mut Conn,
    handler: &dyn crate::endpoint::Handler,
    inbound: Inbound,
) {
    let outbox = conn.outbox.clone();
    let mut written = crate::stats::Written::default();
    let mut handling = handler.on_message(conn, inbound);
    poll_fn(|cx| {
        if handling.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(());
        }
        // A write error shows again in the main loop, which ends the session.
        let _ = t.poll_write_outbox(cx, &outbox, &mut written);
        std::task::Poll::Pending
    })
    .await;
    drop(handling);
    conn.node.stats().sent.add(written);
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
