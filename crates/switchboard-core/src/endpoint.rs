//! Endpoints: a path, a behaviour ([`Handler`]) and what the endpoint takes
//! from the node (user messages, broadcasts).
//!
//! The built-in behaviours are handlers like any other: [`crate::handlers`]
//! has echo, chat and notifications. Library users register their own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use switchboard_protocol::SUBPROTOCOL;

use crate::config::Config;
use crate::conn::Conn;
use crate::gate::rate::RateLimit;
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
    pub(crate) message_limit: Option<RateLimit>,
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
            .field("message_limit", &self.message_limit)
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
            message_limit: None,
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

    /// Every message to the application through `hooks`' rpc, and its
    /// answers back (see [`App`](crate::handlers::App)). Speaks the
    /// protocol's `welcome` and `error` frames; takes user messages and
    /// broadcasts.
    pub fn app(path: impl Into<String>, hooks: impl Hooks) -> Self {
        Endpoint::new(path, crate::handlers::App)
            .protocol()
            .hooks(hooks)
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

    /// Holds this endpoint's connections to `limit` instead of the node's
    /// `message_rate` (a guest is still held to `guest_message_rate` too).
    pub fn message_limit(mut self, limit: RateLimit) -> Self {
        self.message_limit = Some(limit);
        self
    }

    /// The message rate limit of one connection here: the endpoint's own,
    /// or the node's (see [`Config::message_limit`]), with a guest's held
    /// to the guest limit as well.
    pub fn message_limit_for(&self, config: &Config, guest: bool) -> Option<RateLimit> {
        let Some(own) = self.message_limit else {
            return config.message_limit(guest);
        };
        Some(match config.guest_message_rate.filter(|_| guest) {
            Some(g) => RateLimit {
                per_second: own.per_second.min(g.per_second),
                burst: own.burst.min(g.burst),
            },
            None => own,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoints_own_limit_replaces_the_nodes_and_guests_keep_theirs() {
        let r = |per_second, burst| RateLimit { per_second, burst };
        let config = Config {
            message_rate: Some(r(100.0, 100)),
            ..Config::default()
        };
        let plain = Endpoint::echo("/e");
        assert_eq!(plain.message_limit_for(&config, false), Some(r(100.0, 100)));
        let own = Endpoint::echo("/e").message_limit(r(2.0, 4));
        assert_eq!(own.message_limit_for(&config, false), Some(r(2.0, 4)));
        // The default guest limit (20/s, burst 50) still holds guests.
        assert_eq!(own.message_limit_for(&config, true), Some(r(2.0, 4)));
        let generous = Endpoint::echo("/e").message_limit(r(500.0, 900));
        assert_eq!(generous.message_limit_for(&config, true), Some(r(20.0, 50)));
    }
}
