//! One connection, from the upgrade to its end: a single `select!` loop over
//! the socket, the application's commands, the silence deadline and the
//! request deadlines. Written against any `Sink + Stream` of WebSocket
//! messages, so it runs the same over a real socket or a test channel.
//!
//! # Heartbeats
//!
//! The server pings every `welcome.heartbeat_ms`; tungstenite answers each
//! ping while reading. The loop also watches the silence: before `welcome`,
//! the attempt must finish within the connect timeout; after it, a
//! connection on which nothing at all arrived for the idle timeout (by
//! default `2 × heartbeat_ms + 5 s`) is presumed dead and dropped (close code
//! 1006, reconnect with backoff).

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use switchboard_protocol::server::{ServerFrame, Welcome};
use switchboard_protocol::{CloseCode, ReconnectPolicy};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::connect::Failure;
use crate::driver::{Driver, Flow, Outcome};
use crate::error::ConnectError;
use crate::event::{ConnectionState, Event};

/// Slack added to twice the server's ping interval before a silent
/// connection is presumed dead.
const IDLE_SLACK: Duration = Duration::from_secs(5);

/// The close code when the connection ended without a close frame.
const ABNORMAL: CloseCode = CloseCode(1006);

impl Driver {
    /// Runs one connection until it ends. `started` is when the attempt
    /// began (the connect timeout runs until `welcome`).
    pub(crate) async fn session<S>(&mut self, mut ws: S, started: Instant) -> Outcome
    where
        S: Sink<WsMessage, Error = WsError> + Stream<Item = Result<WsMessage, WsError>> + Unpin,
    {
        let mut welcomed: Option<Instant> = None;
        let mut idle: Option<Duration> = None;
        let mut last_rx = Instant::now();
        let outcome = loop {
            let out = self.state.take_out();
            if !out.is_empty()
                && let Err(e) = self.write(&mut ws, out).await
            {
                break self.lost(welcomed, e);
            }
            let silence = match welcomed {
                None => Some(started + self.settings.connect_timeout),
                Some(_) => idle.map(|d| last_rx + d),
            };
            let requests = self.state.next_deadline();
            tokio::select! {
                msg = ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(WsMessage::Text(text))) => match welcomed {
                            Some(_) => self.state.frame(&text, last_rx),
                            None => {
                                if let Some(w) = parse_welcome(&text) {
                                    welcomed = Some(last_rx);
                                    idle = self.settings.idle_timeout.or_else(|| idle_from(&w));
                                    self.on_welcome(w, last_rx);
                                } else {
                                    tracing::debug!("skipping a frame before welcome");
                                }
                            }
                        },
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = match frame {
                                Some(f) => (CloseCode(u16::from(f.code)), f.reason.to_string()),
                                None => (CloseCode(1005), String::new()),
                            };
                            self.drain(&mut ws).await;
                            break self.closed(welcomed, code, reason);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break self.lost(welcomed, e.to_string()),
                        None => break self.lost(welcomed, "connection closed".into()),
                    }
                }
                cmd = self.commands.recv() => {
                    if self.command(cmd) == Flow::Stop {
                        self.close_socket(&mut ws).await;
                        break Outcome::ClientClosed;
                    }
                }
                () = sleep_until(silence) => {
                    break match welcomed {
                        None => Outcome::Failed(Failure::backoff(ConnectError::Timeout(
                            self.settings.connect_timeout,
                        ))),
                        Some(_) => self.lost(
                            welcomed,
                            format!("nothing received for {:?}; server presumed dead", idle.unwrap_or_default()),
                        ),
                    };
                }
                () = sleep_until(requests) => self.state.expire(Instant::now()),
            }
        };
        if !matches!(outcome, Outcome::ClientClosed) && self.state.is_online() {
            self.state.disconnected();
        }
        outcome
    }

    fn on_welcome(&mut self, w: Welcome, now: Instant) {
        tracing::debug!(user = %w.user, conn = %w.conn, "connected");
        self.refusals.reset();
        self.state.on_user_stream(w.user_stream);
        self.state.connected(now);
        self.set_state(ConnectionState::Connected {
            user: w.user.clone(),
        });
        self.state.emit(Event::Connected {
            user: w.user,
            conn: w.conn,
        });
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    /// Writes `frames` in order and flushes them, within the ack timeout.
    async fn write<S>(&self, ws: &mut S, frames: Vec<String>) -> Result<(), String>
    where
        S: Sink<WsMessage, Error = WsError> + Unpin,
    {
        let send = async {
            for frame in frames {
                ws.feed(WsMessage::text(frame)).await?;
            }
            ws.flush().await
        };
        match tokio::time::timeout(self.settings.ack_timeout, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "writing stalled for {:?}",
                self.settings.ack_timeout
            )),
        }
    }

    /// After the server's close frame: lets tungstenite send the reply and
    /// waits (up to the close timeout) for the server to end the stream.
    async fn drain<S>(&self, ws: &mut S)
    where
        S: Stream<Item = Result<WsMessage, WsError>> + Unpin,
    {
        let rest = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(self.settings.close_timeout, rest).await;
    }

    /// The client's side of a graceful close: sends 1000, then takes in
    /// what the server still sends (acks of publishes in flight) until its
    /// close frame or the close timeout.
    async fn close_socket<S>(&mut self, ws: &mut S)
    where
        S: Sink<WsMessage, Error = WsError> + Stream<Item = Result<WsMessage, WsError>> + Unpin,
    {
        let deadline = Instant::now() + self.settings.close_timeout;
        let frame = CloseFrame {
            code: WsCloseCode::Normal,
            reason: "client closing".into(),
        };
        if tokio::time::timeout_at(deadline, ws.send(WsMessage::Close(Some(frame))))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(WsMessage::Text(text)))) if self.state.is_online() => {
                    self.state.frame(&text, Instant::now())
                }
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                    return;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The server closed the connection with `code`.
    fn closed(&mut self, welcomed: Option<Instant>, code: CloseCode, reason: String) -> Outcome {
        tracing::debug!(%code, %reason, "closed by the server");
        match welcomed {
            Some(at) => self.ended(at, code, reason),
            None => Outcome::Failed(Failure {
                error: ConnectError::Closed { code, reason },
                policy: code.policy(),
                retry_after: None,
            }),
        }
    }

    /// The connection broke without a close frame.
    fn lost(&mut self, welcomed: Option<Instant>, reason: String) -> Outcome {
        tracing::debug!(%reason, "connection lost");
        match welcomed {
            Some(at) => self.ended(at, ABNORMAL, reason),
            None => Outcome::Failed(Failure {
                error: ConnectError::Transport(reason),
                policy: ReconnectPolicy::Backoff,
                retry_after: None,
            }),
        }
    }

    fn ended(&mut self, welcomed: Instant, code: CloseCode, reason: String) -> Outcome {
        self.set_state(ConnectionState::Connecting);
        self.state.emit(Event::Disconnected {
            code,
            reason: reason.clone(),
        });
        Outcome::Ended {
            code,
            reason,
            uptime: Instant::now().saturating_duration_since(welcomed),
        }
    }
}

fn parse_welcome(text: &str) -> Option<Welcome> {
    match ServerFrame::parse(text) {
        Ok(ServerFrame::Welcome(w)) => Some(w),
        _ => None,
    }
}

/// The default idle timeout for a server that pings every `heartbeat_ms`.
fn idle_from(w: &Welcome) -> Option<Duration> {
    (w.heartbeat_ms > 0)
        .then(|| Duration::from_millis(w.heartbeat_ms.saturating_mul(2)) + IDLE_SLACK)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
