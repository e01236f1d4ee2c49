//! One error type per operation: [`BuildError`] for the builder,
//! [`ConnectError`] for [`ClientBuilder::connect`](crate::ClientBuilder::connect),
//! [`PublishError`] for [`Client::publish`](crate::Client::publish),
//! and [`RequestError`] for join, leave, presence, rpc and the token calls.
//! [`ServerError`] is the content of the server's `error` frame.

use std::time::Duration;

use switchboard_protocol::{CloseCode, ErrorCode};

use crate::event::StopReason;

/// An `error` frame from the server: it refused a request. The connection
/// stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// The machine-readable code, as sent (`invalid_room`, `forbidden`,
    /// `refused`, ...). Kept as a string so that codes added by newer servers
    /// survive; see [`ServerError::kind`].
    pub code: String,
    /// The human-readable explanation. Its wording may change; match on
    /// `code`. For `refused`, it is the application's own message.
    pub message: String,
    /// Only with `refused`, when the application gave one: the
    /// application's own machine-readable code (`"spam"`,
    /// `"members_only"`), to match on where `message` is for people.
    pub reason: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(reason) = &self.reason {
            write!(f, " (reason: {reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// The code as a known [`ErrorCode`], or `None` for a code this version
    /// of the protocol does not define.
    pub fn kind(&self) -> Option<ErrorCode> {
        serde_json::from_value(serde_json::Value::String(self.code.clone()))
            .ok()
            .filter(|code| *code != ErrorCode::Unknown)
    }
}

/// The builder's settings cannot make a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The URL is not a `ws://` (or, with the `rustls` feature, `wss://`) URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting {field}: {reason}")]
    InvalidSetting {
        /// The builder method.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The token cannot be sent in an HTTP header (it has control characters
    /// or non-ASCII bytes).
    #[error("the token is not a valid HTTP header value")]
    InvalidToken,
    /// The client was built outside a Tokio runtime, so it has nowhere to run
    /// its connection task.
    #[error("no Tokio runtime: build the client from within one")]
    NoRuntime,
}

/// The first connection made by
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect) failed. The
/// client was not started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The settings were refused before any connection was tried.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The server refused the upgrade with an HTTP status (401 for bad or
    /// expired credentials, 403, 404, 429, 503, ...).
    #[error("upgrade refused with HTTP {status}: {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The response body (a JSON error document for most statuses).
        body: String,
    },
    /// The server closed the connection before its `welcome` frame.
    #[error("closed before welcome with {code}: {reason}")]
    Closed {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// TCP connect, the upgrade or the `welcome` frame took longer than the
    /// connect timeout.
    #[error("no welcome within {0:?}")]
    Timeout(Duration),
    /// A network or WebSocket error (connection refused, reset, protocol
    /// violation during the handshake).
    #[error("connection failed: {0}")]
    Transport(String),
    /// The [token provider](crate::ClientBuilder::token_provider) gave no
    /// usable token: its error's message, `no token within …` when it did
    /// not answer within the connect timeout, or `the token is not a valid
    /// HTTP header value`. Nothing was sent to the server; the client tries
    /// again with backoff.
    #[error("no token: {0}")]
    Token(String),
}

/// A publish did not succeed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The server refused it (`invalid_room`, `forbidden`, `publish_failed`,
    /// `rate_limited`, ...). It was not delivered to anyone.
    #[error("publish refused: {0}")]
    Rejected(ServerError),
    /// No `ack` within the ack timeout after the publish was sent. It may or
    /// may not have been delivered.
    #[error("no ack within {0:?}; the message may or may not have been published")]
    Timeout(Duration),
    /// The connection dropped after the publish was sent and before its
    /// reply. It may or may not have been delivered; it is not sent again.
    #[error("connection lost before the ack; the message may or may not have been published")]
    ConnectionLost,
    /// The client is disconnected and its buffer of publishes waiting for the
    /// next connection is full. The payload is handed back, unsent.
    #[error("publish buffer full ({capacity} waiting); not sent")]
    BufferFull {
        /// The buffer's capacity (the builder's `publish_buffer`).
        capacity: usize,
        /// The payload that was not sent.
        data: serde_json::Value,
    },
    /// The client stopped before the publish was sent or answered.
    #[error("client stopped: {0}")]
    Stopped(StopReason),
}

impl PublishError {
    /// The server's error code when the server refused the publish.
    pub fn code(&self) -> Option<&str> {
        match self {
            PublishError::Rejected(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The application's own code when it refused the publish through a
    /// hook (`refused`) and gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PublishError::Rejected(e) => e.reason.as_deref(),
            _ => None,
        }
    }
}

/// A join, leave, presence, rpc, refresh or set_token request did not
/// succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The server refused it. For an rpc: `refused` (the application said
    /// no: its message, and its own code in [`ServerError::reason`]),
    /// `unavailable` (the application did not answer in time or could not
    /// be reached), `unknown_type` (the endpoint has no rpc hook),
    /// `invalid_field` (a malformed method name).
    #[error("request refused: {0}")]
    Rejected(ServerError),
    /// No reply within the request timeout (the builder's `ack_timeout`, or
    /// the one given to [`Client::rpc_with_timeout`](crate::Client::rpc_with_timeout)).
    /// An rpc may still have been carried out by the application.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The request needs a live connection and there is none right now
    /// (presence, rpc, refresh).
    #[error("not connected")]
    NotConnected,
    /// The connection dropped before the reply (presence, rpc, refresh). An
    /// rpc may or may not have been carried out by the application; it is
    /// not sent again.
    #[error("connection lost before the reply")]
    ConnectionLost,
    /// The rpc's data could not be encoded as JSON. Nothing was sent.
    #[error("the request could not be encoded: {0}")]
    Encode(String),
    /// The rpc was answered, but its result is not the type
    /// [`Client::rpc_json`](crate::Client::rpc_json) was asked for.
    #[error("the result could not be decoded: {0}")]
    Decode(String),
    /// The token cannot be sent in an HTTP header (control characters or
    /// non-ASCII bytes); it was not stored.
    #[error("the token is not a valid HTTP header value")]
    InvalidToken,
    /// A `leave` of the same room came before the join completed.
    #[error("cancelled by a leave of the same room")]
    Cancelled,
    /// The client stopped.
    #[error("client stopped: {0}")]
    Stopped(StopReason),
}

impl RequestError {
    /// The server's error code when the server refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            RequestError::Rejected(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The application's own code when it refused the request through a
    /// hook (`refused`) and gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RequestError::Rejected(e) => e.reason.as_deref(),
            _ => None,
        }
    }
}
