use super::*;

#[test]
fn guests_are_held_to_both_message_limits() {
    let r = |per_second, burst| Some(RateLimit { per_second, burst });
    let mut c = Config::default();
    assert_eq!(c.message_limit(false), None);
    assert_eq!(c.message_limit(true), r(20.0, 50));
    c.message_rate = r(5.0, 100);
    assert_eq!(c.message_limit(false), r(5.0, 100));
    assert_eq!(c.message_limit(true), r(5.0, 50));
    c.guest_message_rate = None;
    assert_eq!(c.message_limit(true), r(5.0, 100));
    c.message_rate = None;
    assert_eq!(c.message_limit(true), None);
}

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

/// The field `validate` names for `config`, or `None` when it is valid.
fn refused(config: Config) -> Option<&'static str> {
    config.validate().err().map(|e| e.field)
}

fn rate(per_second: f64, burst: u32) -> Option<RateLimit> {
    Some(RateLimit { per_second, burst })
}

#[test]
fn every_rule_refuses_its_bad_values_and_names_the_field() {
    let d = Config::default;
    let ms = Duration::from_millis;
    let day = Duration::from_secs(24 * 60 * 60);
    let bad: Vec<(&str, Config)> = vec![
        (
            "max_message_size",
            Config {
                max_message_size: 0,
                ..d()
            },
        ),
        (
            "max_message_size",
            Config {
                max_message_size: 124,
                ..d()
            },
        ),
        (
            "max_message_size",
            Config {
                max_message_size: 64 * 1024 * 1024 + 1,
                outbound_queue_bytes: usize::MAX,
                ..d()
            },
        ),
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: Duration::ZERO,
                ..d()
            },
        ),
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: ms(99),
                ..d()
            },
        ),
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: day + ms(1),
                ..d()
            },
        ),
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: Duration::MAX,
                ..d()
            },
        ),
        (
            "heartbeat_timeout",
            Config {
                heartbeat_timeout: Duration::ZERO,
                ..d()
            },
        ),
        (
            "heartbeat_timeout",
            Config {
                heartbeat_timeout: ms(99),
                ..d()
            },
        ),
        (
            "heartbeat_timeout",
            Config {
                heartbeat_timeout: Duration::MAX,
                ..d()
            },
        ),
        (
            "outbound_queue_frames",
            Config {
                outbound_queue_frames: 0,
                ..d()
            },
        ),
        (
            "outbound_queue_bytes",
            Config {
                outbound_queue_bytes: 0,
                ..d()
            },
        ),
        (
            "outbound_queue_bytes",
            Config {
                outbound_queue_bytes: 64 * 1024 - 1,
                ..d()
            },
        ),
        (
            "max_room_name_len",
            Config {
                max_room_name_len: 0,
                ..d()
            },
        ),
        (
            "max_room_name_len",
            Config {
                max_room_name_len: 129,
                ..d()
            },
        ),
        (
            "max_rooms_per_connection",
            Config {
                max_rooms_per_connection: 0,
                ..d()
            },
        ),
        (
            "api_key",
            Config {
                api_key: Some("x".repeat(15)),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(0.0, 1),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(-1.0, 1),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(f64::NAN, 1),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(f64::INFINITY, 1),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(f64::NEG_INFINITY, 1),
                ..d()
            },
        ),
        (
            "upgrade_rate",
            Config {
                upgrade_rate: rate(5.0, 0),
                ..d()
            },
        ),
        (
            "message_rate",
            Config {
                message_rate: rate(-0.5, 20),
                ..d()
            },
        ),
        (
            "message_rate",
            Config {
                message_rate: rate(f64::NAN, 20),
                ..d()
            },
        ),
        (
            "message_rate",
            Config {
                message_rate: rate(f64::INFINITY, 20),
                ..d()
            },
        ),
        (
            "message_rate",
            Config {
                message_rate: rate(10.0, 0),
                ..d()
            },
        ),
    ];
    for (field, config) in bad {
        let shown = format!("{config:?}");
        assert_eq!(refused(config), Some(field), "{shown}");
    }
}

#[test]
fn the_edges_of_every_range_are_valid() {
    let d = Config::default;
    let day = Duration::from_secs(24 * 60 * 60);
    let good = [
        Config {
            max_message_size: 125,
            ..d()
        },
        Config {
            max_message_size: 64 * 1024 * 1024,
            outbound_queue_bytes: 64 * 1024 * 1024,
            ..d()
        },
        Config {
            heartbeat_interval: Duration::from_millis(100),
            ..d()
        },
        Config {
            heartbeat_interval: day,
            heartbeat_timeout: day,
            ..d()
        },
        Config {
            heartbeat_timeout: Duration::from_millis(100),
            ..d()
        },
        Config {
            outbound_queue_frames: 1,
            ..d()
        },
        Config {
            outbound_queue_bytes: 64 * 1024,
            ..d()
        },
        Config {
            max_room_name_len: 1,
            ..d()
        },
        Config {
            max_rooms_per_connection: 1,
            ..d()
        },
        Config {
            api_key: Some("x".repeat(16)),
            ..d()
        },
        Config {
            upgrade_rate: None,
            message_rate: None,
            ..d()
        },
        Config {
            upgrade_rate: rate(f64::MIN_POSITIVE, 1),
            message_rate: rate(1e9, u32::MAX),
            ..d()
        },
        // Zero is meaningful for these, and any value is allowed.
        Config {
            shutdown_timeout: Duration::ZERO,
            ..d()
        },
        Config {
            shutdown_timeout: Duration::MAX,
            ..d()
        },
        Config {
            message_rate_strikes: 0,
            ..d()
        },
        Config {
            caps: Caps {
                total: 0,
                per_ip: 0,
                per_user: 0,
            },
            ..d()
        },
    ];
    for config in good {
        let shown = format!("{config:?}");
        assert_eq!(config.validate(), Ok(()), "{shown}");
    }
}

#[test]
fn errors_say_the_rule_and_the_value_given() {
    let e = Config {
        upgrade_rate: rate(f64::NAN, 200),
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid setting `upgrade_rate`: the rate must be a positive, finite number per second, not NaN"
    );
    let e = Config {
        max_rooms_per_connection: 0,
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.reason, "must be at least 1, not 0");
    let e = Config {
        heartbeat_interval: Duration::from_millis(50),
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.reason, "must be from 100 ms to 1 day, not 0.05 s");
}
