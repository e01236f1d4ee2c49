//! Switchboard's wire protocol, version 1: the JSON frames that travel over a
//! WebSocket, the close codes and their reconnect policy, and the naming rules
//! for rooms and users.
//!
//! This crate has no I/O. The server engine and the clients both depend on it,
//! so the two sides cannot drift apart. `docs/protocol.md` describes the same
//! protocol for people writing their own clients.
//!
//! # Layout
//!
//! - [`client`]: frames a client sends (`join`, `leave`, `publish`), with a
//!   parser that names exactly what is wrong with a bad frame.
//! - [`server`]: frames the server sends (`welcome`, `joined`, `left`,
//!   `message`, `ack`, `error`), serializable without copying payloads.
//! - [`close`]: close codes and what each asks a client to do next.
//! - [`error`]: the stable machine-readable `code` strings of error frames.
//! - [`names`]: validation of room names and user ids.
//! - [`depth`]: the nesting limit of JSON texts a client sends.

#![forbid(unsafe_code)]

pub mod client;
pub mod close;
pub mod depth;
pub mod error;
pub mod names;
pub mod server;

pub use client::{ClientFrame, FrameError};
pub use close::{CloseCode, ReconnectPolicy};
pub use error::ErrorCode;
pub use names::{NameError, validate_idempotency_key, validate_room, validate_user};

/// The WebSocket subprotocol name of this protocol version. A client may offer
/// it in `Sec-WebSocket-Protocol`; the server then selects it.
pub const SUBPROTOCOL: &str = "switchboard.v1";
