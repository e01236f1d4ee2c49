//! The connection task's outer loop: get the attempt's token, connect, run a
//! session, then decide from the close code (or the upgrade's HTTP status)
//! whether to reconnect at once, back off, wait for a new token, or stop.
//! Refusals of the same credentials are counted, and stop the client at the
//! limit (see [`crate::credentials`]). While no connection is up it still
//! answers commands: publishes are buffered, joins remembered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use switchboard_protocol::ReconnectPolicy;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::jitter;
use crate::builder::Settings;
use crate::client::Command;
use crate::connect::{self, Failure};
use crate::credentials::{Credentials, Refusals};
use crate::error::{ConnectError, PublishError, RequestError};
use crate::event::{ConnectionState, Event, StopReason};
use crate::state::State;

/// How one connection attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The application closed the client (or dropped every handle).
    ClientClosed,
    /// The attempt failed before the server's `welcome`.
    Failed(Failure),
    /// A welcomed connection ended.
    Ended {
        code: switchboard_protocol::CloseCode,
        reason: String,
        uptime: Duration,
    },
}

/// What a command asks of the loop that received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// A new token was set.
    TokenSet,
    /// Close the client.
    Stop,
}

/// The connection task. Owns everything: the settings, the protocol state,
/// the event sender (dropping it at the end closes every event stream).
pub(crate) struct Driver {
    pub(crate) settings: Settings,
    pub(crate) commands: mpsc::Receiver<Command>,
    state_tx: watch::Sender<ConnectionState>,
    pub(crate) state: State,
    /// Where the next attempt's token comes from.
    credentials: Credentials,
    /// The token the last attempt was made with.
    attempt_token: Option<String>,
    /// Refusals in a row of the same credentials; reset by a welcome.
    pub(crate) refusals: Refusals,
    /// Reconnect attempts since the last stable connection.
    attempt: u32,
    /// `connect()` waits here for the first attempt's outcome.
    pub(crate) first: Option<oneshot::Sender<Result<(), ConnectError>>>,
    /// `close()` callers, answered when the task ends.
    closers: Vec<oneshot::Sender<()>>,
}

impl Driver {
    pub(crate) fn new(
        settings: Settings,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
        state_tx: watch::Sender<ConnectionState>,
        buffered: Arc<AtomicUsize>,
        first: Option<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> Self {
        let state = State::new(
            settings.ack_timeout,
            settings.publish_buffer,
            events,
            buffered,
        );
        Driver {
            credentials: settings.credentials.clone(),
            attempt_token: None,
            refusals: Refusals::default(),
            settings,
            commands,
            state_tx,
            state,
            attempt: 0,
            first,
            closers: Vec::new(),
        }
    }

    /// Runs until the client stops.
    pub(crate) async fn run(mut self) {
        let reason = self.supervise().await;
        tracing::debug!(%reason, "client stopped");
        self.finish(reason);
    }

    async fn supervise(&mut self) -> StopReason {
        loop {
            self.state.emit(Event::Connecting {
                attempt: self.attempt,
            });
            self.set_state(ConnectionState::Connecting);
            let (policy, retry_after) = match self.attempt_once().await {
                Outcome::ClientClosed => return StopReason::ClientClosed,
                Outcome::Failed(failure) => {
                    tracing::debug!(error = %failure.error, "connection attempt failed");
                    self.state.emit(Event::ConnectFailed {
                        error: failure.error.clone(),
                    });
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Err(failure.error.clone()));
                        return stop_reason(failure.error);
                    }
                    if let Some(reason) = self.count_refusal(&failure.error) {
                        return reason;
                    }
                    if failure.policy == ReconnectPolicy::Never {
                        return stop_reason(failure.error);
                    }
                    (failure.policy, failure.retry_after)
                }
                Outcome::Ended {
                    code,
                    reason,
                    uptime,
                } => {
                    if uptime >= self.settings.stable_after {
                        self.attempt = 0;
                    }
                    if code.policy() == ReconnectPolicy::Never {
                        return StopReason::Closed { code, reason };
                    }
                    (code.policy(), None)
                }
            };
            let next = self.attempt.saturating_add(1);
            let delay = match policy {
                // The provider is asked for a new token at the next attempt.
                ReconnectPolicy::AfterRefresh if self.credentials.has_provider() => {
                    self.state.emit(Event::TokenExpired);
                    self.settings.backoff.delay(next, &mut rand::rng())
                }
                ReconnectPolicy::AfterRefresh => {
                    self.state.emit(Event::TokenExpired);
                    self.set_state(ConnectionState::WaitingForToken);
                    if !self.wait_for_token().await {
                        return StopReason::ClientClosed;
                    }
                    Duration::ZERO
                }
                ReconnectPolicy::Immediately => {
                    jitter(self.settings.going_away_jitter, &mut rand::rng())
                }
                ReconnectPolicy::Backoff | ReconnectPolicy::Never => {
                    let delay = self.settings.backoff.delay(next, &mut rand::rng());
                    delay.max(retry_after.unwrap_or_default())
                }
            };
            self.attempt = next;
            self.state.emit(Event::Reconnecting {
                attempt: next,
                delay,
            });
            if !delay.is_zero() && self.offline(tokio::time::sleep(delay)).await.is_none() {
                return StopReason::ClientClosed;
            }
        }
    }

    async fn attempt_once(&mut self) -> Outcome {
        let timeout = self.settings.connect_timeout;
        let token = match self.offline(self.credentials.fetch(timeout)).await {
            None => return Outcome::ClientClosed,
            Some(Err(error)) => return Outcome::Failed(Failure::backoff(error)),
            Some(Ok(token)) => token,
        };
        self.attempt_token = token.clone();
        let started = Instant::now();
        let url =
            crate::state::with_user_stream(&self.settings.url, &self.state.user_stream_param());
        let opening = async move { connect::open(&url, token.as_deref(), timeout).await };
        match self.offline(opening).await {
            None => Outcome::ClientClosed,
            Some(Err(failure)) => Outcome::Failed(failure),
            Some(Ok(socket)) => self.session(socket, started).await,
        }
    }

    /// Counts an upgrade that refused the credentials; the reason to stop
    /// once the same credentials were refused `max_refusals` times in a row.
    fn count_refusal(&mut self, error: &ConnectError) -> Option<StopReason> {
        let ConnectError::Http { status, body } = error else {
            return None;
        };
        if !connect::refuses_credentials(*status) {
            return None;
        }
        let attempts = self.refusals.refused(self.attempt_token.as_deref());
        tracing::debug!(status, attempts, "credentials refused");
        (attempts >= self.settings.max_refusals).then(|| StopReason::CredentialsRefused {
            status: *status,
            body: body.clone(),
            attempts,
        })
    }

    /// Drives `fut` while answering commands. `None` when the client was
    /// closed meanwhile.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.commands.recv() => {
                    if self.command(cmd) == Flow::Stop {
                        return None;
                    }
                }
            }
        }
    }

    /// Answers commands until a new token is set (`true`) or the client is
    /// closed (`false`).
    async fn wait_for_token(&mut self) -> bool {
        loop {
            let cmd = self.commands.recv().await;
            match self.command(cmd) {
                Flow::Stop => return false,
                Flow::TokenSet => return true,
                Flow::Continue => {}
            }
        }
    }

    /// Hands one command to the protocol state.
    pub(crate) fn command(&mut self, cmd: Option<Command>) -> Flow {
        let now = Instant::now();
        match cmd {
            None => Flow::Stop,
            Some(Command::Close { done }) => {
                self.closers.push(done);
                Flow::Stop
            }
            Some(Command::Join {
                room,
                presence,
                reply,
            }) => {
                self.state.join(room, presence, reply, now);
                Flow::Continue
            }
            Some(Command::Leave { room, reply }) => {
                self.state.leave(room, reply, now);
                Flow::Continue
            }
            Some(Command::Presence { room, reply }) => {
                self.state.presence(room, reply, now);
                Flow::Continue
            }
            Some(Command::Publish {
                room,
                data,
                options,
                reply,
            }) => {
                self.state.publish(room, data, options, reply, now);
                Flow::Continue
            }
            Some(Command::Rpc {
                method,
                data,
                timeout,
                reply,
            }) => {
                self.state.rpc(method, data, timeout, reply, now);
                Flow::Continue
            }
            Some(Command::SetToken { token, reply }) => {
                self.state.refresh(&token, reply, now);
                // A provider stays in charge of later attempts.
                if !self.credentials.has_provider() {
                    self.credentials = Credentials::Fixed(token);
                }
                Flow::TokenSet
            }
        }
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.state_tx.send_replace(state);
    }

    /// Fails everything still waiting, tells the application, and answers
    /// `close()` callers.
    fn finish(mut self, reason: StopReason) {
        self.state.stop(&reason);
        // The state first: handles whose commands fail from now on read the
        // reason there.
        self.set_state(ConnectionState::Stopped {
            reason: reason.clone(),
        });
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            refuse(cmd, &reason, &mut self.closers);
        }
        self.state.emit(Event::Stopped {
            reason: reason.clone(),
        });
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(ConnectError::Transport(reason.to_string())));
        }
        for done in self.closers.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Answers a command that arrived after the client stopped.
fn refuse(cmd: Command, reason: &StopReason, closers: &mut Vec<oneshot::Sender<()>>) {
    let stopped = || RequestError::Stopped(reason.clone());
    match cmd {
        Command::Join { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Command::Leave { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Command::Presence { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Command::Rpc { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Command::Publish { reply, .. } => {
            let _ = reply.send(Err(PublishError::Stopped(reason.clone())));
        }
        Command::SetToken { reply, .. } => {
            if let Some(reply) = reply {
                let _ = reply.send(Err(stopped()));
            }
        }
        Command::Close { done } => closers.push(done),
    }
}

/// The stop reason for a failed attempt that ends the client.
fn stop_reason(error: ConnectError) -> StopReason {
    match error {
        ConnectError::Http { status, body } => StopReason::Rejected { status, body },
        ConnectError::Closed { code, reason } => StopReason::Closed { code, reason },
        _ => StopReason::TaskEnded,
    }
}
