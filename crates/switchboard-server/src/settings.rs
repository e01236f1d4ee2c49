//! Command-line flags, environment variables and the optional config file.
//!
//! Every setting has a flag (`--heartbeat-interval`), an environment
//! variable (`SWITCHBOARD_HEARTBEAT_INTERVAL`, except `PORT`) and a key in
//! the TOML file named by `--config` / `SWITCHBOARD_CONFIG`
//! (`heartbeat_interval = 20`). A flag beats the environment, which beats the
//! file, which beats the default. A file setting is applied as the flag it
//! names, so the three sources cannot disagree about names or parsing.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use switchboard::Config;
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};
use switchboard::gate::caps::Caps;
use switchboard::gate::client_ip::IpNet;
use switchboard::gate::origin::OriginPolicy;
use switchboard::gate::rate::RateLimit;

/// Realtime WebSocket server: endpoints, rooms, user push and an HTTP publish
/// API on one port.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
pub struct Args {
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

    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "SWITCHBOARD_JWT_LEEWAY", default_value_t = 5)]
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

    /// Upgrades per second per client IP (0 disables the limit).
    #[arg(long, env = "SWITCHBOARD_UPGRADE_RATE", default_value_t = 50.0)]
    pub upgrade_rate: f64,

    /// Burst of upgrades allowed per client IP.
    #[arg(long, env = "SWITCHBOARD_UPGRADE_BURST", default_value_t = 200)]
    pub upgrade_burst: u32,

    /// Messages per second per connection (0: no limit).
    #[arg(long, env = "SWITCHBOARD_MESSAGE_RATE", default_value_t = 0.0)]
    pub message_rate: f64,

    /// Burst of messages allowed per connection.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST", default_value_t = 20)]
    pub message_burst: u32,

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
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL", default_value_t = 30.0)]
    pub heartbeat_interval: f64,

    /// Seconds a ping may wait for its pong before the connection is dropped.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TIMEOUT", default_value_t = 10.0)]
    pub heartbeat_timeout: f64,

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
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    pub shutdown_timeout: f64,

    /// Where messages travel between nodes: `memory` (this process only) or
    /// `redis://[user:password@]host:port[/db]` (every node on that Redis).
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER",
        default_value = "memory",
        hide_env_values = true
    )]
    pub broker: String,

    /// Messages each room keeps for recovery after a reconnect (0: none).
    #[arg(long, env = "SWITCHBOARD_HISTORY_COUNT", default_value_t = 1000)]
    pub history_count: usize,

    /// Seconds a room message stays recoverable.
    #[arg(long, env = "SWITCHBOARD_HISTORY_AGE", default_value_t = 600.0)]
    pub history_age: f64,
}

/// The broker chosen with `--broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// The built-in in-memory broker: one process.
    Memory,
    /// A Redis server shared by every node; the URL as given.
    Redis(String),
}

impl BrokerChoice {
    /// How the broker is named in logs: a Redis URL without its password.
    pub fn describe(&self) -> String {
        match self {
            BrokerChoice::Memory => "memory (this process only)".to_string(),
            BrokerChoice::Redis(url) => format!("redis at {}", redact_url(url)),
        }
    }
}

/// `url` with the password (and a user without one) replaced by `***`.
pub fn redact_url(url: &str) -> String {
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

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{name} must be a positive number"))
}

fn rate(per_second: f64, burst: u32) -> Option<RateLimit> {
    (per_second > 0.0).then_some(RateLimit { per_second, burst })
}

impl Args {
    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> anyhow::Result<Config> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<IpNet>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--trusted-proxies")?;
        let mut b = Config::builder()
            .heartbeat_interval(seconds("heartbeat-interval", self.heartbeat_interval)?)
            .heartbeat_timeout(seconds("heartbeat-timeout", self.heartbeat_timeout)?)
            .max_message_size(self.max_message_size)
            .outbound_queue_frames(self.outbound_queue)
            .outbound_queue_bytes(self.outbound_queue_bytes)
            .message_rate_strikes(self.message_rate_strikes)
            .max_room_name_len(self.max_room_name_len)
            .max_rooms_per_connection(self.max_rooms_per_connection)
            .shutdown_timeout(seconds("shutdown-timeout", self.shutdown_timeout)?)
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
            .caps(Caps {
                total: self.max_connections,
                per_ip: self.max_connections_per_ip,
                per_user: self.max_connections_per_user,
            });
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            b = b.api_key(key);
        }
        Ok(b.build()?)
    }

    /// The broker `--broker` names.
    pub fn broker_choice(&self) -> anyhow::Result<BrokerChoice> {
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

    /// How long room messages stay recoverable.
    pub fn history_age(&self) -> anyhow::Result<Duration> {
        seconds("history-age", self.history_age)
    }

    /// The Redis broker's settings: the defaults with the history flags.
    pub fn redis_config(&self) -> anyhow::Result<switchboard_redis::RedisConfig> {
        let defaults = switchboard_redis::RedisConfig::default();
        let history_age = self.history_age()?;
        Ok(switchboard_redis::RedisConfig {
            history_count: self.history_count,
            history_age,
            // A room's sequence must outlive its history.
            room_ttl: defaults.room_ttl.max(history_age),
            ..defaults
        })
    }

    /// The in-memory broker's settings.
    pub fn memory_config(&self) -> anyhow::Result<switchboard::broker::memory::MemoryConfig> {
        Ok(switchboard::broker::memory::MemoryConfig {
            history_count: self.history_count,
            history_age: self.history_age()?,
        })
    }

    /// The JWT authenticator, when a secret or public key is configured.
    pub fn authenticator(&self) -> anyhow::Result<Option<JwtAuthenticator>> {
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

/// The command line, extended with the settings of the file named by
/// `--config` or `SWITCHBOARD_CONFIG` that neither the command line nor the
/// environment sets.
pub fn args_with_config_file() -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = std::env::args().collect();
    let from_args = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let Some(path) = from_args.or_else(|| std::env::var("SWITCHBOARD_CONFIG").ok()) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("invalid TOML in {path}"))?;
    let command = <Args as clap::CommandFactory>::command();
    let mut extra = Vec::new();
    for (key, value) in table {
        let Some(arg) = command.get_arguments().find(|a| a.get_id().as_str() == key) else {
            bail!("{path}: unknown setting {key:?}");
        };
        let flag = format!("--{}", arg.get_long().unwrap_or(&key));
        let on_command_line = args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let in_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if key == "config" || on_command_line || in_env {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => extra.push(flag),
            toml::Value::Boolean(false) => {}
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
    }
    args.extend(extra);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["switchboard"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("valid flags")
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
    fn history_flags_reach_both_brokers() {
        let a = args(&["--history-count", "10", "--history-age", "1200"]);
        let redis = a.redis_config().unwrap();
        assert_eq!(redis.history_count, 10);
        assert_eq!(redis.history_age, Duration::from_secs(1200));
        assert!(redis.validate().is_ok(), "room_ttl follows history_age");
        let memory = a.memory_config().unwrap();
        assert_eq!(memory.history_count, 10);
        assert_eq!(memory.history_age, Duration::from_secs(1200));
        assert!(args(&["--history-age=-1"]).redis_config().is_err());
    }
}
