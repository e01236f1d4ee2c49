//! The `switchboard` binary as users run it: flags, environment, logs,
//! graceful shutdown on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_testkit::ws::{self, Message};

struct Server {
    child: Child,
    port: u16,
    log: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and reads its log until it says where it listens.
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchboard");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut log = Vec::new();
    let port = loop {
        let line = lines
            .next()
            .expect("log line before exit")
            .expect("utf-8 log");
        log.push(line.clone());
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().expect("port in log line");
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, port, log }
}

fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(server: &mut Server) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not exit within 10 s");
}

#[tokio::test]
async fn port_flag_and_startup_warnings() {
    let server = start(&["--port", "0"], &[]);
    let log = server.log.join("\n");
    assert!(
        log.contains("/ws/echo, /ws/chat, /ws/notifications"),
        "{log}"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{}/health", server.port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().contains("\"status\":\"ok\""));
}

#[tokio::test]
async fn port_comes_from_the_environment_and_the_flag_wins() {
    // PORT=0 picks a free port; the log names it.
    let server = start(&[], &[("PORT", "0")]);
    assert!(server.port > 0);
    let resp = reqwest::get(format!("http://127.0.0.1:{}/", server.port))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // An explicit --port overrides PORT (PORT names a port we never bind).
    let server = start(&["--port", "0"], &[("PORT", "1")]);
    assert_ne!(server.port, 1);
}

#[tokio::test]
async fn warns_when_open_and_when_the_api_is_loopback_only() {
    let server = start(&["--port", "0"], &[]);
    let log = server.log.join("\n");
    assert!(log.contains("no credentials configured"), "{log}");
    assert!(log.contains("accepts only loopback callers"), "{log}");
    let server = start(
        &["--port", "0"],
        &[("SWITCHBOARD_API_KEY", "a-long-enough-api-key-123")],
    );
    assert!(!server.log.join("\n").contains("only loopback"));
}

#[tokio::test]
async fn invalid_settings_fail_at_startup_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--port", "0", "--api-key", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api_key"), "{err}");
}

async fn going_away_on(sig: &str) {
    let mut server = start(&["--port", "0"], &[]);
    let url = format!("ws://127.0.0.1:{}/ws/chat", server.port);
    // Reads the welcome.
    let mut ws = ws::Client::connect(url.as_str()).await;
    signal(&server, sig);
    // Reads on until the server ends the connection, after its close frame.
    let (close, _) = ws.expect_close().await;
    assert_eq!(close, 1001);
    assert!(wait_exit(&mut server).success());
}

#[tokio::test]
async fn sigterm_closes_connections_with_going_away_and_exits_cleanly() {
    going_away_on("-TERM").await;
}

#[tokio::test]
async fn sigint_does_the_same() {
    going_away_on("-INT").await;
}

/// The handlers are in place by the time the server says it is listening:
/// a signal sent at once still ends it cleanly, not by the signal's default
/// action (which would drop every connection without a close frame).
#[test]
fn a_signal_right_after_startup_is_handled() {
    for sig in ["-INT", "-TERM", "-INT", "-TERM", "-INT", "-TERM"] {
        let mut server = start(&["--port", "0"], &[]);
        signal(&server, sig);
        let status = wait_exit(&mut server);
        assert!(status.success(), "{sig}: {status:?}");
    }
}

#[tokio::test]
async fn a_jwt_secret_makes_tokens_mandatory() {
    let server = start(
        &["--port", "0"],
        &[(
            "SWITCHBOARD_JWT_SECRET",
            "binary-test-secret-32-bytes-long!",
        )],
    );
    assert!(!server.log.join("\n").contains("no credentials configured"));
    let url = format!("ws://127.0.0.1:{}/ws/chat", server.port);
    assert_eq!(ws::expect_refused(url.as_str()).await.0, 401);
}

#[tokio::test]
async fn a_config_file_sets_what_flags_and_environment_do_not() {
    let dir = std::env::temp_dir().join(format!("switchboard-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchboard.toml");
    std::fs::write(
        &file,
        "port = 0\nallowed_origins = [\"https://*.example.com\"]\nheartbeat_interval = 20\n",
    )
    .unwrap();
    let server = start(&["--config", file.to_str().unwrap()], &[]);
    let url = format!("ws://127.0.0.1:{}/ws/chat", server.port);
    let evil = ws::request(&url, &[("origin", "https://evil.com")]);
    assert_eq!(ws::expect_refused(evil).await.0, 403);
    let allowed = ws::request(&url, &[("origin", "https://app.example.com")]);
    let mut ws = ws::Client::open(allowed).await;
    let Message::Text(welcome) = ws.next_message().await else {
        panic!("welcome")
    };
    assert!(welcome.contains("\"heartbeat_ms\":20000"), "{welcome}");
    // An unknown key is an error, not a silent no-op.
    std::fs::write(&file, "prot = 3000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting \"prot\""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where a bad value is given.
#[derive(Clone, Copy, Debug)]
enum Given {
    Flag(&'static str),
    Env(&'static str, &'static str),
    File(&'static str),
}

/// Runs the binary with `from` and returns its exit status and stderr; it
/// must exit on its own (starting up means the value was accepted: `Err`).
fn run_refused(
    from: Given,
    dir: &std::path::Path,
) -> Result<(std::process::ExitStatus, String), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    let about_the_port = match from {
        Given::Flag(f) => f.starts_with("--port"),
        Given::Env(var, _) => var == "PORT",
        Given::File(line) => line.starts_with("port "),
    };
    if !about_the_port {
        // Should the value be accepted, do not take a fixed port.
        cmd.args(["--port", "0"]);
    }
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (var, _) in std::env::vars() {
        if var.starts_with("SWITCHBOARD_") || var == "PORT" {
            cmd.env_remove(var);
        }
    }
    match from {
        Given::Flag(flag) => {
            cmd.arg(flag);
        }
        Given::Env(var, value) => {
            cmd.env(var, value);
        }
        Given::File(line) => {
            let file = dir.join("bad.toml");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            cmd.env("SWITCHBOARD_CONFIG", &file);
        }
    }
    let mut child = cmd.spawn().expect("spawn switchboard");
    let Some(status) = (0..200).find_map(|_| {
        let status = child.try_wait().unwrap();
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        status
    }) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{from:?}: the server started; the value was accepted"
        ));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Ok((status, stderr))
}

/// Every numeric setting, given a value out of its range as a flag, an
/// environment variable or a file key: the server does not start (status
/// 2), and says which setting is wrong and where the value came from.
#[test]
fn bad_numeric_values_are_refused_at_startup_naming_setting_and_source() {
    use Given::*;
    let dir = std::env::temp_dir().join(format!("switchboard-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = "the flag";
    let env = "the environment variable";
    let key = "the key";
    // (where, what the error names, how it names the source)
    let cases: &[(Given, &str, &str)] = &[
        // Rate limits: only 0 switches them off.
        (
            Flag("--upgrade-rate=-1"),
            "`upgrade_rate`",
            "--upgrade-rate",
        ),
        (
            Flag("--upgrade-rate=-inf"),
            "`upgrade_rate`",
            "--upgrade-rate",
        ),
        (
            Flag("--upgrade-rate=nan"),
            "`upgrade_rate`",
            "--upgrade-rate",
        ),
        (
            Flag("--message-rate=nan"),
            "`message_rate`",
            "--message-rate",
        ),
        (
            Flag("--message-rate=inf"),
            "`message_rate`",
            "--message-rate",
        ),
        (
            Flag("--message-rate=-0.5"),
            "`message_rate`",
            "--message-rate",
        ),
        (
            Env("SWITCHBOARD_UPGRADE_RATE", "-1"),
            "`upgrade_rate`",
            "SWITCHBOARD_UPGRADE_RATE",
        ),
        (
            Env("SWITCHBOARD_MESSAGE_RATE", "NaN"),
            "`message_rate`",
            "SWITCHBOARD_MESSAGE_RATE",
        ),
        (
            File("upgrade_rate = -1"),
            "`upgrade_rate`",
            "upgrade_rate in",
        ),
        (
            File("message_rate = nan"),
            "`message_rate`",
            "message_rate in",
        ),
        (
            File("message_rate = inf"),
            "`message_rate`",
            "message_rate in",
        ),
        // Bursts: at least 1.
        (
            Flag("--upgrade-burst=0"),
            "--upgrade-burst",
            "--upgrade-burst",
        ),
        (
            Flag("--message-burst=-1"),
            "--message-burst",
            "--message-burst",
        ),
        (
            Env("SWITCHBOARD_MESSAGE_BURST", "0"),
            "--message-burst",
            "SWITCHBOARD_MESSAGE_BURST",
        ),
        (
            File("upgrade_burst = 0"),
            "--upgrade-burst",
            "upgrade_burst in",
        ),
        // Durations: finite, not negative; heartbeats from 100 ms to 1 day.
        (
            Flag("--heartbeat-interval=-1"),
            "--heartbeat-interval",
            "--heartbeat-interval",
        ),
        (
            Flag("--heartbeat-interval=0"),
            "`heartbeat_interval`",
            "--heartbeat-interval",
        ),
        (
            Flag("--heartbeat-timeout=nan"),
            "--heartbeat-timeout",
            "--heartbeat-timeout",
        ),
        (
            Flag("--heartbeat-timeout=86401"),
            "`heartbeat_timeout`",
            "--heartbeat-timeout",
        ),
        (
            Flag("--shutdown-timeout=-1"),
            "--shutdown-timeout",
            "--shutdown-timeout",
        ),
        (
            Flag("--shutdown-timeout=inf"),
            "--shutdown-timeout",
            "--shutdown-timeout",
        ),
        (
            Env("SWITCHBOARD_HEARTBEAT_INTERVAL", "-5"),
            "--heartbeat-interval",
            "SWITCHBOARD_HEARTBEAT_INTERVAL",
        ),
        (
            Env("SWITCHBOARD_HEARTBEAT_TIMEOUT", "0"),
            "`heartbeat_timeout`",
            "SWITCHBOARD_HEARTBEAT_TIMEOUT",
        ),
        (
            Env("SWITCHBOARD_SHUTDOWN_TIMEOUT", "nan"),
            "--shutdown-timeout",
            "SWITCHBOARD_SHUTDOWN_TIMEOUT",
        ),
        (
            File("heartbeat_interval = -inf"),
            "--heartbeat-interval",
            "heartbeat_interval in",
        ),
        (
            File("heartbeat_timeout = 0"),
            "`heartbeat_timeout`",
            "heartbeat_timeout in",
        ),
        (
            File("shutdown_timeout = nan"),
            "--shutdown-timeout",
            "shutdown_timeout in",
        ),
        // History: age more than 0 and at most 30 days, count at most 10^6.
        (Flag("--history-age=0"), "--history-age", "--history-age"),
        (Flag("--history-age=nan"), "--history-age", "--history-age"),
        (
            Flag("--history-count=-1"),
            "--history-count",
            "--history-count",
        ),
        (
            Flag("--history-count=1000001"),
            "--history-count",
            "--history-count",
        ),
        (
            Env("SWITCHBOARD_HISTORY_AGE", "-1"),
            "--history-age",
            "SWITCHBOARD_HISTORY_AGE",
        ),
        (
            Env("SWITCHBOARD_HISTORY_COUNT", "many"),
            "--history-count",
            "SWITCHBOARD_HISTORY_COUNT",
        ),
        (File("history_age = 0"), "--history-age", "history_age in"),
        (
            File("history_count = -1"),
            "--history-count",
            "history_count in",
        ),
        // History bytes, the memory budget, the idempotency window, guests.
        (
            Flag("--history-bytes=100"),
            "--history-bytes",
            "--history-bytes",
        ),
        (
            Env("SWITCHBOARD_MEMORY_BUDGET", "-5"),
            "--memory-budget",
            "SWITCHBOARD_MEMORY_BUDGET",
        ),
        (
            File("idempotency_window = 0"),
            "--idempotency-window",
            "idempotency_window in",
        ),
        (
            Flag("--guest-message-rate=nan"),
            "`guest_message_rate`",
            "--guest-message-rate",
        ),
        (
            Flag("--guest-message-burst=0"),
            "--guest-message-burst",
            "--guest-message-burst",
        ),
        // Integers out of range.
        (Flag("--port=70000"), "--port", "--port"),
        (Env("PORT", "-1"), "--port", "PORT"),
        (File("port = 65536"), "--port", "port in"),
        (Flag("--jwt-leeway=-1"), "--jwt-leeway", "--jwt-leeway"),
        (
            Env("SWITCHBOARD_JWT_LEEWAY", "86401"),
            "--jwt-leeway",
            "SWITCHBOARD_JWT_LEEWAY",
        ),
        (File("jwt_leeway = 100000"), "--jwt-leeway", "jwt_leeway in"),
        (
            Flag("--message-rate-strikes=-1"),
            "--message-rate-strikes",
            "--message-rate-strikes",
        ),
        (
            Flag("--max-connections=-1"),
            "--max-connections",
            "--max-connections",
        ),
        (
            Env("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "-1"),
            "--max-connections-per-ip",
            "SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
        ),
        (
            File("max_connections_per_user = -3"),
            "--max-connections-per-user",
            "max_connections_per_user in",
        ),
        (
            Flag("--max-message-size=0"),
            "`max_message_size`",
            "--max-message-size",
        ),
        (
            Env("SWITCHBOARD_MAX_MESSAGE_SIZE", "-1"),
            "--max-message-size",
            "SWITCHBOARD_MAX_MESSAGE_SIZE",
        ),
        (
            Flag("--outbound-queue=0"),
            "`outbound_queue_frames`",
            "--outbound-queue",
        ),
        (
            Env("SWITCHBOARD_OUTBOUND_QUEUE", "0"),
            "`outbound_queue_frames`",
            "SWITCHBOARD_OUTBOUND_QUEUE",
        ),
        (
            File("outbound_queue_bytes = 1"),
            "`outbound_queue_bytes`",
            "outbound_queue_bytes in",
        ),
        (
            Flag("--max-room-name-len=129"),
            "`max_room_name_len`",
            "--max-room-name-len",
        ),
        (
            Env("SWITCHBOARD_MAX_ROOM_NAME_LEN", "0"),
            "`max_room_name_len`",
            "SWITCHBOARD_MAX_ROOM_NAME_LEN",
        ),
        (
            Flag("--max-rooms-per-connection=0"),
            "`max_rooms_per_connection`",
            "--max-rooms-per-connection",
        ),
        (
            File("max_rooms_per_connection = 0"),
            "`max_rooms_per_connection`",
            "max_rooms_per_connection in",
        ),
    ];
    let mut failures = Vec::new();
    for &(from, setting, source) in cases {
        let (status, stderr) = match run_refused(from, &dir) {
            Ok(outcome) => outcome,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        // An engine range names the `Config` field and, after "set by",
        // the source; a value that cannot be read names its source alone:
        // the flag, the environment variable, or the file's line and key.
        let engine = setting.starts_with('`');
        let names_source = match from {
            Flag(_) if engine => stderr.contains(&format!("{flag} {source}")),
            Flag(_) => stderr.contains(&format!("for '{source} <")),
            Env(..) => stderr.contains(&format!("{env} {source}")),
            File(_) if engine => {
                let name = source.trim_end_matches(" in");
                stderr.contains(&format!("{key} {name} at ")) && stderr.contains("bad.toml:1)")
            }
            File(_) => {
                let name = source.trim_end_matches(" in");
                stderr.contains("bad.toml:1: invalid value ")
                    && stderr.contains(&format!(" for {name}: "))
            }
        };
        let names_setting = !engine || stderr.contains(setting);
        if status.code() != Some(2) || !names_setting || !names_source {
            failures.push(format!("{from:?} ({status}): {stderr}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

/// 0 still switches the rate limits off, and a shutdown timeout of 0 (do not
/// wait) is allowed.
#[tokio::test]
async fn zero_rates_and_a_zero_shutdown_timeout_still_start() {
    let server = start(
        &[
            "--port",
            "0",
            "--upgrade-rate",
            "0",
            "--message-rate",
            "0",
            "--shutdown-timeout",
            "0",
        ],
        &[],
    );
    let health = reqwest::get(format!("http://127.0.0.1:{}/health", server.port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--port", "0"])
        .env_remove("NO_COLOR")
        .env_remove("PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn switchboard");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8 log");
        let done = line.contains("listening on");
        log.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
}

#[tokio::test]
async fn an_upgrade_to_a_path_that_is_no_endpoint_names_the_endpoints() {
    let server = start(&["--port", "0"], &[]);
    let endpoints = "/ws/echo, /ws/chat, /ws/notifications";
    for path in ["/ws/nope", "/", "/health", "/demo.js"] {
        let url = format!("ws://127.0.0.1:{}{path}", server.port);
        let (status, body) = switchboard_testkit::ws::expect_refused(url.as_str()).await;
        assert_eq!(status, 404, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "not_found", "message":
                format!("no WebSocket endpoint at {path}; this server's endpoints are {endpoints}")}}),
            "{path}"
        );
    }
    // A plain GET of the same paths is served as before.
    let health = reqwest::get(format!("http://127.0.0.1:{}/health", server.port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_an_address_of_their_own() {
    let metrics_port = switchboard_testkit::free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    // From the flag, and from the environment.
    for (args, env) in [
        (
            vec!["--port", "0", "--metrics-listen", addr.as_str()],
            vec![],
        ),
        (
            vec!["--port", "0"],
            vec![("SWITCHBOARD_METRICS_LISTEN", addr.as_str())],
        ),
    ] {
        let server = start(&args, &env);
        let log = server.log.join("\n");
        assert!(
            log.contains(&format!("metrics on http://{addr}/metrics")),
            "{log}"
        );
        let resp = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains(
                r#"switchboard_connections{endpoint="/ws/chat",transport="websocket"} 0"#
            ),
            "{text}"
        );
        let main = format!("http://127.0.0.1:{}", server.port);
        let resp = reqwest::get(format!("{main}/metrics")).await.unwrap();
        assert_eq!(resp.status(), 404, "not on the main port any more");
        drop(server);
    }
    // Without it, the main port serves them (to loopback callers).
    let server = start(&["--port", "0"], &[]);
    let resp = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
