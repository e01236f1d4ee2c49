//! Identity and credentials: everything of the engine's
//! [`auth`](switchboard_core::auth) module ([`Identity`], [`Permissions`],
//! the [`Authenticator`] trait), and [`jwt`], the JSON Web Token
//! authenticator.

pub mod jwt;

pub use switchboard_core::auth::*;
