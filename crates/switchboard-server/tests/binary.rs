//! The `switchboard` binary as users run it: flags, environment, logs,
//! graceful shutdown on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

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
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(
        matches!(ws.next().await, Some(Ok(Message::Text(_)))),
        "welcome"
    );
    signal(&server, sig);
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(close, 1001);
    while ws.next().await.is_some() {}
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
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
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
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.com".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let Some(Ok(Message::Text(welcome))) = ws.next().await else {
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
