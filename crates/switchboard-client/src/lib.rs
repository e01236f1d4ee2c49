//! The Rust client of Switchboard: one WebSocket connection to a Switchboard
//! endpoint (`/ws/chat` or `/ws/notifications`) that reconnects on its own,
//! keeps its rooms joined, recovers the messages it missed, and never
//! delivers one room offset twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use serde_json::json;
//! use switchboard_client::{ClientBuilder, Event};
//!
//! let (client, mut events) = ClientBuilder::new("ws://localhost:3000/ws/chat")
//!     .connect()
//!     .await?;
//! client.join("lobby").await?;
//! let ack = client.publish("lobby", json!({"text": "hi"})).await?;
//! println!("published at offset {:?}", ack.offset);
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(m) => println!("{:?} #{:?}: {}", m.target, m.offset, m.data),
//!         Event::RecoveryFailed { room } => println!("reload {room}: messages were lost"),
//!         Event::Stopped { reason } => println!("stopped: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way: wire types (`switchboard-protocol`) ← the
//! protocol state ← the connection task ← the handle.
//!
//! - [`builder`]: [`ClientBuilder`]; every setting and its default.
//! - [`client`]: [`Client`], the cloneable handle; each call (join, leave,
//!   publish, presence, rpc, refresh) is a command to the connection task.
//! - `driver` (private): the connection task's outer loop: get the token,
//!   connect, decide from the close code whether to reconnect, back off,
//!   wait for a token, or stop; buffer publishes while disconnected.
//! - `session` (private): one connection's `select!` loop (socket, commands,
//!   heartbeat silence, request deadlines), written against `Sink + Stream`.
//! - `connect` (private): the upgrade request and what an HTTP refusal
//!   means.
//! - `credentials` (private): where each attempt's token comes from (none,
//!   fixed, a token provider) and the count of refusals of the same
//!   credentials.
//! - `state` (private): the protocol state with no I/O: rooms and their
//!   positions, pending requests (matched to their replies by `id`), the
//!   publish buffer; `state::inbound` applies server frames (reply matching,
//!   dedupe, recovery).
//! - [`backoff`]: the reconnect delay policy as pure functions.
//! - [`event`]: [`Event`], the [`Events`] and [`RoomMessages`] streams,
//!   [`ConnectionState`].
//! - [`error`]: one error type per operation.
//!
//! # Reconnecting
//!
//! Every close code carries a policy ([`CloseCode::policy`]):
//!
//! | Close | Policy | The client |
//! | --- | --- | --- |
//! | 1001, 1012 (server restart, drain), 4005 (the node missed room messages) | at once | reconnects after a random delay in `[0, going_away_jitter]` (1 s) |
//! | 1006 (no close frame), 1009, 1011, 1013, 4000–4099 except 4004 and 4005, refused or failed connections, HTTP 408, 429, 5xx, no token from the token provider | backoff | waits a random delay in `[0, min(cap, base · 2^(n−1))]` for attempt `n` (full jitter), at least `Retry-After` |
//! | HTTP 401, 403 at the upgrade (credentials refused) | backoff, then never | backs off as above; stops with [`StopReason::CredentialsRefused`] once the same credentials were refused `max_refusals` (5) times in a row |
//! | 4004 (credentials expired) | refresh | emits [`Event::TokenExpired`]; with a token provider, reconnects with backoff and a new token from it; without one, waits for [`Client::set_token`] |
//! | 1000, 1002, 1003, 1007, 4400–4499; HTTP 404 and other 4xx at the upgrade | never | stops with [`Event::Stopped`] and the reason |
//!
//! The attempt counter starts again at 1 once a connection stayed up for
//! `stable_after` (10 s). The first attempt of [`ClientBuilder::connect`]
//! is not retried: any failure is its error.
//!
//! # Credentials
//!
//! Tokens expire, also while the client is disconnected. Give the builder a
//! [token provider](ClientBuilder::token_provider) (an async callback) and
//! the client asks it for a token before every connection attempt, and so
//! after the server closed with 4004: it never reconnects with a token that
//! expired meanwhile, as long as the provider hands out a fresh one.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_client::ConnectError> {
//! # async fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
//! use switchboard_client::ClientBuilder;
//!
//! let (client, events) = ClientBuilder::new("ws://localhost:3000/ws/chat")
//!     .token_provider(fetch_token)
//!     .max_refusals(3) // default 5
//!     .connect()
//!     .await?;
//! # let _ = (client, events);
//! # Ok(())
//! # }
//! ```
//!
//! - An upgrade refused with HTTP 401 or 403 is retried with backoff. Once
//!   the same credentials (the same token, or none) were refused
//!   `max_refusals` times in a row, the client stops with
//!   [`StopReason::CredentialsRefused`] (the HTTP status, the body, the
//!   count). A welcome, or a different token from the provider, starts the
//!   count again.
//! - A provider that fails (an error, no answer within the connect timeout,
//!   a token that cannot travel in a header) fails the attempt with
//!   [`ConnectError::Token`]: retried with backoff like a network error,
//!   counted as an attempt (the delays grow), never a reason to stop.
//! - A fixed [`token`](ClientBuilder::token) is a provider that always
//!   returns it, except after 4004: the client then waits for
//!   [`Client::set_token`] (the same token would be refused).
//! - The token travels as `Authorization: Bearer <token>` on the upgrade.
//!   While connected, renew it with [`Client::refresh`]; the provider is
//!   not called then.
//!
//! # Delivery guarantees
//!
//! - **Rooms are restored.** After a reconnect every joined room is joined
//!   again with `since` = the last offset delivered and the room's epoch. The
//!   server replays what was missed, in order, before `joined`; if its
//!   history cannot fill the gap the client emits [`Event::RecoveryFailed`]
//!   and goes on with live messages (after replaying a new epoch from its
//!   start, when the room's offsets restarted).
//! - **User messages are recovered.** Every upgrade carries `user_stream`:
//!   `new` the first time, then the offset and epoch of the last message
//!   to the user delivered. The server replays what was sent meanwhile
//!   right after its `welcome`; if its history cannot fill the gap (or the
//!   user's stream restarted) the client emits
//!   [`Event::UserRecoveryFailed`] first. Guests have no user stream.
//! - **At most once per offset.** A room message whose offset is not above
//!   the last one delivered for that room (in the same epoch) is dropped;
//!   so is a user message whose offset is not above the last one's.
//! - **Publishes** resolve on the server's `ack` (with the offset) or fail
//!   with its `error`, or after `ack_timeout`. Made while disconnected, they
//!   wait (in order, bounded by `publish_buffer`) and are sent after the
//!   next connection's joins. A publish in flight when the connection drops
//!   fails with [`PublishError::ConnectionLost`]: it may or may not have been
//!   published, and it is never sent twice.
//! - **Rpcs** ([`Client::rpc`]) ask the application behind the endpoint's
//!   rpc hook and resolve with its answer, or fail with the server's
//!   [`ServerError`] (`refused` with the application's message and
//!   [`reason`](ServerError::reason), `unavailable`, `unknown_type` where
//!   the endpoint has no rpc hook). They need a live connection
//!   ([`RequestError::NotConnected`] otherwise; they are never buffered).
//!   An rpc in flight when the connection drops fails with
//!   [`RequestError::ConnectionLost`], one unanswered in time with
//!   [`RequestError::Timeout`]: the application may or may not have carried
//!   it out, and it is never sent twice.
//! - **Events never block the connection**: see [Lagging](event#lagging).
//!
//! # Cancel safety
//!
//! Every [`Client`] method may be dropped midway. A dropped `publish` that
//! was still buffered is not sent; once sent it cannot be recalled. The
//! same holds for an `rpc` (the answer to a dropped one is discarded). A
//! dropped `join` still joins. [`Events::recv`] and [`RoomMessages::recv`]
//! lose nothing when dropped.
//!
//! # Features
//!
//! - `rustls`: `wss://` URLs, with TLS by rustls and the webpki roots. The
//!   application must install a rustls crypto provider (for example
//!   `rustls::crypto::ring::default_provider().install_default()`) before
//!   connecting.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod builder;
pub mod client;
mod connect;
mod credentials;
mod driver;
pub mod error;
pub mod event;
mod session;
mod state;

pub use builder::ClientBuilder;
pub use client::{Ack, Client, Joined, PublishOptions};
pub use error::{BuildError, ConnectError, PublishError, RequestError, ServerError};
pub use event::{
    ConnectionState, Event, Events, Lagged, Message, PresenceChange, PresenceEvent, RoomMessages,
    StopReason, Target,
};
pub use switchboard_protocol::server::PresenceMember;
pub use switchboard_protocol::{CloseCode, ErrorCode, ReconnectPolicy};
