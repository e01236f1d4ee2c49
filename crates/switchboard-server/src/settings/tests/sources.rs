//! Where values come from: each source's errors, switches, precedence and
//! the settings derived from others.

use super::*;

#[test]
fn a_bad_environment_value_names_the_variable() {
    assert_eq!(
        load_error(&[], &[("SWITCHBOARD_HEARTBEAT_INTERVAL", "abc")], None),
        "invalid value 'abc' for the environment variable SWITCHBOARD_HEARTBEAT_INTERVAL: \
         must be a number of seconds"
    );
    assert_eq!(
        load_error(&[], &[("PORT", "70000")], None),
        "invalid value '70000' for the environment variable PORT: 70000 is not in 0..=65535"
    );
    assert_eq!(
        load_error(&[], &[("SWITCHBOARD_MAX_CONNECTIONS", "many")], None),
        "invalid value 'many' for the environment variable SWITCHBOARD_MAX_CONNECTIONS: \
         must be a whole number"
    );
    assert_eq!(
        load_error(&[], &[("SWITCHBOARD_HOOK_ON_FAILURE", "maybe")], None),
        "invalid value 'maybe' for the environment variable SWITCHBOARD_HOOK_ON_FAILURE: \
         must be one of: refuse, allow"
    );
    // Checked even when a flag overrides it: it would bite once the flag goes.
    assert_eq!(
        load_error(
            &["--upgrade-burst=5"],
            &[("SWITCHBOARD_UPGRADE_BURST", "0")],
            None
        ),
        "invalid value '0' for the environment variable SWITCHBOARD_UPGRADE_BURST: \
         0 is not in 1..=4294967295"
    );
    // A secret is never shown, nor a URL's password.
    assert_eq!(
        load_error(
            &[],
            &[("SWITCHBOARD_BROKER", "redis://u:pw@h"), ("PORT", "x")],
            None
        ),
        "invalid value 'x' for the environment variable PORT: must be a whole number"
    );
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    for on in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
        let a = load_with(&[], &[("SWITCHBOARD_REQUIRE_ORIGIN", on)], None).unwrap();
        assert!(a.require_origin, "{on}");
    }
    for off in ["0", "false", "False", "no", "NO", "off", "Off"] {
        let a = load_with(&[], &[("SWITCHBOARD_ONLINE_STATUS", off)], None).unwrap();
        assert!(!a.online_status, "{off}");
    }
    assert_eq!(
        load_error(&[], &[("SWITCHBOARD_REQUIRE_ROOM_CLAIMS", "maybe")], None),
        "invalid value 'maybe' for the environment variable SWITCHBOARD_REQUIRE_ROOM_CLAIMS: \
         must be true or false (also yes/no, on/off, 1/0)"
    );
    // The flag alone means true; with a value it can turn a switch off.
    assert!(args(&["--require-origin"]).require_origin);
    let a = load_with(
        &["--require-origin=no"],
        &[("SWITCHBOARD_REQUIRE_ORIGIN", "yes")],
        None,
    )
    .unwrap();
    assert!(!a.require_origin);
    let a = load_with(
        &[],
        &[("SWITCHBOARD_REQUIRE_ORIGIN", "off")],
        Some("require_origin = true"),
    )
    .unwrap();
    assert!(!a.require_origin, "the environment beats the file");
}

#[test]
fn a_bad_file_value_names_the_file_the_line_and_the_key() {
    let file = |toml: &str| load_error(&[], &[], Some(toml));
    assert_eq!(
        file("port = 3000\n\nheartbeat_timeout = inf\n"),
        "sb.toml:3: invalid value inf for heartbeat_timeout: \
         must be a finite number of seconds, 0 or more"
    );
    assert_eq!(
        file("heartbeat_interval = \"soon\""),
        "sb.toml:1: invalid value \"soon\" for heartbeat_interval: \
         must be a number of seconds, not a string"
    );
    assert_eq!(
        file("port = \"3000\""),
        "sb.toml:1: invalid value \"3000\" for port: must be a whole number, not a string"
    );
    assert_eq!(
        file("port = false"),
        "sb.toml:1: invalid value false for port: must be a whole number, not a boolean"
    );
    assert_eq!(
        file("upgrade_burst = 0"),
        "sb.toml:1: invalid value 0 for upgrade_burst: 0 is not in 1..=4294967295"
    );
    assert_eq!(
        file("require_origin = \"yes\""),
        "sb.toml:1: invalid value \"yes\" for require_origin: must be true or false, not a string"
    );
    assert_eq!(
        file("api_key = 1234567890123456"),
        "sb.toml:1: invalid value *** for api_key: must be a string, not an integer"
    );
    assert_eq!(
        file("history_age = 0"),
        "sb.toml:1: invalid value 0 for history_age: must be more than 0 and at most \
         2592000 seconds (30 days); --history-count 0 keeps no history"
    );
    assert_eq!(
        file("# settings\nprot = 3000\n"),
        "sb.toml:2: unknown setting \"prot\" (did you mean \"port\"?)"
    );
    assert_eq!(file("bogus = 1"), "sb.toml:1: unknown setting \"bogus\"");
    assert_eq!(
        file("config = \"other.toml\""),
        "sb.toml:1: config: a configuration file cannot name another"
    );
    assert_eq!(
        file("port = 1\nport = 2\n"),
        "sb.toml:2: invalid TOML: duplicate key"
    );
    // Checked even when the environment or a flag overrides it.
    assert_eq!(
        load_error(&["--port=0"], &[], Some("port = -1")),
        "sb.toml:1: invalid value -1 for port: -1 is not in 0..=65535"
    );
    let e = load_error(&["--config", "/nonexistent/sb.toml"], &[], None);
    assert!(
        e.starts_with("cannot read the configuration file /nonexistent/sb.toml: "),
        "{e}"
    );
}

#[test]
fn a_bad_flag_names_the_flag() {
    let e = load_error(&["--heartbeat-interval", "abc"], &[], None);
    assert_eq!(
        e,
        "error: invalid value 'abc' for '--heartbeat-interval <SECONDS>': \
         must be a number of seconds\n\nFor more information, try '--help'.\n"
    );
    // Not the environment's value: the command line is read alone first.
    let e = load_error(
        &["--heartbeat-interval=-1"],
        &[("SWITCHBOARD_HEARTBEAT_INTERVAL", "20")],
        None,
    );
    assert!(e.contains("'--heartbeat-interval <SECONDS>'"), "{e}");
}

#[test]
fn errors_about_engine_ranges_name_every_source() {
    let engine = |extra: &[&str], env: &[(&str, &str)], toml: Option<&str>| {
        load_with(extra, env, toml)
            .unwrap()
            .engine_config()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        engine(&[], &[], Some("\nupgrade_rate = -1.0\n")),
        "invalid setting `upgrade_rate`: the rate must be a positive, finite number per \
         second, not -1 (set by the key upgrade_rate at sb.toml:2)"
    );
    assert_eq!(
        engine(&[], &[("SWITCHBOARD_MESSAGE_RATE", "nan")], None),
        "invalid setting `message_rate`: the rate must be a positive, finite number per \
         second, not NaN (set by the environment variable SWITCHBOARD_MESSAGE_RATE)"
    );
    assert_eq!(
        engine(&["--upgrade-rate=nan"], &[], Some("upgrade_rate = 5")),
        "invalid setting `upgrade_rate`: the rate must be a positive, finite number per \
         second, not NaN (set by the flag --upgrade-rate)"
    );
    assert_eq!(
        engine(&["--trusted-proxies", "10.0.0.0/33"], &[], None),
        "invalid setting `trusted_proxies`: invalid prefix length in \"10.0.0.0/33\" \
         (set by the flag --trusted-proxies)"
    );
}

#[test]
fn the_outbound_byte_bound_follows_the_message_size_unless_set() {
    let a = args(&[]);
    assert_eq!(a.engine_config().unwrap().outbound_queue_bytes, 2 << 20);
    let a = args(&["--max-message-size", "3000000"]);
    assert_eq!(a.engine_config().unwrap().outbound_queue_bytes, 6_000_000);
    let a = args(&["--max-message-size", "1048576"]);
    assert_eq!(a.engine_config().unwrap().outbound_queue_bytes, 2 << 20);
    let a = args(&[
        "--max-message-size=3000000",
        "--outbound-queue-bytes=3000000",
    ]);
    assert_eq!(a.engine_config().unwrap().outbound_queue_bytes, 3_000_000);
    // Set both, inconsistently: the error names both.
    let e = load_with(
        &["--max-message-size=3000000"],
        &[("SWITCHBOARD_OUTBOUND_QUEUE_BYTES", "2097152")],
        None,
    )
    .unwrap()
    .engine_config()
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "invalid setting `outbound_queue_bytes`: must be at least max_message_size, not \
         2097152 (set by the environment variable SWITCHBOARD_OUTBOUND_QUEUE_BYTES and the \
         flag --max-message-size)"
    );
}

#[test]
fn sources_follow_the_order_of_precedence() {
    let toml = "upgrade_rate = 1\nmessage_rate = 1\nmessage_burst = 4\n";
    let a = load_with(
        &["--upgrade-rate=3"],
        &[("SWITCHBOARD_MESSAGE_RATE", "2")],
        Some(toml),
    )
    .unwrap();
    assert_eq!(
        a.sources.get("upgrade_rate"),
        Some(&Source::Flag("--upgrade-rate".into()))
    );
    assert_eq!(
        a.sources.get("message_rate"),
        Some(&Source::Env("SWITCHBOARD_MESSAGE_RATE".into()))
    );
    assert_eq!(
        a.sources.get("message_burst"),
        Some(&Source::File {
            path: "sb.toml".into(),
            key: "message_burst".into(),
            line: 3,
        })
    );
    assert_eq!(a.sources.get("heartbeat_interval"), None);
    assert_eq!(
        (a.upgrade_rate, a.message_rate, a.message_burst),
        (3.0, 2.0, 4)
    );
    let a = load_with(&[], &[], Some("allowed_origins = [\"https://a.example\"]")).unwrap();
    assert_eq!(a.allowed_origins, ["https://a.example"]);
    let a = load_with(&[], &[], Some("online_status = true")).unwrap();
    assert!(a.engine_config().unwrap().online_status);
}

#[test]
fn unknown_variables_are_warned_about_not_fatal() {
    let i = invocation(&[], &[("SWITCHBOARD_HEARTBEAT_INTERVALL", "20")], None).unwrap();
    assert_eq!(
        i.warnings,
        [
            "the environment variable SWITCHBOARD_HEARTBEAT_INTERVALL is not a setting and is \
          ignored (did you mean \"SWITCHBOARD_HEARTBEAT_INTERVAL\"?)"
        ]
    );
}

#[test]
fn check_config_takes_the_file_as_an_argument() {
    let e = load_error(&["check-config", "a.toml", "--config", "b.toml"], &[], None);
    assert_eq!(
        e,
        "name the configuration file either as FILE or with --config, not both"
    );
    let i = invocation(&["check-config", "--port", "0"], &[], Some("port = 5")).unwrap();
    assert!(matches!(i.action, Action::CheckConfig));
    assert_eq!(i.args.port, 0);
}
