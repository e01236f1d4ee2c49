//! The checks the gate runs before a WebSocket handshake completes, besides
//! credentials (see [`crate::auth`]):
//!
//! - [`origin`]: the Origin policy (cross-site WebSocket hijacking);
//! - [`client_ip`]: who the client is, with `X-Forwarded-For` honoured only
//!   from trusted proxies;
//! - [`rate`]: token buckets, for upgrades per IP and messages per
//!   connection;
//! - [`caps`]: connection caps in total, per IP and per user.

pub mod caps;
pub mod client_ip;
pub mod origin;
pub mod rate;
