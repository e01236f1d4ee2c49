//! Engine configuration: a plain struct whose [`Default`] is the documented
//! default, and a [`ConfigBuilder`] that validates.
//!
//! Command-line and environment parsing live in the server binary, not here.

use std::time::Duration;

use crate::gate::caps::Caps;
use crate::gate::client_ip::IpNet;
use crate::gate::origin::OriginPolicy;
use crate::gate::rate::RateLimit;

/// Engine settings. Every field's default is stated on the field.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest WebSocket message accepted from a client, in bytes, after
    /// reassembly of fragments; also the largest HTTP API body. A larger one
    /// closes the connection with 1009 (WebSocket) or answers 413 (HTTP).
    /// Default: 64 KiB.
    pub max_message_size: usize,
    /// How often the server pings each connection. Default: 30 s. Use 20 s
    /// for mobile-heavy apps, where carrier NATs drop idle flows sooner.
    pub heartbeat_interval: Duration,
    /// How long a ping may wait for its pong before the connection is
    /// terminated with 4001. Default: 10 s.
    pub heartbeat_timeout: Duration,
    /// Most frames queued for one connection before it is closed as a slow
    /// consumer (4000). Default: 512.
    pub outbound_queue_frames: usize,
    /// Most bytes queued for one connection before it is closed as a slow
    /// consumer (4000). Default: 2 MiB.
    pub outbound_queue_bytes: usize,
    /// Bytes a connection's socket may hold written but not yet sent
    /// (Linux's `TCP_NOTSENT_LOWAT`), set by the server loop on every TCP
    /// connection it accepts. Past it, frames wait in the connection's
    /// outbound queue, where the bounds above see them: a client that stops
    /// reading is closed with 4000 after about this much plus the queue's
    /// bounds instead of after the megabytes a socket's send buffer can grow
    /// to, and the kernel memory a stalled client holds on the server stays
    /// small. Frames already sent and not yet acknowledged are not counted:
    /// throughput to a fast client does not depend on it. `None` leaves the
    /// system's setting (`net.ipv4.tcp_notsent_lowat`, unlimited unless an
    /// operator set it). Ignored on systems other than Linux and Android.
    /// Default: 128 KiB.
    pub tcp_notsent_lowat: Option<u32>,
    /// Longest room name accepted, in bytes (at most 128). Default: 128.
    pub max_room_name_len: usize,
    /// Most rooms one connection may be in at once. Default: 100.
    pub max_rooms_per_connection: usize,
    /// The key that HTTP API callers must present as `Authorization: Bearer
    /// <key>`. When `None`, the API accepts only loopback callers.
    /// Default: `None`.
    pub api_key: Option<String>,
    /// How long a graceful shutdown waits for connections to take their
    /// "going away" close before it stops waiting. Default: 10 s.
    pub shutdown_timeout: Duration,
    /// How long a graceful shutdown takes to tell its connections to go
    /// away: the 1001 closes are spread evenly over this window, so that
    /// the clients of a node that many connections reconnect elsewhere over
    /// the window instead of all in one second. `0` closes every connection
    /// at once. At most `shutdown_timeout`. Default: 0.
    pub shutdown_spread: Duration,
    /// The Origin policy for upgrades. Default: same-origin, and requests
    /// without `Origin` (non-browser clients) allowed.
    pub origin: OriginPolicy,
    /// Proxies whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Upgrades per client IP. Default: 50/s with bursts of 200; `None`
    /// disables the limit.
    pub upgrade_rate: Option<RateLimit>,
    /// Messages per connection. Default: `None` (no limit). A message over
    /// the limit is dropped with a `rate_limited` error frame.
    pub message_rate: Option<RateLimit>,
    /// Messages per connection of an anonymous guest (an identity the
    /// authenticator generated, such as every connection of the standalone
    /// server without tokens), on top of `message_rate`: a guest is held to
    /// both, so that nobody who did not prove who they are can flood the
    /// node by default. `None`: guests are held to `message_rate` only.
    /// Default: 20/s with bursts of 50.
    pub guest_message_rate: Option<RateLimit>,
    /// Messages dropped by `message_rate` within 10 s after which the
    /// connection is closed with 4002. Default: 20.
    pub message_rate_strikes: u32,
    /// Connection caps (total, per IP, per user); zero means none. Over a
    /// cap, upgrades get 429. Default: no caps.
    pub caps: Caps,
    /// While the broker is unreachable, deliver publishes to this node's own
    /// members (without an offset; the publisher is still told the publish
    /// failed, with `publish_failed`). Default: true. With false, nothing is
    /// delivered anywhere during an outage.
    pub local_delivery_during_outage: bool,
    /// Keep a cluster-wide record of which users are connected, so that
    /// [`Node::user_presence`](crate::Node::user_presence) (and the HTTP
    /// API's `GET /api/users/{user}/presence`) can answer whether a user is
    /// online on any node. Each connection is recorded in the presence
    /// backend when it opens and forgotten when it ends, under a key no
    /// room can take. Default: false: with a Redis broker it costs a Redis
    /// command at every connect and every disconnect, and one more key for
    /// the presence refresher to keep alive per connected user.
    pub online_status: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 * 1024,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            outbound_queue_frames: 512,
            outbound_queue_bytes: 2 * 1024 * 1024,
            tcp_notsent_lowat: Some(128 * 1024),
            max_room_name_len: switchboard_protocol::names::MAX_ROOM_LEN,
            max_rooms_per_connection: 100,
            api_key: None,
            shutdown_timeout: Duration::from_secs(10),
            shutdown_spread: Duration::ZERO,
            origin: OriginPolicy::default(),
            trusted_proxies: Vec::new(),
            upgrade_rate: Some(RateLimit {
                per_second: 50.0,
                burst: 200,
            }),
            message_rate: None,
            guest_message_rate: Some(RateLimit {
                per_second: 20.0,
                burst: 50,
            }),
            message_rate_strikes: 20,
            caps: Caps::default(),
            local_delivery_during_outage: true,
            online_status: false,
        }
    }
}

impl Config {
    /// The message rate limit of one connection: `message_rate`, and for a
    /// guest also `guest_message_rate`. Both at once are one token bucket
    /// with the lower rate and the smaller burst, which admits nothing that
    /// either would refuse.
    pub fn message_limit(&self, guest: bool) -> Option<RateLimit> {
        let guest = self.guest_message_rate.filter(|_| guest);
        match (self.message_rate, guest) {
            (Some(a), Some(b)) => Some(RateLimit {
                per_second: a.per_second.min(b.per_second),
                burst: a.burst.min(b.burst),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// A setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
pub struct ConfigError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Starts a builder from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Checks every setting against its range (the table in
    /// `docs/configuration.md`). The first setting out of range is named in
    /// the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use rules::*;
        within(
            "max_message_size",
            self.max_message_size,
            MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
            "must be from 125 bytes to 64 MiB",
        )?;
        duration_within(
            "heartbeat_interval",
            self.heartbeat_interval,
            MIN_HEARTBEAT..=MAX_HEARTBEAT,
            "must be from 100 ms to 1 day",
        )?;
        duration_within(
            "heartbeat_timeout",
            self.heartbeat_timeout,
            MIN_HEARTBEAT..=MAX_HEARTBEAT,
            "must be from 100 ms to 1 day",
        )?;
        within(
            "outbound_queue_frames",
            self.outbound_queue_frames,
            1..=usize::MAX,
            "must be at least 1",
        )?;
        within(
            "outbound_queue_bytes",
            self.outbound_queue_bytes,
            self.max_message_size..=usize::MAX,
            "must be at least max_message_size",
        )?;
        if let Some(lowat) = self.tcp_notsent_lowat {
            within(
                "tcp_notsent_lowat",
                lowat,
                1..=u32::MAX,
                "must be at least 1 byte (None leaves the system's setting)",
            )?;
        }
        within(
            "max_room_name_len",
            self.max_room_name_len,
            1..=switchboard_protocol::names::MAX_ROOM_LEN,
            "must be from 1 to 128",
        )?;
        within(
            "max_rooms_per_connection",
            self.max_rooms_per_connection,
            1..=usize::MAX,
            "must be at least 1",
        )?;
        if self.api_key.as_deref().is_some_and(|k| k.len() < 16) {
            return fail("api_key", "must be at least 16 characters");
        }
        rate("upgrade_rate", self.upgrade_rate.as_ref())?;
        rate("message_rate", self.message_rate.as_ref())?;
        rate("guest_message_rate", self.guest_message_rate.as_ref())?;
        for entry in &self.origin.allowed {
            let ok = entry.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty() && !rest.is_empty() && !rest.contains('/')
            });
            if !ok {
                return fail(
                    "origin.allowed",
                    "entries look like https://app.example.com or https://*.example.com",
                );
            }
        }
        if self.shutdown_spread > self.shutdown_timeout {
            return fail(
                "shutdown_spread",
                format!(
                    "must be at most shutdown_timeout ({} s), not {} s: the shutdown would stop waiting before the last connection is told to go",
                    self.shutdown_timeout.as_secs_f64(),
                    self.shutdown_spread.as_secs_f64()
                ),
            );
        }
        // Any value is valid for the rest: `shutdown_timeout` (0: do not
        // wait), `message_rate_strikes` (0: the first dropped message
        // closes), the `caps` (0: no cap), `local_delivery_during_outage`
        // and `online_status`.
        Ok(())
    }
}

/// The checks [`Config::validate`] is made of, one helper per kind of rule,
/// so that a new setting needs one line.
mod rules {
    use std::fmt::Display;
    use std::ops::RangeInclusive;
    use std::time::Duration;

    use super::ConfigError;
    use crate::gate::rate::RateLimit;

    pub(super) const MIN_MESSAGE_SIZE: usize = 125;
    pub(super) const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
    pub(super) const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
    /// Longer intervals are of no use, and the deadlines computed from them
    /// must fit in an `Instant`.
    pub(super) const MAX_HEARTBEAT: Duration = Duration::from_secs(24 * 60 * 60);

    /// An error naming `field`.
    pub(super) fn fail<T>(
        field: &'static str,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            field,
            reason: reason.into(),
        })
    }

    /// `value` within `range`; the error says `rule` and the value given.
    pub(super) fn within<T: PartialOrd + Display>(
        field: &'static str,
        value: T,
        range: RangeInclusive<T>,
        rule: &str,
    ) -> Result<(), ConfigError> {
        if range.contains(&value) {
            Ok(())
        } else {
            fail(field, format!("{rule}, not {value}"))
        }
    }

    /// A duration within `range`; the error says `rule` and the value given.
    pub(super) fn duration_within(
        field: &'static str,
        value: Duration,
        range: RangeInclusive<Duration>,
        rule: &str,
    ) -> Result<(), ConfigError> {
        if range.contains(&value) {
            Ok(())
        } else {
            fail(field, format!("{rule}, not {} s", value.as_secs_f64()))
        }
    }

    /// A token bucket, when set: a positive, finite rate (NaN, infinite, zero
    /// or negative would switch the limit off or make it refuse everything)
    /// and a burst of at least 1 (a burst of 0 refuses everything).
    pub(super) fn rate(field: &'static str, limit: Option<&RateLimit>) -> Result<(), ConfigError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        if !(limit.per_second > 0.0 && limit.per_second.is_finite()) {
            return fail(
                field,
                format!(
                    "the rate must be a positive, finite number per second, not {}",
                    limit.per_second
                ),
            );
        }
        if limit.burst == 0 {
            return fail(field, "the burst must be at least 1, not 0");
        }
        Ok(())
    }
}

/// Builds a validated [`Config`]. Unset fields keep their defaults.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl ConfigBuilder {
    setters! {
        /// Sets [`Config::max_message_size`].
        max_message_size: usize,
        /// Sets [`Config::heartbeat_interval`].
        heartbeat_interval: Duration,
        /// Sets [`Config::heartbeat_timeout`].
        heartbeat_timeout: Duration,
        /// Sets [`Config::outbound_queue_frames`].
        outbound_queue_frames: usize,
        /// Sets [`Config::outbound_queue_bytes`].
        outbound_queue_bytes: usize,
        /// Sets [`Config::tcp_notsent_lowat`].
        tcp_notsent_lowat: Option<u32>,
        /// Sets [`Config::max_room_name_len`].
        max_room_name_len: usize,
        /// Sets [`Config::max_rooms_per_connection`].
        max_rooms_per_connection: usize,
        /// Sets [`Config::shutdown_timeout`].
        shutdown_timeout: Duration,
        /// Sets [`Config::shutdown_spread`].
        shutdown_spread: Duration,
        /// Sets [`Config::origin`].
        origin: OriginPolicy,
        /// Sets [`Config::trusted_proxies`].
        trusted_proxies: Vec<IpNet>,
        /// Sets [`Config::upgrade_rate`].
        upgrade_rate: Option<RateLimit>,
        /// Sets [`Config::message_rate`].
        message_rate: Option<RateLimit>,
        /// Sets [`Config::guest_message_rate`].
        guest_message_rate: Option<RateLimit>,
        /// Sets [`Config::message_rate_strikes`].
        message_rate_strikes: u32,
        /// Sets [`Config::caps`].
        caps: Caps,
        /// Sets [`Config::local_delivery_during_outage`].
        local_delivery_during_outage: bool,
        /// Sets [`Config::online_status`].
        online_status: bool,
    }

    /// Sets [`Config::api_key`].
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests;
