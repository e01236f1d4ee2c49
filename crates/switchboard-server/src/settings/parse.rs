//! The value parsers of settings that clap has none for: switches, and
//! durations in seconds with their ranges. The same parser reads a flag, an
//! environment variable and a file value. And the one way a URL is shown:
//! without its password.

use std::time::Duration;

use super::MAX_HISTORY_AGE;

/// A switch's value: `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, in
/// any case. On the command line the flag alone means `true`.
pub(super) fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("must be true or false (also yes/no, on/off, 1/0)".into()),
    }
}

/// A duration in seconds, fractions allowed (`0.5`). Negative, NaN and
/// infinite values, and ones too long for a duration, are refused: they must
/// not reach the engine as "no limit" or as an overflow.
pub(crate) fn seconds(value: &str) -> Result<Duration, String> {
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
pub(super) fn history_age(value: &str) -> Result<Duration, String> {
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
pub(super) fn idempotency_window(value: &str) -> Result<Duration, String> {
    let d = seconds(value)?;
    if d.is_zero() || d > Duration::from_secs(24 * 60 * 60) {
        return Err("must be more than 0 and at most 86400 seconds (1 day)".into());
    }
    Ok(d)
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
