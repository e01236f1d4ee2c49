//! The server's settings: one typed struct, [`Args`], read from
//! command-line flags, environment variables and a TOML file.
//!
//! Every setting has a flag (`--heartbeat-interval`), an environment
//! variable (`SWITCHBOARD_HEARTBEAT_INTERVAL`, except `PORT`) and a key in
//! the TOML file named by `--config` / `SWITCHBOARD_CONFIG`
//! (`heartbeat_interval = 20`). A flag beats the environment, which beats the
//! file, which beats the default. The clap definition below is the one
//! description of every setting: its name, type, default, parser and help,
//! which [`load()`] applies to all three sources and [`print`] writes out.
//!
//! Values are checked in two places. Whether a value can be read at all (a
//! number, not negative where the setting is a count or a duration, not NaN
//! or infinite) and the ranges of the settings that only the server has are
//! checked by the parsers here, for every source; the ranges of the engine's
//! settings are checked by [`Config::validate`], for library users too.
//! Either way the error names the setting and where its value came from: a
//! flag, an environment variable or a key and line of the file.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};

mod cli;
pub(crate) mod endpoints;
mod file;
mod hooks;
mod load;
mod logging;
mod parse;
pub(crate) mod print;
mod tls;

use clap::ArgAction;
use clap::builder::RangedU64ValueParser;
pub(crate) use cli::Action;
pub(crate) use hooks::HookArgs;
pub(crate) use load::{Env, Invocation, LoadError, Sources, load};
pub(crate) use logging::LogArgs;
pub(crate) use parse::{BrokerChoice, redact_url};
use parse::{boolean, history_age, idempotency_window, seconds};
use switchboard::Config;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::config::ConfigError;
use switchboard::gate::caps::Caps;
use switchboard::gate::client_ip::IpNet;
use switchboard::gate::origin::OriginPolicy;
use switchboard::gate::rate::RateLimit;
pub(crate) use tls::TlsArgs;

/// Every setting of the server. The flags, environment variables and file
/// keys are derived from this one definition ([`load()`]).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// TOML file with settings (keys are the flag names with underscores).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<String>,

    /// Address to listen on. Use 0.0.0.0 to accept connections from other
    /// machines.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// The TLS settings.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Key that HTTP API callers must send as `Authorization: Bearer <key>`.
    /// Without it, the API accepts only loopback callers.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Address (host:port) to serve `/metrics` on, to every caller there;
    /// the main port then no longer serves it. Without it, `/metrics` is on
    /// the main port behind the API's access check.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    /// HS256 secret for JSON Web Tokens. Setting it (or a public key)
    /// requires a valid token on every WebSocket upgrade.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// File with an RSA (RS256) or EC P-256 (ES256) public key in PEM.
    #[arg(long, env = "SWITCHBOARD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// Required token issuer (`iss`).
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required token audience (`aud`).
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds of clock skew allowed on `exp` and `nbf` (at most 86400).
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_LEEWAY",
        default_value_t = 5,
        value_name = "SECONDS",
        value_parser = RangedU64ValueParser::<u64>::new().range(0..=MAX_JWT_LEEWAY_SECS)
    )]
    pub jwt_leeway: u64,

    /// Cookie that may carry the token.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_COOKIE",
        default_value = "switchboard_token"
    )]
    pub jwt_cookie: String,

    /// Tokens without `rooms`/`read_rooms` claims grant no room (instead of
    /// every room).
    #[arg(
        long,
        env = "SWITCHBOARD_REQUIRE_ROOM_CLAIMS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = boolean
    )]
    pub require_room_claims: bool,

    /// Allowed browser origins, comma-separated (`https://app.example.com`,
    /// `https://*.example.com`). Default: same-origin only.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Refuse upgrades that carry no Origin header (non-browser clients).
    #[arg(
        long,
        env = "SWITCHBOARD_REQUIRE_ORIGIN",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = boolean
    )]
    pub require_origin: bool,

    /// Proxies (addresses or CIDR ranges, comma-separated) whose
    /// X-Forwarded-For is believed.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Upgrades per second per client IP: positive, or 0 to disable the
    /// limit.
    #[arg(long, env = "SWITCHBOARD_UPGRADE_RATE", default_value_t = 50.0)]
    pub upgrade_rate: f64,

    /// Burst of upgrades allowed per client IP (at least 1).
    #[arg(
        long,
        env = "SWITCHBOARD_UPGRADE_BURST",
        default_value_t = 200,
        value_parser = RangedU64ValueParser::<u32>::new().range(1..=u64::from(u32::MAX))
    )]
    pub upgrade_burst: u32,

    /// Messages per second per connection: positive, or 0 for no limit.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_RATE", default_value_t = 0.0)]
    pub message_rate: f64,

    /// Burst of messages allowed per connection (at least 1).
    #[arg(
        long,
        env = "SWITCHBOARD_MESSAGE_BURST",
        default_value_t = 20,
        value_parser = RangedU64ValueParser::<u32>::new().range(1..=u64::from(u32::MAX))
    )]
    pub message_burst: u32,

    /// Messages per second per guest connection (anonymous, when no tokens
    /// are configured): positive, or 0 for guests to follow --message-rate.
    #[arg(long, env = "SWITCHBOARD_GUEST_MESSAGE_RATE", default_value_t = 20.0)]
    pub guest_message_rate: f64,

    /// Burst of messages allowed per guest connection (at least 1).
    #[arg(
        long,
        env = "SWITCHBOARD_GUEST_MESSAGE_BURST",
        default_value_t = 50,
        value_parser = RangedU64ValueParser::<u32>::new().range(1..=u64::from(u32::MAX))
    )]
    pub guest_message_burst: u32,

    /// Messages dropped by the message rate limit within 10 s after which the
    /// connection is closed with 4002.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_RATE_STRIKES", default_value_t = 20)]
    pub message_rate_strikes: u32,

    /// Open connections on this node (0: no cap).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Open connections per client IP (0: no cap).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Open connections per user on this node (0: no cap).
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CONNECTIONS_PER_USER",
        default_value_t = 0
    )]
    pub max_connections_per_user: usize,

    /// Longest room name accepted, in bytes (at most 128).
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_NAME_LEN", default_value_t = 128)]
    pub max_room_name_len: usize,

    /// Rooms one connection may be in.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_ROOMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_rooms_per_connection: usize,

    /// Seconds between heartbeat pings (20 suits mobile-heavy apps).
    #[arg(
        long,
        env = "SWITCHBOARD_HEARTBEAT_INTERVAL",
        default_value = "30",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub heartbeat_interval: Duration,

    /// Seconds a ping may wait for its pong before the connection is dropped.
    #[arg(
        long,
        env = "SWITCHBOARD_HEARTBEAT_TIMEOUT",
        default_value = "10",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub heartbeat_timeout: Duration,

    /// Largest message accepted from a client, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024)]
    pub max_message_size: usize,

    /// Frames queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE", default_value_t = 512)]
    pub outbound_queue: usize,

    /// Bytes queued per connection before it is closed as a slow consumer
    /// (at least max_message_size). Default: 2097152 (2 MiB), or twice
    /// max_message_size when that is more.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,

    /// Bytes a connection's socket may hold written but not yet sent
    /// (TCP_NOTSENT_LOWAT, Linux); past it, frames wait in the outbound
    /// queue, whose bounds close a client that stopped reading. 0 leaves the
    /// system's setting (net.ipv4.tcp_notsent_lowat).
    #[arg(
        long,
        env = "SWITCHBOARD_TCP_NOTSENT_LOWAT",
        default_value_t = 128 * 1024,
        value_name = "BYTES"
    )]
    pub tcp_notsent_lowat: u32,

    /// Seconds a graceful shutdown waits for connections to close.
    #[arg(
        long,
        env = "SWITCHBOARD_SHUTDOWN_TIMEOUT",
        default_value = "10",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub shutdown_timeout: Duration,

    /// Seconds over which a graceful shutdown spreads its "going away"
    /// closes, so that the clients reconnect elsewhere over this window
    /// rather than all at once; 0 closes every connection at once. At most
    /// the shutdown timeout.
    #[arg(
        long,
        env = "SWITCHBOARD_SHUTDOWN_SPREAD",
        default_value = "0",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub shutdown_spread: Duration,

    /// Where messages travel between nodes: `memory` (this process only) or
    /// `redis://[user:password@]host:port[/db]` (every node on that Redis).
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER",
        default_value = "memory",
        hide_env_values = true
    )]
    pub broker: String,

    /// Messages each room keeps for recovery after a reconnect (0: none;
    /// at most 1000000).
    #[arg(
        long,
        env = "SWITCHBOARD_HISTORY_COUNT",
        default_value_t = 1000,
        value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_HISTORY_COUNT)
    )]
    pub history_count: usize,

    /// Seconds a room message stays recoverable (more than 0, at most 30
    /// days).
    #[arg(
        long,
        env = "SWITCHBOARD_HISTORY_AGE",
        default_value = "600",
        value_name = "SECONDS",
        value_parser = history_age
    )]
    pub history_age: Duration,

    /// Bytes one room's history may hold, either broker (at least 1024, at
    /// most 1 GiB).
    #[arg(
        long,
        env = "SWITCHBOARD_HISTORY_BYTES",
        default_value_t = 1 << 20,
        value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1 << 30)
    )]
    pub history_bytes: usize,

    /// Bytes all rooms' history and state may hold on this node, with the
    /// built-in broker; the oldest messages are evicted first (at least
    /// 1 MiB). With Redis, Redis's own maxmemory is the bound.
    #[arg(
        long,
        env = "SWITCHBOARD_MEMORY_BUDGET",
        default_value_t = 128 << 20,
        value_parser = RangedU64ValueParser::<usize>::new().range(1 << 20..)
    )]
    pub memory_budget: usize,

    /// Seconds an idempotency key of a publish is remembered (more than 0, at
    /// most 1 day).
    #[arg(
        long,
        env = "SWITCHBOARD_IDEMPOTENCY_WINDOW",
        default_value = "300",
        value_name = "SECONDS",
        value_parser = idempotency_window
    )]
    pub idempotency_window: Duration,

    /// Record every connection cluster-wide, so that
    /// `GET /api/users/{user}/presence` answers whether a user is online on
    /// any node (costs a Redis command per connect and disconnect).
    #[arg(
        long,
        env = "SWITCHBOARD_ONLINE_STATUS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = boolean
    )]
    pub online_status: bool,

    /// The hooks' settings.
    #[command(flatten)]
    pub hooks: HookArgs,

    /// The log settings.
    #[command(flatten)]
    pub log: LogArgs,

    /// Where each setting's value came from (filled in by [`load()`]).
    #[arg(skip)]
    pub sources: Sources,
}

/// The longest `--jwt-leeway`: one day. More would keep expired tokens
/// alive for days, and `exp` plus the leeway must not overflow.
const MAX_JWT_LEEWAY_SECS: u64 = 24 * 60 * 60;

/// The most messages a room may keep: more would hold too much memory, and
/// a Redis count must fit in a signed 64-bit integer.
const MAX_HISTORY_COUNT: u64 = 1_000_000;

/// The longest `--history-age`: 30 days.
const MAX_HISTORY_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The byte bound of an outbound queue when `outbound_queue_bytes` is not
/// set and `max_message_size` is at most half of it.
pub(crate) const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 2 * 1024 * 1024;

/// The arguments that set each [`Config`] field whose flag is named
/// differently, or that more than one flag sets. A field not listed is set by
/// the argument of its own name (`heartbeat_interval`).
const FIELD_ARGS: &[(&str, &[&str])] = &[
    ("outbound_queue_frames", &["outbound_queue"]),
    (
        "outbound_queue_bytes",
        &["outbound_queue_bytes", "max_message_size"],
    ),
    ("upgrade_rate", &["upgrade_rate", "upgrade_burst"]),
    ("message_rate", &["message_rate", "message_burst"]),
    (
        "guest_message_rate",
        &["guest_message_rate", "guest_message_burst"],
    ),
    ("origin.allowed", &["allowed_origins"]),
    ("caps.total", &["max_connections"]),
    ("caps.per_ip", &["max_connections_per_ip"]),
    ("caps.per_user", &["max_connections_per_user"]),
];

/// A rate limit from its flags: 0 switches it off. Any other value is kept,
/// so that [`Config::validate`] refuses a negative, NaN or infinite one
/// instead of it silently switching the limit off.
fn rate(per_second: f64, burst: u32) -> Option<RateLimit> {
    (per_second != 0.0).then_some(RateLimit { per_second, burst })
}

impl Args {
    /// `e` with where the values of the settings it is about came from.
    fn explain(&self, e: ConfigError) -> anyhow::Error {
        let field = e.field;
        let own = [field];
        let ids = FIELD_ARGS
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(&own[..], |(_, ids)| ids);
        anyhow!("{e}{}", self.set_by(ids))
    }

    /// ` (set by the flag --x and the key y at f.toml:3)`: where the
    /// settings `ids` came from, or nothing when all are at their defaults.
    fn set_by(&self, ids: &[&str]) -> String {
        let from: Vec<String> = ids
            .iter()
            .filter_map(|id| self.sources.get(id))
            .map(ToString::to_string)
            .collect();
        if from.is_empty() {
            String::new()
        } else {
            format!(" (set by {})", from.join(" and "))
        }
    }

    /// An error about the setting `id`, naming where its value came from.
    fn invalid(&self, id: &str, reason: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("invalid setting `{id}`: {reason}{}", self.set_by(&[id]))
    }

    /// `outbound_queue_bytes` as set, or derived from `max_message_size`:
    /// 2 MiB, or twice the largest message when that is more, so that a
    /// message of the largest size and its envelope always fit with room
    /// for another behind it.
    pub(crate) fn outbound_queue_bytes(&self) -> usize {
        self.outbound_queue_bytes.unwrap_or_else(|| {
            DEFAULT_OUTBOUND_QUEUE_BYTES.max(self.max_message_size.saturating_mul(2))
        })
    }

    /// The engine configuration these settings describe.
    pub(crate) fn engine_config(&self) -> anyhow::Result<Config> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid("trusted_proxies", e))?;
        let mut b = Config::builder()
            .heartbeat_interval(self.heartbeat_interval)
            .heartbeat_timeout(self.heartbeat_timeout)
            .max_message_size(self.max_message_size)
            .outbound_queue_frames(self.outbound_queue)
            .outbound_queue_bytes(self.outbound_queue_bytes())
            .tcp_notsent_lowat((self.tcp_notsent_lowat != 0).then_some(self.tcp_notsent_lowat))
            .message_rate_strikes(self.message_rate_strikes)
            .max_room_name_len(self.max_room_name_len)
            .max_rooms_per_connection(self.max_rooms_per_connection)
            .shutdown_timeout(self.shutdown_timeout)
            .shutdown_spread(self.shutdown_spread)
            .online_status(self.online_status)
            .origin(OriginPolicy {
                allowed: self
                    .allowed_origins
                    .iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                require_origin: self.require_origin,
            })
            .trusted_proxies(trusted_proxies)
            .upgrade_rate(rate(self.upgrade_rate, self.upgrade_burst))
            .message_rate(rate(self.message_rate, self.message_burst))
            .guest_message_rate(rate(self.guest_message_rate, self.guest_message_burst))
            .caps(Caps {
                total: self.max_connections,
                per_ip: self.max_connections_per_ip,
                per_user: self.max_connections_per_user,
            });
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            b = b.api_key(key);
        }
        b.build().map_err(|e| self.explain(e))
    }

    /// The broker `--broker` names.
    pub(crate) fn broker_choice(&self) -> anyhow::Result<BrokerChoice> {
        let value = self.broker.trim();
        if value.eq_ignore_ascii_case("memory") {
            return Ok(BrokerChoice::Memory);
        }
        let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if schemes.iter().any(|s| value.starts_with(s)) {
            return Ok(BrokerChoice::Redis(value.to_string()));
        }
        bail!(
            "--broker must be `memory` or a Redis URL like redis://127.0.0.1:6379, not {:?}{}",
            redact_url(value),
            self.set_by(&["broker"])
        )
    }

    /// The Redis broker's settings: the defaults with the history flags.
    pub(crate) fn redis_config(&self) -> anyhow::Result<switchboard_redis::RedisConfig> {
        let defaults = switchboard_redis::RedisConfig::default();
        let history_age = self.history_age;
        Ok(switchboard_redis::RedisConfig {
            history_count: self.history_count,
            history_age,
            history_bytes: self.history_bytes,
            idempotency_window: self.idempotency_window,
            // A room's sequence must outlive its history.
            room_ttl: defaults.room_ttl.max(history_age),
            ..defaults
        })
    }

    /// The in-memory broker's settings.
    pub(crate) fn memory_config(
        &self,
    ) -> anyhow::Result<switchboard::broker::memory::MemoryConfig> {
        Ok(switchboard::broker::memory::MemoryConfig {
            history_count: self.history_count,
            history_age: self.history_age,
            history_bytes: self.history_bytes,
            memory_budget: self.memory_budget,
            idempotency_window: self.idempotency_window,
        })
    }

    /// The JWT authenticator, when a secret or public key is configured.
    pub(crate) fn authenticator(&self) -> anyhow::Result<Option<JwtAuthenticator>> {
        let (id, key) = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => bail!(
                "set either a JWT secret or a JWT public key, not both{}",
                self.set_by(&["jwt_secret", "jwt_public_key"])
            ),
            (Some(secret), None) => ("jwt_secret", JwtKey::Hs256(secret.as_bytes().to_vec())),
            (None, Some(path)) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read JWT public key {path}"))
                    .map_err(|e| self.invalid("jwt_public_key", format!("{e:#}")))?;
                let key =
                    JwtKey::public_pem(&pem).map_err(|e| self.invalid("jwt_public_key", e))?;
                ("jwt_public_key", key)
            }
            (None, None) => return Ok(None),
        };
        let mut config = JwtConfig::new(key);
        config.issuer = self.jwt_issuer.clone();
        config.audience = self.jwt_audience.clone();
        config.leeway = Duration::from_secs(self.jwt_leeway);
        config.cookie_name = self.jwt_cookie.clone();
        config.require_room_claims = self.require_room_claims;
        let authenticator = JwtAuthenticator::new(config).map_err(|e| self.invalid(id, e))?;
        Ok(Some(authenticator))
    }
}

#[cfg(test)]
mod tests;
