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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 * 1024,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            outbound_queue_frames: 512,
            outbound_queue_bytes: 2 * 1024 * 1024,
            max_room_name_len: switchboard_protocol::names::MAX_ROOM_LEN,
            max_rooms_per_connection: 100,
            api_key: None,
            shutdown_timeout: Duration::from_secs(10),
            origin: OriginPolicy::default(),
            trusted_proxies: Vec::new(),
            upgrade_rate: Some(RateLimit {
                per_second: 50.0,
                burst: 200,
            }),
            message_rate: None,
            message_rate_strikes: 20,
            caps: Caps::default(),
            local_delivery_during_outage: true,
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

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if !(125..=64 * 1024 * 1024).contains(&self.max_message_size) {
            return err("max_message_size", "must be from 125 bytes to 64 MiB");
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return err("heartbeat_interval", "must be at least 100 ms");
        }
        if self.heartbeat_timeout < Duration::from_millis(100) {
            return err("heartbeat_timeout", "must be at least 100 ms");
        }
        if self.outbound_queue_frames == 0 {
            return err("outbound_queue_frames", "must be at least 1");
        }
        if self.outbound_queue_bytes < self.max_message_size {
            return err("outbound_queue_bytes", "must be at least max_message_size");
        }
        if !(1..=switchboard_protocol::names::MAX_ROOM_LEN).contains(&self.max_room_name_len) {
            return err("max_room_name_len", "must be from 1 to 128");
        }
        if self.max_rooms_per_connection == 0 {
            return err("max_rooms_per_connection", "must be at least 1");
        }
        if self.api_key.as_deref().is_some_and(|k| k.len() < 16) {
            return err("api_key", "must be at least 16 characters");
        }
        for (field, rate) in [
            ("upgrade_rate", &self.upgrade_rate),
            ("message_rate", &self.message_rate),
        ] {
            if let Some(r) = rate
                && (!(r.per_second > 0.0 && r.per_second.is_finite()) || r.burst == 0)
            {
                return err(field, "needs a positive rate and a burst of at least 1");
            }
        }
        for entry in &self.origin.allowed {
            let ok = entry.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty() && !rest.is_empty() && !rest.contains('/')
            });
            if !ok {
                return err(
                    "origin.allowed",
                    "entries look like https://app.example.com or https://*.example.com",
                );
            }
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
        /// Sets [`Config::max_room_name_len`].
        max_room_name_len: usize,
        /// Sets [`Config::max_rooms_per_connection`].
        max_rooms_per_connection: usize,
        /// Sets [`Config::shutdown_timeout`].
        shutdown_timeout: Duration,
        /// Sets [`Config::origin`].
        origin: OriginPolicy,
        /// Sets [`Config::trusted_proxies`].
        trusted_proxies: Vec<IpNet>,
        /// Sets [`Config::upgrade_rate`].
        upgrade_rate: Option<RateLimit>,
        /// Sets [`Config::message_rate`].
        message_rate: Option<RateLimit>,
        /// Sets [`Config::message_rate_strikes`].
        message_rate_strikes: u32,
        /// Sets [`Config::caps`].
        caps: Caps,
        /// Sets [`Config::local_delivery_during_outage`].
        local_delivery_during_outage: bool,
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
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn builder_refuses_bad_values() {
        let e = Config::builder().max_message_size(10).build().unwrap_err();
        assert_eq!(e.field, "max_message_size");
        let e = Config::builder()
            .outbound_queue_frames(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "outbound_queue_frames");
        let e = Config::builder().api_key("short").build().unwrap_err();
        assert_eq!(e.field, "api_key");
        let c = Config::builder()
            .heartbeat_interval(Duration::from_secs(20))
            .build()
            .unwrap();
        assert_eq!(c.heartbeat_interval, Duration::from_secs(20));
    }
}
