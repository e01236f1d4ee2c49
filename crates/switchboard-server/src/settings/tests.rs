use super::load::*;
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

#[test]
fn online_status_is_off_unless_a_flag_or_the_file_turns_it_on() {
    assert!(!args(&[]).engine_config().unwrap().online_status);
    let on = args(&["--online-status"]).engine_config().unwrap();
    assert!(on.online_status);
    let (argv, sources) = merge(
        vec!["switchboard".to_string()],
        no_env,
        Some(("sb.toml", "online_status = true")),
    )
    .unwrap();
    let a = parse(argv, sources).unwrap();
    assert!(a.engine_config().unwrap().online_status);
    assert_eq!(
        a.sources.get("online_status"),
        Some(&Source::File {
            path: "sb.toml".into(),
            key: "online_status".into()
        })
    );
}
