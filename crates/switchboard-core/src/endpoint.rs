//! Endpoints: a path, a behaviour ([`Handler`]) and what the endpoint takes
//! from the node (user messages, broadcasts).
//!
//! The built-in behaviours are handlers like any other: [`crate::handlers`]
//! has echo, chat and notifications. Library users register their own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use switchboard_protocol::SUBPROTOCOL;

use crate::conn::Conn;
use crate::handlers::{Chat, Echo, Notifications};
use crate::hooks::Hooks;

/// A data message from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text message. The bytes are valid UTF-8 (checked on arrival).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Inbound {
    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Inbound::Text(b) => std::str::from_utf8(b).ok(),
            Inbound::Binary(_) => None,
        }
    }
}

/// Why a connection ended, as handed to [`Handler::on_close`] and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The close code sent or received, if any (none when the socket just
    /// dropped).
    pub code: Option<u16>,
    /// A short explanation.
    pub reason: String,
    /// Whether the server ended the connection (as opposed to the client or
    /// the network).
    pub by_server: bool,
}

/// The behaviour of an endpoint. One handler value serves every connection of
/// its endpoint; per-connection state lives in [`Conn`] (see
/// [`Conn::extensions_mut`]).
///
/// The session awaits each call before it reads the next message, so calls
/// for one connection never overlap and messages are handled in order. Keep
/// them short: a slow handler delays only its own connection.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The connection is open. Default: nothing.
    async fn on_open(&self, conn: &mut Conn) {
        let _ = conn;
    }

    /// A text or binary message arrived.
    async fn on_message(&self, conn: &mut Conn, message: Inbound);

    /// The connection ended. It has already left every room. Default: nothing.
    async fn on_close(&self, conn: &mut Conn, disconnect: &Disconnect) {
        let _ = (conn, disconnect);
    }
}

/// A WebSocket endpoint: a path and its behaviour.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) path: String,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) user_messages: bool,
    pub(crate) broadcasts: bool,
    pub(crate) speaks_protocol: bool,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) hooks: Option<Arc<dyn Hooks>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("user_messages", &self.user_messages)
            .field("broadcasts", &self.broadcasts)
            .field("speaks_protocol", &self.speaks_protocol)
            .field("subprotocols", &self.subprotocols)
            .field("hooks", &self.hooks.is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint at `path` with a custom handler. Defaults: it receives no
    /// user messages and no broadcasts, does not speak the Switchboard
    /// protocol (no `welcome`, no `error` frames of the session's own), and
    /// negotiates no subprotocol.
    pub fn new(path: impl Into<String>, handler: impl Handler) -> Self {
        Endpoint {
            path: path.into(),
            handler: Arc::new(handler),
            user_messages: false,
            broadcasts: false,
            speaks_protocol: false,
            subprotocols: Vec::new(),
            hooks: None,
        }
    }

    /// Echo: every text or binary message comes back unchanged.
    pub fn echo(path: impl Into<String>) -> Self {
        Endpoint::new(path, Echo)
    }

    /// Chat rooms over the Switchboard protocol: join, leave, publish with
    /// acknowledgements. Receives user messages and broadcasts too.
    pub fn chat(path: impl Into<String>) -> Self {
        Endpoint::new(path, Chat).protocol()
    }

    /// Server push to the authenticated user: user messages and broadcasts
    /// only; anything the client sends is refused with an error frame.
    pub fn notifications(path: impl Into<String>) -> Self {
        Endpoint::new(path, Notifications).protocol()
    }

    /// Speaks the Switchboard protocol: sends `welcome`, negotiates
    /// `switchboard.v1`, takes user messages and broadcasts.
    fn protocol(self) -> Self {
        self.speaks_protocol(true)
            .subprotocol(SUBPROTOCOL)
            .user_messages(true)
            .broadcasts(true)
    }

    /// Whether connections here receive messages sent to their user.
    pub fn user_messages(mut self, on: bool) -> Self {
        self.user_messages = on;
        self
    }

    /// Whether connections here receive broadcasts.
    pub fn broadcasts(mut self, on: bool) -> Self {
        self.broadcasts = on;
        self
    }

    /// Whether the endpoint speaks the Switchboard protocol
    /// (`docs/protocol.md`) to its clients: each connection first receives
    /// a `welcome` frame, and a message the rate limit drops is answered
    /// with an `error` frame (`rate_limited`). Off, the session sends no
    /// frame of its own besides control frames.
    pub fn speaks_protocol(mut self, on: bool) -> Self {
        self.speaks_protocol = on;
        self
    }

    /// Adds a subprotocol this endpoint accepts. The first one the client
    /// offers that the endpoint accepts is selected.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }

    /// Asks `hooks` before a client's `join` or `publish` goes through, and
    /// hands them its `rpc` frames (see [`Hooks`]). Without hooks, an `rpc`
    /// is answered `unknown_type`.
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// The endpoint's hooks, if it has any.
    pub fn hooks_ref(&self) -> Option<&Arc<dyn Hooks>> {
        self.hooks.as_ref()
    }

    /// The endpoint's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subprotocols it accepts, in order of preference.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
}
