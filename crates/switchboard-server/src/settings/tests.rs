use std::ffi::OsString;

use super::load::*;
use super::*;

mod sources;

/// The settings of `switchboard <extra>` with `env` and, when given, a
/// configuration file holding `toml` (named by `SWITCHBOARD_CONFIG`).
fn load_with(extra: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Result<Args, LoadError> {
    invocation(extra, env, toml).map(|i| i.args)
}

/// As [`load_with`], the whole invocation. In errors and sources the file
/// is called `sb.toml`.
fn invocation(
    extra: &[&str],
    env: &[(&str, &str)],
    toml: Option<&str>,
) -> Result<Invocation, LoadError> {
    let mut argv: Vec<OsString> = vec!["switchboard".into()];
    argv.extend(extra.iter().map(Into::into));
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = TempDir::new();
    let path = dir.0.join("sb.toml");
    let path = path.to_str().unwrap();
    if let Some(text) = toml {
        std::fs::write(path, text).unwrap();
        vars.push(("SWITCHBOARD_CONFIG".into(), path.into()));
    }
    let prefix = format!("{}/", dir.0.display());
    load(argv, &Env::from_pairs(vars))
        .map(|mut i| {
            i.args.sources = i.args.sources.renamed(&prefix);
            i
        })
        .map_err(|e| match e {
            LoadError::Invalid(e) => LoadError::Invalid(e.replace(&prefix, "")),
            e => e,
        })
}

/// The error of `switchboard <extra>` with `env` and `toml`, as printed.
fn load_error(extra: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> String {
    match invocation(extra, env, toml) {
        Ok(i) => panic!("{extra:?} {env:?} {toml:?} was accepted: {:?}", i.args),
        Err(e) => e.to_string(),
    }
}

/// A directory of its own for a test, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sb-settings-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `extra` parsed as the server parses its command line.
fn try_args(extra: &[&str]) -> Result<Args, LoadError> {
    load_with(extra, &[], None)
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

#[test]
fn the_unsent_socket_bound_comes_from_every_source_and_zero_leaves_the_system_setting() {
    let lowat = |extra: &[&str], env: &[(&str, &str)], toml: Option<&str>| {
        load_with(extra, env, toml)
            .unwrap()
            .engine_config()
            .unwrap()
            .tcp_notsent_lowat
    };
    assert_eq!(lowat(&[], &[], None), Some(128 * 1024));
    assert_eq!(
        lowat(&["--tcp-notsent-lowat", "16384"], &[], None),
        Some(16384)
    );
    assert_eq!(
        lowat(&[], &[("SWITCHBOARD_TCP_NOTSENT_LOWAT", "65536")], None),
        Some(65536)
    );
    assert_eq!(
        lowat(&[], &[], Some("tcp_notsent_lowat = 32768\n")),
        Some(32768)
    );
    assert_eq!(lowat(&["--tcp-notsent-lowat", "0"], &[], None), None);
    let err = load_error(&[], &[], Some("tcp_notsent_lowat = -1\n"));
    assert!(err.contains("tcp_notsent_lowat"), "{err}");
}
