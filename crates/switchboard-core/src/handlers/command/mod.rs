//! One module per client command, the way each frame of the protocol is
//! handled: the protocol crate parses it ([`ClientFrame`]), the command's
//! module applies it to the connection and queues the reply (the success
//! frame, or an `error` frame whose code comes from the failure's own
//! `code()`).
//!
//! - `join`: `join`, with `since` (recovery) and `presence: true`.
//! - `leave`: `leave`.
//! - `publish`: `publish`, with `idempotency_key`.
//! - `presence`: `presence` (who is in a room).
//! - `refresh`: `refresh` (new credentials, same user), shared by every
//!   endpoint that speaks the protocol.
//! - `rpc`: `rpc`, answered by the endpoint's hooks.
//!
//! [`ClientFrame`]: switchboard_protocol::ClientFrame

pub(crate) mod join;
pub(crate) mod leave;
pub(crate) mod presence;
pub(crate) mod publish;
pub(crate) mod refresh;
pub(crate) mod rpc;
