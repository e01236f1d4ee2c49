//! The binary's settings as an operator meets them: the exact error for a
//! bad value from each source, `check-config`, `print-config` and its
//! committed example, and `token`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::json;
use switchboard_testkit::ws;

/// The binary with a clean environment: no setting of the test runner's
/// leaks in, and a backtrace is asked for (a configuration error must still
/// not print one).
fn switchboard(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (var, _) in std::env::vars() {
        if var.starts_with("SWITCHBOARD_") || var == "PORT" {
            cmd.env_remove(var);
        }
    }
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LIB_BACKTRACE", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a command that must exit on its own, within 10 s.
fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(out) => out.expect("wait for switchboard"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("switchboard did not exit within 10 s: it started instead");
        }
    }
}

/// Kills the child it holds when dropped.
struct Killer(Option<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the binary, which must refuse its settings with status 2; returns
/// its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(switchboard(args, env));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
    stderr
}

/// A directory of its own for a test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to the file `name` in this directory; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_bad_environment_variable_is_named_as_such() {
    assert_eq!(
        refused(&[], &[("SWITCHBOARD_HEARTBEAT_INTERVAL", "abc")]),
        "error: invalid value 'abc' for the environment variable \
         SWITCHBOARD_HEARTBEAT_INTERVAL: must be a number of seconds\n"
    );
    assert_eq!(
        refused(&[], &[("SWITCHBOARD_REQUIRE_ORIGIN", "maybe")]),
        "error: invalid value 'maybe' for the environment variable \
         SWITCHBOARD_REQUIRE_ORIGIN: must be true or false (also yes/no, on/off, 1/0)\n"
    );
    assert_eq!(
        refused(&[], &[("SWITCHBOARD_API_KEY", "short")]),
        "error: invalid setting `api_key`: must be at least 16 characters \
         (set by the environment variable SWITCHBOARD_API_KEY)\n"
    );
}

#[test]
fn a_bad_file_value_is_named_by_file_line_and_key() {
    let dir = TempDir::new("bad-file");
    let file = dir.file(
        "switchboard.toml",
        "port = 0\n# heartbeats\nheartbeat_timeout = inf\n",
    );
    assert_eq!(
        refused(&["--config", &file], &[]),
        format!(
            "error: {file}:3: invalid value inf for heartbeat_timeout: must be a finite \
             number of seconds, 0 or more\n"
        )
    );
    let file = dir.file("typo.toml", "prot = 3000\n");
    assert_eq!(
        refused(&[], &[("SWITCHBOARD_CONFIG", &file)]),
        format!("error: {file}:1: unknown setting \"prot\" (did you mean \"port\"?)\n")
    );
    let file = dir.file("type.toml", "\nmax_connections = \"10\"\n");
    assert_eq!(
        refused(&["--config", &file], &[]),
        format!(
            "error: {file}:2: invalid value \"10\" for max_connections: must be a whole \
             number, not a string\n"
        )
    );
    let file = dir.file("engine.toml", "port = 0\nmax_rooms_per_connection = 0\n");
    assert_eq!(
        refused(&["--config", &file], &[]),
        format!(
            "error: invalid setting `max_rooms_per_connection`: must be at least 1, not 0 \
             (set by the key max_rooms_per_connection at {file}:2)\n"
        )
    );
}

#[test]
fn a_bad_flag_is_named_as_a_flag() {
    assert_eq!(
        refused(&["--heartbeat-interval", "abc"], &[]),
        "error: invalid value 'abc' for '--heartbeat-interval <SECONDS>': must be a number \
         of seconds\n\nFor more information, try '--help'.\n"
    );
    assert_eq!(
        refused(&["--port", "0", "--api-key", "short"], &[]),
        "error: invalid setting `api_key`: must be at least 16 characters \
         (set by the flag --api-key)\n"
    );
    assert_eq!(
        refused(&["--port", "0", "--trusted-proxies", "10.0.0.0/33"], &[]),
        "error: invalid setting `trusted_proxies`: invalid prefix length in \
         \"10.0.0.0/33\" (set by the flag --trusted-proxies)\n"
    );
}

#[test]
fn a_large_message_size_raises_the_queue_bound_unless_both_are_set() {
    assert_eq!(
        refused(
            &[
                "--port",
                "0",
                "--max-message-size",
                "3000000",
                "--outbound-queue-bytes",
                "2097152"
            ],
            &[]
        ),
        "error: invalid setting `outbound_queue_bytes`: must be at least max_message_size, \
         not 2097152 (set by the flag --outbound-queue-bytes and the flag --max-message-size)\n"
    );
    let out = run(switchboard(
        &["check-config", "--max-message-size", "3000000"],
        &[],
    ));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "\noutbound_queue_bytes = 6000000  # default: 2097152, or twice \
             max_message_size when that is more\n"
        ),
        "{stdout}"
    );
    // And the server starts with it.
    let mut cmd = switchboard(&["--port", "0", "--max-message-size", "3000000"], &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut server = Killer(Some(cmd.spawn().unwrap()));
    let stdout = server.0.as_mut().unwrap().stdout.take().unwrap();
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("listening on http://"));
    assert!(listening);
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_masked() {
    let dir = TempDir::new("check");
    let secret = "jwt-secret-of-32-bytes-for-tests";
    let file = dir.file(
        "switchboard.toml",
        &format!(
            "heartbeat_interval = 20\nhooks_secret = \"hook-secret-of-16+\"\n\
             jwt_secret = \"{secret}\"\nbroker = \"redis://ana:pa55@127.0.0.1:1/0\"\n"
        ),
    );
    let out = run(switchboard(
        &["check-config", &file, "--heartbeat-timeout", "5"],
        &[
            ("SWITCHBOARD_API_KEY", "an-api-key-of-24-letters"),
            ("SWITCHBOARD_HEARTBEAT_INTERVAL", "25"),
        ],
    ));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!("# configuration file: {file}"),
        "port = 3000  # default".into(),
        "heartbeat_interval = 25  # set by the environment variable \
         SWITCHBOARD_HEARTBEAT_INTERVAL"
            .into(),
        "heartbeat_timeout = 5  # set by the flag --heartbeat-timeout".into(),
        "api_key = \"***\"  # set by the environment variable SWITCHBOARD_API_KEY".into(),
        format!("jwt_secret = \"***\"  # set by the key jwt_secret at {file}:3"),
        format!("hooks_secret = \"***\"  # set by the key hooks_secret at {file}:2"),
        format!("broker = \"redis://ana:***@127.0.0.1:1/0\"  # set by the key broker at {file}:4"),
        "require_origin = false  # default".into(),
        "allowed_origins = []  # default".into(),
        "# jwt_issuer is not set".into(),
        "# endpoints: /ws/echo, /ws/chat, /ws/notifications".into(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not in:\n{stdout}"
        );
    }
    for secret in [
        secret,
        "hook-secret-of-16+",
        "an-api-key-of-24-letters",
        "pa55",
    ] {
        assert!(!stdout.contains(secret), "{secret} leaked:\n{stdout}");
    }
    // An empty key counts as not set, and is shown so.
    let out = run(switchboard(
        &["check-config"],
        &[("SWITCHBOARD_API_KEY", "")],
    ));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\n# api_key is not set\n"), "{stdout}");

    // Invalid: the same error as at startup, and nothing on stdout.
    assert_eq!(
        refused(
            &["check-config", &file, "--jwt-public-key", "/etc/hostname"],
            &[]
        ),
        format!(
            "error: set either a JWT secret or a JWT public key, not both (set by the key \
             jwt_secret at {file}:3 and the flag --jwt-public-key)\n"
        )
    );
    let bad = dir.file("bad.toml", "[[endpoint]]\npath = \"/a\"\nkind = \"room\"\n");
    let e = refused(&["check-config", &bad], &[]);
    assert!(
        e.starts_with(&format!(
            "error: {bad}:1: endpoint /a: unknown variant `room`"
        )),
        "{e}"
    );
}

/// The committed example file, `docs/switchboard.example.toml`.
fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/switchboard.example.toml")
}

#[test]
fn print_config_is_the_committed_example() {
    let out = run(switchboard(&["print-config"], &[]));
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(example_path()).unwrap();
    assert!(
        printed == committed,
        "docs/switchboard.example.toml is stale: write it anew with \
         `cargo run -- print-config > docs/switchboard.example.toml`"
    );
}

/// The effective values of `check-config`'s output, without where they came
/// from.
fn values(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # ").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_example_file_and_its_defaults_are_valid_and_are_the_defaults() {
    let committed = std::fs::read_to_string(example_path()).unwrap();
    let example = example_path();
    let out = run(switchboard(
        &["check-config", example.to_str().unwrap()],
        &[],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defaults = run(switchboard(&["check-config"], &[]));
    assert!(defaults.status.success());
    let defaults = String::from_utf8(defaults.stdout).unwrap();

    // Every `#key = value` line of the settings uncommented: each value is
    // the default.
    let (settings, _endpoints) = committed.split_once("\n# Endpoints.").unwrap();
    let uncommented: String = settings
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = TempDir::new("example");
    let file = dir.file("all.toml", &uncommented);
    let keys = uncommented
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'));
    assert!(keys.count() > 30, "{uncommented}");
    let out = run(switchboard(&["check-config", &file], &[]));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(values(&stdout), values(&defaults));
}

#[tokio::test]
async fn a_minted_token_is_accepted_by_the_server() {
    let secret = ("SWITCHBOARD_JWT_SECRET", "token-test-secret-32-bytes-long!");
    let out = run(switchboard(
        &[
            "token", "--user", "alice", "--rooms", "chat:*", "--ttl", "1h",
        ],
        &[secret],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.strip_suffix('\n').unwrap();
    assert_eq!(token.split('.').count(), 3, "only the token: {stdout:?}");

    let mut cmd = switchboard(&["--port", "0"], &[secret]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut server = Killer(Some(cmd.spawn().unwrap()));
    let stdout = server.0.as_mut().unwrap().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port: u16 = loop {
        let line = lines.next().expect("a log line").unwrap();
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    assert_eq!(ws::expect_refused(url.as_str()).await.0, 401);
    let mut alice = ws::Client::connect(format!("{url}?token={token}").as_str()).await;
    assert_eq!(alice.user(), "alice");
    alice.join("chat:general").await;
    alice
        .send(json!({"type": "join", "room": "lobby", "id": 2}))
        .await;
    let reply = alice.next_json().await;
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("forbidden"))
    );
}

#[test]
fn token_needs_a_secret() {
    assert_eq!(
        refused(&["token", "--user", "alice"], &[]),
        "error: cannot mint a token: no JWT secret is configured (set \
         SWITCHBOARD_JWT_SECRET, --jwt-secret or jwt_secret in the configuration file)\n"
    );
    let dir = TempDir::new("token");
    let file = dir.file("public.pem", "not a key");
    assert_eq!(
        refused(
            &["token", "--user", "alice", "--jwt-public-key", &file],
            &[]
        ),
        "error: cannot mint a token: the server is configured with a public key \
         (jwt_public_key), which only checks tokens; minting needs the private key, which \
         the server never holds: pass it with --private-key FILE, or sign tokens with it in \
         your backend\n"
    );
}
