//! Command-line flags, environment variables and the optional config file.
//!
//! Every setting has a flag (`--heartbeat-interval`), an environment
//! variable (`SWITCHBOARD_HEARTBEAT_INTERVAL`, except `PORT`) and a key in
//! the TOML file named by `--config` / `SWITCHBOARD_CONFIG`
//! (`heartbeat_interval = 20`). A flag beats the environment, which beats the
//! file, which beats the default. A file setting is applied as the flag it
//! names, so the three sources cannot disagree about names or parsing.
//!
//! Values are checked in two places. Whether a value can be read at all (a
//! number, not negative where the setting is a count or a duration, not NaN
//! or infinite) and the ranges of the settings that only the server has are
//! checked here while parsing; the ranges of the engine's settings are
//! checked by [`Config::validate`], for library users too. Either way the
//! error names the setting and where its value came from: a flag, an
//! environment variable or a key of the file.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use clap::builder::RangedU64ValueParser;
use clap::error::{ContextKind, ContextValue};
use switchboard::Config;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::config::ConfigError;
use switchboard::gate::caps::Caps;
use switchboard::gate::client_ip::IpNet;
use switchboard::gate::origin::OriginPolicy;
use switchboard::gate::rate::RateLimit;

/// Realtime WebSocket server: endpoints, rooms, user push and an HTTP publish
/// API on one port.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
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

    /// Key that HTTP API callers must send as `Authorization: Bearer <key>`.
    /// Without it, the API accepts only loopback callers.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

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
    #[arg(long, env = "SWITCHBOARD_REQUIRE_ROOM_CLAIMS")]
    pub require_room_claims: bool,

    /// Allowed browser origins, comma-separated (`https://app.example.com`,
    /// `https://*.example.com`). Default: same-origin only.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Refuse upgrades that carry no Origin header (non-browser clients).
    #[arg(long, env = "SWITCHBOARD_REQUIRE_ORIGIN")]
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
    /// (at least the largest message size).
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub outbound_queue_bytes: usize,

    /// Seconds a graceful shutdown waits for connections to close.
    #[arg(
        long,
        env = "SWITCHBOARD_SHUTDOWN_TIMEOUT",
        default_value = "10",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub shutdown_timeout: Duration,

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

    /// Where each setting's value came from (filled in by [`load`]).
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

/// A duration in seconds, fractions allowed (`0.5`). Negative, NaN and
/// infinite values, and ones too long for a duration, are refused: they must
/// not reach the engine as "no limit" or as an overflow.
fn seconds(value: &str) -> Result<Duration, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| "must be a number of seconds".to_string())?;
    if v.is_nan() || v.is_infinite() || v < 0.0 {
        return Err("must be a finite number of seconds, 0 or more".into());
    }
    Duration::try_from_secs_f64(v).map_err(|_| "is too long for a duration".into())
}

/// `--history-age`: more than 0 (`--history-count 0` keeps no history) and at
/// most [`MAX_HISTORY_AGE`].
fn history_age(value: &str) -> Result<Duration, String> {
    let d = seconds(value)?;
    if d.is_zero() || d > MAX_HISTORY_AGE {
        return Err(format!(
            "must be more than 0 and at most {} seconds (30 days); --history-count 0 keeps no history",
            MAX_HISTORY_AGE.as_secs()
        ));
    }
    Ok(d)
}

/// `--idempotency-window`: more than 0 and at most a day.
fn idempotency_window(value: &str) -> Result<Duration, String> {
    let d = seconds(value)?;
    if d.is_zero() || d > Duration::from_secs(24 * 60 * 60) {
        return Err("must be more than 0 and at most 86400 seconds (1 day)".into());
    }
    Ok(d)
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The command line; the flag as spelled there (`--upgrade-rate`).
    Flag(String),
    /// An environment variable; its name.
    Env(String),
    /// A key of the configuration file.
    File {
        /// The file as named by `--config` or `SWITCHBOARD_CONFIG`.
        path: String,
        /// The key (`upgrade_rate`).
        key: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "the flag {flag}"),
            Source::Env(var) => write!(f, "the environment variable {var}"),
            Source::File { path, key } => write!(f, "the key {key} in {path}"),
        }
    }
}

/// Where each setting that is not at its default came from, by argument id
/// (the flag name with underscores, as in the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// Where the setting `id` came from; `None` for its default.
    pub(crate) fn get(&self, id: &str) -> Option<&Source> {
        self.0.get(id)
    }
}

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

/// The broker chosen with `--broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrokerChoice {
    /// The built-in in-memory broker: one process.
    Memory,
    /// A Redis server shared by every node; the URL as given.
    Redis(String),
}

impl BrokerChoice {
    /// How the broker is named in logs: a Redis URL without its password.
    pub(crate) fn describe(&self) -> String {
        match self {
            BrokerChoice::Memory => "memory (this process only)".to_string(),
            BrokerChoice::Redis(url) => format!("redis at {}", redact_url(url)),
        }
    }
}

/// `url` with the password (and a user without one) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

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
        let from: Vec<String> = ids
            .iter()
            .filter_map(|id| self.sources.get(id))
            .map(ToString::to_string)
            .collect();
        if from.is_empty() {
            anyhow!(e)
        } else {
            anyhow!("{e} (set by {})", from.join(" and "))
        }
    }

    /// The engine configuration these settings describe.
    pub(crate) fn engine_config(&self) -> anyhow::Result<Config> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<IpNet>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--trusted-proxies")?;
        let mut b = Config::builder()
            .heartbeat_interval(self.heartbeat_interval)
            .heartbeat_timeout(self.heartbeat_timeout)
            .max_message_size(self.max_message_size)
            .outbound_queue_frames(self.outbound_queue)
            .outbound_queue_bytes(self.outbound_queue_bytes)
            .message_rate_strikes(self.message_rate_strikes)
            .max_room_name_len(self.max_room_name_len)
            .max_rooms_per_connection(self.max_rooms_per_connection)
            .shutdown_timeout(self.shutdown_timeout)
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
            "--broker must be `memory` or a Redis URL like redis://127.0.0.1:6379, not {:?}",
            redact_url(value)
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
        let key = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => bail!("set either a JWT secret or a JWT public key, not both"),
            (Some(secret), None) => JwtKey::Hs256(secret.as_bytes().to_vec()),
            (None, Some(path)) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read JWT public key {path}"))?;
                JwtKey::public_pem(&pem)?
            }
            (None, None) => return Ok(None),
        };
        let mut config = JwtConfig::new(key);
        config.issuer = self.jwt_issuer.clone();
        config.audience = self.jwt_audience.clone();
        config.leeway = Duration::from_secs(self.jwt_leeway);
        config.cookie_name = self.jwt_cookie.clone();
        config.require_room_claims = self.require_room_claims;
        Ok(Some(JwtAuthenticator::new(config)?))
    }
}

/// The settings of this process: its command line, its environment and the
/// file named by `--config` or `SWITCHBOARD_CONFIG`. A value that cannot be
/// parsed ends the process with clap's error, status 2, and a line saying
/// where the value came from.
pub(crate) fn load() -> anyhow::Result<Args> {
    let argv: Vec<String> = std::env::args().collect();
    let env = |name: &str| std::env::var(name).ok();
    let (argv, sources) = with_config_file(argv, env)?;
    Ok(parse(argv, sources).unwrap_or_else(|e| e.exit()))
}

/// Parses `argv` (the file's settings already added as flags); a parse
/// error says where the offending value came from.
pub(crate) fn parse(argv: Vec<String>, sources: Sources) -> Result<Args, clap::Error> {
    match Args::try_parse_from(argv) {
        Ok(mut args) => {
            args.sources = sources;
            Ok(args)
        }
        Err(mut e) => {
            let source = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => arg_id(arg).and_then(|id| sources.get(&id)),
                _ => None,
            };
            if let Some(source) = source {
                let mut tips = match e.get(ContextKind::Suggested) {
                    Some(ContextValue::StyledStrs(tips)) => tips.clone(),
                    _ => Vec::new(),
                };
                tips.push(format!("the value was set by {source}").into());
                e.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
            }
            Err(e)
        }
    }
}

/// The id of the argument clap names in an error (`--port <PORT>`).
fn arg_id(shown: &str) -> Option<String> {
    let long = shown.strip_prefix("--")?;
    let long = long.split([' ', '=']).next()?;
    let command = <Args as clap::CommandFactory>::command();
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().to_string())
}

/// The command line `argv`, extended with the settings of the file named by
/// `--config` or `SWITCHBOARD_CONFIG` that neither the command line nor the
/// environment sets, and where every setting that is not at its default came
/// from. `env` reads an environment variable.
pub(crate) fn with_config_file(
    argv: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(Vec<String>, Sources)> {
    let from_args = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1).cloned())
        .or_else(|| {
            argv.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let file = match from_args.or_else(|| env("SWITCHBOARD_CONFIG")) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {path}"))?;
            Some((path, text))
        }
    };
    let file = file
        .as_ref()
        .map(|(path, text)| (path.as_str(), text.as_str()));
    merge(argv, env, file)
}

/// [`with_config_file`] once the file (its path and text) is read.
fn merge(
    mut argv: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
    file: Option<(&str, &str)>,
) -> anyhow::Result<(Vec<String>, Sources)> {
    let command = <Args as clap::CommandFactory>::command();
    let mut sources = Sources::default();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long}");
        let on_command_line = argv
            .iter()
            .skip(1)
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let var = arg.get_env().and_then(|e| e.to_str());
        let source = if on_command_line {
            Source::Flag(flag)
        } else if let Some(var) = var.filter(|v| env(v).is_some()) {
            Source::Env(var.to_string())
        } else {
            continue;
        };
        sources.0.insert(arg.get_id().to_string(), source);
    }
    let Some((path, text)) = file else {
        return Ok((argv, sources));
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("invalid TOML in {path}"))?;
    let mut extra = Vec::new();
    for (key, value) in table {
        let Some(arg) = command.get_arguments().find(|a| a.get_id().as_str() == key) else {
            bail!("{path}: unknown setting {key:?}");
        };
        if key == "config" || sources.get(&key).is_some() {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(&key));
        let switch = !arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(true) if switch => extra.push(flag),
            toml::Value::Boolean(false) if switch => continue,
            toml::Value::Boolean(_) => {
                bail!("{path}: setting {key:?} takes a value, not a boolean")
            }
            toml::Value::String(s) => extra.push(format!("{flag}={s}")),
            toml::Value::Integer(i) => extra.push(format!("{flag}={i}")),
            toml::Value::Float(f) => extra.push(format!("{flag}={f}")),
            toml::Value::Array(items) => {
                let joined: Vec<String> = items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect();
                extra.push(format!("{flag}={}", joined.join(",")));
            }
            other => bail!("{path}: setting {key:?} cannot be {}", other.type_str()),
        }
        sources.0.insert(
            key.clone(),
            Source::File {
                path: path.to_string(),
                key,
            },
        );
    }
    argv.extend(extra);
    Ok((argv, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `extra` parsed as the server parses its command line.
    fn try_args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["switchboard".to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let (argv, sources) = merge(argv, no_env, None).unwrap();
        parse(argv, sources)
    }

    fn args(extra: &[&str]) -> Args {
        try_args(extra).expect("valid flags")
    }

    #[test]
    fn broker_flag_takes_memory_or_a_redis_url() {
        assert_eq!(args(&[]).broker_choice().unwrap(), BrokerChoice::Memory);
        assert_eq!(
            args(&["--broker", "redis://10.0.0.5:6379/2"])
                .broker_choice()
                .unwrap(),
            BrokerChoice::Redis("redis://10.0.0.5:6379/2".into())
        );
        let err = args(&["--broker", "nats://x:y@host"])
            .broker_choice()
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory"), "{err}");
        assert!(!err.contains(":y@"), "the password leaked: {err}");
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redact_url("redis://ana:s3cret@h:1/0"),
            "redis://ana:***@h:1/0"
        );
        assert_eq!(redact_url("redis://s3cret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://:p@w@h"), "redis://:***@h");
    }

    #[test]
    fn memory_bounds_and_idempotency_reach_the_brokers_and_guests_are_limited() {
        let a = args(&[]);
        let memory = a.memory_config().unwrap();
        assert_eq!(memory, switchboard::broker::memory::MemoryConfig::default());
        let redis = a.redis_config().unwrap();
        assert_eq!(redis, switchboard_redis::RedisConfig::default());
        let guests = a.engine_config().unwrap().guest_message_rate;
        assert_eq!(
            guests,
            Some(RateLimit {
                per_second: 20.0,
                burst: 50
            })
        );
        let a = args(&[
            "--history-bytes=4096",
            "--memory-budget=2097152",
            "--idempotency-window=60",
            "--guest-message-rate=0",
        ]);
        let memory = a.memory_config().unwrap();
        assert_eq!(
            (
                memory.history_bytes,
                memory.memory_budget,
                memory.idempotency_window
            ),
            (4096, 2 << 20, Duration::from_secs(60))
        );
        let redis = a.redis_config().unwrap();
        assert_eq!(
            (redis.history_bytes, redis.idempotency_window),
            (4096, Duration::from_secs(60))
        );
        assert_eq!(a.engine_config().unwrap().guest_message_rate, None);
    }

    #[test]
    fn history_flags_reach_both_brokers() {
        let a = args(&["--history-count", "10", "--history-age", "1200"]);
        let redis = a.redis_config().unwrap();
        assert_eq!(redis.history_count, 10);
        assert_eq!(redis.history_age, Duration::from_secs(1200));
        assert!(redis.validate().is_ok(), "room_ttl follows history_age");
        let memory = a.memory_config().unwrap();
        assert_eq!(memory.history_count, 10);
        assert_eq!(memory.history_age, Duration::from_secs(1200));
    }

    /// The parse error for `argv`, rendered as the user sees it.
    fn parse_error(extra: &[&str]) -> String {
        match try_args(extra) {
            Ok(a) => panic!("{extra:?} parsed: {a:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The engine configuration error for `extra`, which must parse.
    fn config_error(extra: &[&str]) -> String {
        match args(extra).engine_config() {
            Ok(c) => panic!("{extra:?} was accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_rate_that_is_not_positive_is_refused_not_switched_off() {
        for (flag, field) in [
            ("--upgrade-rate", "upgrade_rate"),
            ("--message-rate", "message_rate"),
        ] {
            for bad in ["-1", "-0.001", "nan", "NaN", "inf", "-inf", "infinity"] {
                let e = config_error(&[&format!("{flag}={bad}")]);
                assert!(
                    e.starts_with(&format!("invalid setting `{field}`: the rate must be")),
                    "{flag}={bad}: {e}"
                );
                assert!(e.ends_with(&format!("(set by the flag {flag})")), "{e}");
            }
            // 0 (and -0) is the documented way to switch the limit off.
            for off in ["0", "0.0", "-0"] {
                let c = args(&[&format!("{flag}={off}")]).engine_config().unwrap();
                let limit = if field == "upgrade_rate" {
                    c.upgrade_rate
                } else {
                    c.message_rate
                };
                assert_eq!(limit, None, "{flag}={off}");
            }
        }
        let c = args(&["--message-rate=0.5"]).engine_config().unwrap();
        assert_eq!(
            c.message_rate,
            Some(RateLimit {
                per_second: 0.5,
                burst: 20
            })
        );
    }

    #[test]
    fn a_burst_must_be_at_least_one() {
        for flag in ["--upgrade-burst", "--message-burst"] {
            for bad in ["0", "-1", "4294967296", "1.5"] {
                let e = parse_error(&[&format!("{flag}={bad}")]);
                assert!(e.contains(flag), "{flag}={bad}: {e}");
            }
        }
        // Also when the message rate is off: a burst of 0 never makes sense.
        parse_error(&["--message-rate=0", "--message-burst=0"]);
    }

    #[test]
    fn durations_must_be_finite_and_not_negative() {
        for flag in [
            "--heartbeat-interval",
            "--heartbeat-timeout",
            "--shutdown-timeout",
            "--history-age",
        ] {
            for bad in ["-1", "-0.5", "nan", "inf", "-inf", "1e20", "abc", ""] {
                let e = parse_error(&[&format!("{flag}={bad}")]);
                assert!(e.contains(flag), "{flag}={bad}: {e}");
            }
        }
        let e = parse_error(&["--heartbeat-interval=-1"]);
        assert!(
            e.contains("must be a finite number of seconds, 0 or more"),
            "{e}"
        );
        let a = args(&["--heartbeat-interval=0.5", "--shutdown-timeout=0"]);
        assert_eq!(a.heartbeat_interval, Duration::from_millis(500));
        let c = a.engine_config().unwrap();
        assert_eq!(c.shutdown_timeout, Duration::ZERO, "0: do not wait");
    }

    #[test]
    fn engine_durations_are_checked_by_the_engine_with_their_source() {
        for (flag, field) in [
            ("--heartbeat-interval", "heartbeat_interval"),
            ("--heartbeat-timeout", "heartbeat_timeout"),
        ] {
            for bad in ["0", "0.05", "86401", "1e12"] {
                let e = config_error(&[&format!("{flag}={bad}")]);
                assert!(
                    e.starts_with(&format!("invalid setting `{field}`")),
                    "{flag}={bad}: {e}"
                );
                assert!(e.ends_with(&format!("(set by the flag {flag})")), "{e}");
            }
        }
    }

    #[test]
    fn history_settings_have_ranges() {
        for bad in ["0", "2592001", "-1", "nan"] {
            let e = parse_error(&[&format!("--history-age={bad}")]);
            assert!(e.contains("--history-age"), "{bad}: {e}");
        }
        for bad in ["1000001", "-1", "1e3"] {
            let e = parse_error(&[&format!("--history-count={bad}")]);
            assert!(e.contains("--history-count"), "{bad}: {e}");
        }
        let a = args(&["--history-count=0", "--history-age=2592000"]);
        assert_eq!(a.memory_config().unwrap().history_count, 0);
        assert_eq!(
            a.redis_config().unwrap().history_age,
            Duration::from_secs(2_592_000)
        );
    }

    #[test]
    fn integers_out_of_their_range_are_refused() {
        for (flag, bad) in [
            ("--port", "-1"),
            ("--port", "65536"),
            ("--jwt-leeway", "-1"),
            ("--jwt-leeway", "86401"),
            ("--message-rate-strikes", "-1"),
            ("--message-rate-strikes", "4294967296"),
            ("--max-connections", "-1"),
            ("--max-connections-per-ip", "-1"),
            ("--max-connections-per-user", "1.5"),
            ("--max-room-name-len", "-1"),
            ("--max-rooms-per-connection", "-1"),
            ("--max-message-size", "-1"),
            ("--outbound-queue", "-1"),
            ("--outbound-queue-bytes", "nan"),
        ] {
            let e = parse_error(&[&format!("{flag}={bad}")]);
            assert!(e.contains(flag), "{flag}={bad}: {e}");
        }
        for (flag, bad, field) in [
            ("--max-message-size", "124", "max_message_size"),
            ("--max-message-size", "67108865", "max_message_size"),
            ("--outbound-queue", "0", "outbound_queue_frames"),
            ("--outbound-queue-bytes", "1000", "outbound_queue_bytes"),
            ("--max-room-name-len", "0", "max_room_name_len"),
            ("--max-room-name-len", "129", "max_room_name_len"),
            (
                "--max-rooms-per-connection",
                "0",
                "max_rooms_per_connection",
            ),
        ] {
            let e = config_error(&[&format!("{flag}={bad}")]);
            assert!(
                e.starts_with(&format!("invalid setting `{field}`")),
                "{flag}={bad}: {e}"
            );
            assert!(e.contains(&format!("the flag {flag}")), "{e}");
        }
        // Zero is meaningful for these.
        let a = args(&[
            "--jwt-leeway=0",
            "--message-rate-strikes=0",
            "--max-connections=0",
            "--port=0",
        ]);
        a.engine_config().unwrap();
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn from_file(extra: &[&str], toml: &str) -> Result<Args, clap::Error> {
        let mut argv = vec!["switchboard".to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let (argv, sources) = merge(argv, no_env, Some(("sb.toml", toml))).unwrap();
        parse(argv, sources)
    }

    #[test]
    fn errors_about_file_values_name_the_key_and_the_file() {
        let e = from_file(&[], "upgrade_rate = -1.0\n")
            .unwrap()
            .engine_config()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid setting `upgrade_rate`"), "{e}");
        assert!(
            e.ends_with("(set by the key upgrade_rate in sb.toml)"),
            "{e}"
        );
        // TOML has NaN and infinities; they are refused like the flags' ones.
        for toml in [
            "message_rate = nan",
            "message_rate = inf",
            "message_rate = -inf",
        ] {
            let e = from_file(&[], toml).unwrap().engine_config().unwrap_err();
            assert!(e.to_string().contains("message_rate in sb.toml"), "{e}");
        }
        for toml in [
            "heartbeat_interval = nan",
            "heartbeat_interval = -inf",
            "heartbeat_interval = -1",
            "heartbeat_interval = \"soon\"",
            "port = 70000",
            "upgrade_burst = 0",
            "jwt_leeway = -5",
            "history_age = 0",
        ] {
            let key = toml.split(' ').next().unwrap();
            let e = from_file(&[], toml).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "tip: the value was set by the key {key} in sb.toml"
                )),
                "{toml}: {e}"
            );
        }
        // A flag beats the file; then the flag is named.
        let e = from_file(&["--upgrade-rate=nan"], "upgrade_rate = 5")
            .unwrap()
            .engine_config()
            .unwrap_err();
        assert!(e.to_string().contains("the flag --upgrade-rate"), "{e}");
        let e = from_file(&["--port=-1"], "").unwrap_err().to_string();
        assert!(
            e.contains("tip: the value was set by the flag --port"),
            "{e}"
        );
    }

    #[test]
    fn a_boolean_is_no_value_for_a_numeric_key() {
        let argv = vec!["switchboard".to_string()];
        let e = merge(argv, no_env, Some(("sb.toml", "port = false")))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "sb.toml: setting \"port\" takes a value, not a boolean");
        let (argv, sources) = merge(
            vec!["switchboard".to_string()],
            no_env,
            Some((
                "sb.toml",
                "require_origin = false\nrequire_room_claims = true",
            )),
        )
        .unwrap();
        let a = parse(argv, sources).unwrap();
        assert!(!a.require_origin);
        assert!(a.require_room_claims);
    }

    #[test]
    fn sources_follow_the_order_of_precedence() {
        let env = |var: &str| (var == "SWITCHBOARD_MESSAGE_RATE").then(|| "x".to_string());
        let argv = vec!["switchboard".into(), "--upgrade-rate=3".into()];
        let toml = "upgrade_rate = 1\nmessage_rate = 1\nmessage_burst = 4\n";
        let (argv, sources) = merge(argv, env, Some(("sb.toml", toml))).unwrap();
        assert_eq!(
            sources.get("upgrade_rate"),
            Some(&Source::Flag("--upgrade-rate".into()))
        );
        assert_eq!(
            sources.get("message_rate"),
            Some(&Source::Env("SWITCHBOARD_MESSAGE_RATE".into()))
        );
        assert_eq!(
            sources.get("message_burst"),
            Some(&Source::File {
                path: "sb.toml".into(),
                key: "message_burst".into()
            })
        );
        assert_eq!(sources.get("heartbeat_interval"), None);
        assert_eq!(
            argv,
            ["switchboard", "--upgrade-rate=3", "--message-burst=4"]
        );
    }
}
