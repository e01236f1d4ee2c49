//! [`ClientBuilder`]: the settings, every default stated, validated before
//! the connection task starts.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::credentials::{self, Credentials};
use crate::driver::Driver;
use crate::error::{BuildError, ConnectError};
use crate::event::{ConnectionState, Events};

/// How many commands (publish, join, ...) may wait for the connection task
/// before callers wait in turn.
const COMMAND_QUEUE: usize = 64;

/// The validated settings the connection task runs with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub url: String,
    pub credentials: Credentials,
    pub max_refusals: u32,
    pub backoff: Backoff,
    pub going_away_jitter: Duration,
    pub stable_after: Duration,
    pub publish_buffer: usize,
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub close_timeout: Duration,
    pub event_buffer: usize,
}

/// Builds a [`Client`]. Every setting has a default, stated on its method.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard_client::ConnectError> {
/// use std::time::Duration;
/// use switchboard_client::ClientBuilder;
///
/// let (client, mut events) = ClientBuilder::new("ws://localhost:3000/ws/chat")
///     .token("eyJhbGciOi...")
///     .backoff(Duration::from_millis(500), Duration::from_secs(30))
///     .connect()
///     .await?;
/// # let _ = (client, events.recv().await);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect` or `build`"]
pub struct ClientBuilder {
    settings: Settings,
}

impl ClientBuilder {
    /// Starts a builder for the endpoint at `url`: `ws://host:port/ws/chat`
    /// (or `/ws/notifications`), or `wss://…` with the `rustls` feature.
    ///
    /// The client offers the subprotocol `switchboard.v1` and waits for the
    /// `welcome` frame, so the endpoint must speak the Switchboard protocol
    /// (the server's `/ws/chat` and `/ws/notifications` do; a custom
    /// endpoint needs `welcome(true)` and `subprotocol("switchboard.v1")`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            settings: Settings {
                url: url.into(),
                credentials: Credentials::None,
                max_refusals: 5,
                backoff: Backoff::default(),
                going_away_jitter: Duration::from_secs(1),
                stable_after: Duration::from_secs(10),
                publish_buffer: 256,
                ack_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                idle_timeout: None,
                close_timeout: Duration::from_secs(5),
                event_buffer: 1024,
            },
        }
    }

    /// The credentials, sent as `Authorization: Bearer <token>` on every
    /// connection attempt. Default: none (a guest on a server without
    /// credentials). Replace them later with
    /// [`Client::set_token`] or [`Client::refresh`].
    ///
    /// A fixed token works like a [token provider](Self::token_provider)
    /// that always returns it: an upgrade refused with 401 or 403 is retried
    /// until the [refusal limit](Self::max_refusals). One difference: after
    /// the server closed with 4004 (credentials expired) the same token
    /// would be refused, so the client waits for [`Client::set_token`]
    /// instead of reconnecting. Replaces an earlier `token_provider`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.settings.credentials = Credentials::Fixed(token.into());
        self
    }

    /// Where to get the credentials: `provider` is called before every
    /// connection attempt (the first one, every reconnect, and so after the
    /// server closed with 4004 because the credentials expired), and the
    /// token it returns is sent as `Authorization: Bearer <token>`. Use it
    /// for tokens that expire: the client then never reconnects with a
    /// token that expired while it was disconnected, as long as the
    /// provider hands out a fresh one. Replaces an earlier [`token`](Self::token).
    ///
    /// - **Failures.** A provider that returns an error, does not answer
    ///   within the [connect timeout](Self::connect_timeout), or returns a
    ///   token that cannot travel in an HTTP header fails the attempt with
    ///   [`ConnectError::Token`] (reported as
    ///   [`Event::ConnectFailed`](crate::Event::ConnectFailed)). The client
    ///   retries with backoff, as after a network error: each failure
    ///   counts as an attempt, so the delays grow to the cap, and it never
    ///   stops because of them (call [`Client::close`] to give up). The
    ///   first attempt of [`connect`](Self::connect) returns the error.
    /// - **Refusals.** An upgrade refused with 401 or 403 is retried with
    ///   backoff, asking the provider again; after
    ///   [`max_refusals`](Self::max_refusals) refusals in a row of the same
    ///   token the client stops with
    ///   [`StopReason::CredentialsRefused`](crate::StopReason::CredentialsRefused).
    ///   A different token starts the count again.
    /// - **Expiry.** After a 4004 close the client emits
    ///   [`Event::TokenExpired`](crate::Event::TokenExpired) and reconnects
    ///   with backoff (the attempt counter starts again after a stable
    ///   connection, so the first delay is at most the backoff base),
    ///   asking the provider for a new token; it does not wait for
    ///   [`Client::set_token`].
    /// - **While connected** the provider is not called: renew the token on
    ///   the open connection with [`Client::refresh`]. A token given to
    ///   `refresh` or `set_token` is used on that connection only; the next
    ///   attempt asks the provider.
    ///
    /// The provider runs on the connection task, one call at a time; the
    /// client keeps answering its handles while it waits.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard_client::ConnectError> {
    /// # async fn fetch_token(_: &str) -> Result<String, std::io::Error> { Ok(String::new()) }
    /// use switchboard_client::ClientBuilder;
    ///
    /// let (client, events) = ClientBuilder::new("ws://localhost:3000/ws/chat")
    ///     .token_provider(|| fetch_token("https://auth.example/token"))
    ///     .connect()
    ///     .await?;
    /// # let _ = (client, events);
    /// # Ok(())
    /// # }
    /// ```
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Display,
    {
        self.settings.credentials = Credentials::Provider(Arc::new(move || {
            let asked = provider();
            Box::pin(async move { asked.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// How many upgrades in a row refused with HTTP 401 or 403 for the same
    /// credentials (the same token, or none) stop the client with
    /// [`StopReason::CredentialsRefused`](crate::StopReason::CredentialsRefused).
    /// Before that, each refusal is retried with backoff (with a
    /// [token provider](Self::token_provider), asking it for a token
    /// again). A welcomed connection, or a different token, starts the
    /// count again. 1 stops at the first refusal. Must be at least 1.
    /// Default: 5.
    pub fn max_refusals(mut self, refusals: u32) -> Self {
        self.settings.max_refusals = refusals;
        self
    }

    /// Exponential backoff with full jitter for reconnects: attempt `n`
    /// waits a random delay in `[0, min(cap, base · 2^(n−1))]`. Default:
    /// 500 ms and 30 s. `base` must be above zero and at most `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.settings.backoff = Backoff { base, cap };
        self
    }

    /// The jitter window of the immediate reconnect after the server said it
    /// is going away (close codes 1001, 1012): a random delay in
    /// `[0, window]`. Default: 1 s.
    pub fn going_away_jitter(mut self, window: Duration) -> Self {
        self.settings.going_away_jitter = window;
        self
    }

    /// A connection that stayed up at least this long counts as stable: when
    /// it drops, the attempt counter starts again at 1, so the next backoff
    /// is short. Default: 10 s.
    pub fn stable_after(mut self, duration: Duration) -> Self {
        self.settings.stable_after = duration;
        self
    }

    /// How many publishes made while disconnected are kept, in order, and
    /// sent once the next connection has rejoined its rooms. One more fails
    /// at once with [`PublishError::BufferFull`](crate::PublishError::BufferFull).
    /// Zero makes every publish made while disconnected fail that way.
    /// Default: 256.
    pub fn publish_buffer(mut self, capacity: usize) -> Self {
        self.settings.publish_buffer = capacity;
        self
    }

    /// How long a sent publish waits for its `ack` (or `error`) before it
    /// fails with [`PublishError::Timeout`](crate::PublishError::Timeout).
    /// The clock starts when the frame is sent, not while it waits in the
    /// publish buffer. The same limit applies to the replies of join, leave,
    /// presence, rpc (unless the call gives its own, with
    /// [`Client::rpc_with_timeout`](crate::Client::rpc_with_timeout)) and
    /// refresh, and to a write to the socket: one that stalls this long
    /// drops the connection. Default: 10 s.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ack_timeout = timeout;
        self
    }

    /// How long one connection attempt may take, from the TCP connect to the
    /// server's `welcome` frame. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Declare the server dead, drop the connection and reconnect (with
    /// backoff) when nothing at all, not even a ping, arrived for this long.
    /// Default: derived from the `welcome` frame's `heartbeat_ms`, the
    /// server's ping interval: `2 × heartbeat_ms + 5 s` (65 s with the
    /// server's default 30 s interval); no limit when the server does not
    /// ping (`heartbeat_ms` 0).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = Some(timeout);
        self
    }

    /// How long [`Client::close`] waits for the server to answer the close
    /// frame before it drops the connection. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.settings.close_timeout = timeout;
        self
    }

    /// How many events each [`Events`] receiver may fall behind before it
    /// loses the oldest (see [Lagging](crate::event#lagging)). Default: 1024.
    pub fn event_buffer(mut self, capacity: usize) -> Self {
        self.settings.event_buffer = capacity;
        self
    }

    /// Starts the client and waits for the first connection: `Ok` once the
    /// server welcomed it, `Err` (and no client) if that first attempt
    /// failed. From then on the client reconnects on its own.
    pub async fn connect(self) -> Result<(Client, Events), ConnectError> {
        let (first_tx, first_rx) = oneshot::channel();
        let (client, events) = self.start(Some(first_tx))?;
        match first_rx.await {
            Ok(Ok(())) => Ok((client, events)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Transport("the connection task ended".into())),
        }
    }

    /// Starts the client without waiting: it connects in the background and
    /// keeps trying (with backoff) until a connection succeeds or a refusal
    /// is terminal. Must be called within a Tokio runtime. The [`Events`]
    /// returned see every event from the first `Connecting` on.
    pub fn build(self) -> Result<(Client, Events), BuildError> {
        self.start(None)
    }

    fn start(
        self,
        first: Option<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> Result<(Client, Events), BuildError> {
        let settings = self.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (event_tx, event_rx) = broadcast::channel(settings.event_buffer);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let buffered = Arc::new(AtomicUsize::new(0));
        let client = Client::new(cmd_tx, event_tx.downgrade(), state_rx, buffered.clone());
        let driver = Driver::new(settings, cmd_rx, event_tx, state_tx, buffered, first);
        runtime.spawn(driver.run());
        Ok((client, Events::new(event_rx)))
    }

    fn validate(self) -> Result<Settings, BuildError> {
        let s = self.settings;
        let invalid_url = |reason: &str| BuildError::InvalidUrl {
            url: s.url.clone(),
            reason: reason.to_string(),
        };
        let request = s
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| invalid_url(&e.to_string()))?;
        match request.uri().scheme_str() {
            Some("ws") => {}
            #[cfg(feature = "rustls")]
            Some("wss") => {
                // rustls panics on a TLS connection without a provider.
                if rustls::crypto::CryptoProvider::get_default().is_none() {
                    return Err(invalid_url(
                        "wss:// needs a rustls crypto provider: call \
                         CryptoProvider::install_default() before building the client",
                    ));
                }
            }
            #[cfg(not(feature = "rustls"))]
            Some("wss") => return Err(invalid_url("wss:// needs the `rustls` feature")),
            _ => return Err(invalid_url("the scheme must be ws:// or wss://")),
        }
        if let Credentials::Fixed(token) = &s.credentials
            && !credentials::is_header_safe(token)
        {
            return Err(BuildError::InvalidToken);
        }
        let setting = |field: &'static str, reason: &str| BuildError::InvalidSetting {
            field,
            reason: reason.to_string(),
        };
        if s.backoff.base.is_zero() {
            return Err(setting("backoff", "base must be above zero"));
        }
        if s.backoff.cap < s.backoff.base {
            return Err(setting("backoff", "cap must be at least base"));
        }
        for (field, value) in [
            ("ack_timeout", s.ack_timeout),
            ("connect_timeout", s.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(setting(field, "must be above zero"));
            }
        }
        if s.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(setting("idle_timeout", "must be above zero"));
        }
        if s.event_buffer == 0 {
            return Err(setting("event_buffer", "must be at least 1"));
        }
        if s.max_refusals == 0 {
            return Err(setting("max_refusals", "must be at least 1"));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(b: ClientBuilder) -> BuildError {
        b.validate().expect_err("invalid")
    }

    #[test]
    fn settings_are_validated() {
        assert!(matches!(
            invalid(ClientBuilder::new("http://localhost/ws/chat")),
            BuildError::InvalidUrl { .. }
        ));
        assert!(matches!(
            invalid(ClientBuilder::new("not a url")),
            BuildError::InvalidUrl { .. }
        ));
        let ok = ClientBuilder::new("ws://localhost:1/ws/chat");
        assert!(ok.clone().validate().is_ok());
        assert_eq!(invalid(ok.clone().token("a\nb")), BuildError::InvalidToken);
        let ms = Duration::from_millis;
        assert!(matches!(
            invalid(ok.clone().backoff(ms(0), ms(10))),
            BuildError::InvalidSetting {
                field: "backoff",
                ..
            }
        ));
        assert!(matches!(
            invalid(ok.clone().backoff(ms(10), ms(5))),
            BuildError::InvalidSetting {
                field: "backoff",
                ..
            }
        ));
        assert!(matches!(
            invalid(ok.clone().event_buffer(0)),
            BuildError::InvalidSetting {
                field: "event_buffer",
                ..
            }
        ));
        assert!(matches!(
            invalid(ok.clone().max_refusals(0)),
            BuildError::InvalidSetting {
                field: "max_refusals",
                ..
            }
        ));
        assert!(
            ok.clone()
                .token_provider(|| std::future::ready(Ok::<_, String>("a\nb".into())))
                .validate()
                .is_ok(),
            "a provider's tokens are checked when it gives them"
        );
        assert!(matches!(
            invalid(ok.ack_timeout(ms(0))),
            BuildError::InvalidSetting {
                field: "ack_timeout",
                ..
            }
        ));
    }

    #[test]
    fn build_outside_a_runtime_is_an_error_not_a_panic() {
        let r = ClientBuilder::new("ws://localhost:1/ws/chat").build();
        assert_eq!(r.err(), Some(BuildError::NoRuntime));
    }
}
