//! The load tool end to end at tiny sizes: every subcommand against a real
//! Switchboard node (served from this process on a free port) and against
//! the floor server, checking what each reports. Only correctness is
//! checked (counts, loss, refusals), never speed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::NodeRoutes as _;

use serde_json::{Value, json};
use switchboard::auth::jwt::{JwtAuthenticator, JwtConfig, JwtKey};

const SECRET: &str = "bench-smoke-secret-32-bytes-long!";

/// Serves a node with the standard endpoints on a free loopback port, on a
/// runtime of its own, for the rest of the test process. Guests have no
/// message rate limit, as with bench/run. With `jwt`, every
/// WebSocket client needs an HS256 token signed with [`SECRET`].
fn start_node(jwt: bool) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            // As bench/run starts the server: guests unthrottled, so that
            // the load tool measures the engine and not the rate limit.
            let config = switchboard::Config::builder()
                .guest_message_rate(None)
                .build()
                .expect("config");
            let mut builder = switchboard::Node::builder()
                .config(config)
                .default_endpoints();
            if jwt {
                let key = JwtKey::Hs256(SECRET.as_bytes().to_vec());
                let auth = JwtAuthenticator::new(JwtConfig::new(key)).expect("jwt config");
                builder = builder.authenticator(auth);
            }
            let node = builder.build().expect("node");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("report port");
            let app = node.router();
            switchboard::serve(listener, app, node, std::future::pending())
                .await
                .expect("serve");
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("node started")
}

/// Serves a node whose clients are identified by the connect hook and whose
/// publishes on `/ws/chat` go through the publish hook, both answered by the
/// hook application on `app_port`.
fn start_hooked_node(app_port: u16) -> u16 {
    use switchboard::Endpoint;
    use switchboard::hooks::{Application, ConnectHook, Hook, HttpHooks};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let base = format!("http://127.0.0.1:{app_port}/hooks");
            let app = Application::new(SECRET.as_bytes(), 64).expect("application");
            let hooks = HttpHooks::new(app.clone()).publish(Hook::new(format!("{base}/publish")));
            let connect = ConnectHook::new(app, Hook::new(format!("{base}/connect")))
                .forward_cookies(&["sid"]);
            let node = switchboard::Node::builder()
                .authenticator(connect)
                .endpoint(Endpoint::chat("/ws/chat").hooks(hooks))
                .build()
                .expect("node");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("report port");
            let app = node.router();
            switchboard::serve(listener, app, node, std::future::pending())
                .await
                .expect("serve");
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("node started")
}

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a token")
}

/// Runs the tool; it must succeed. Returns its standard output.
fn tool(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .output()
        .expect("run switchboard-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "switchboard-bench {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a scenario; returns the `results` of the JSON line it ends with.
fn bench(args: &[&str]) -> Value {
    let stdout = tool(args);
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"));
    v["results"].clone()
}

fn pid() -> String {
    std::process::id().to_string()
}

#[test]
fn idle_holds_every_connection_and_reads_the_server_rss() {
    let port = start_node(false);
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    let r = bench(&[
        "idle",
        "--url",
        &url,
        "--connections",
        "40",
        "--join",
        "smoke",
        "--server-pid",
        &pid(),
    ]);
    assert_eq!(r["connections"], 40, "{r}");
    assert_eq!(r["still_open_after_hold"], 40, "{r}");
    assert!(r["server_rss_kib_after"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["rss_kib_per_conn"].is_number(), "{r}");
}

#[test]
fn fanout_delivers_every_message_by_http_and_by_websocket() {
    let port = start_node(false);
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    for publish in ["http", "ws"] {
        let r = bench(&[
            "fanout",
            "--url",
            &url,
            "--subscribers",
            "30",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--drain",
            "2s",
            "--publish",
            publish,
            "--server-pid",
            &pid(),
        ]);
        let expected = r["expected"].as_u64().expect("expected count");
        assert!(expected >= 30 * 10, "{publish}: {r}");
        assert_eq!(r["received"].as_u64(), Some(expected), "{publish}: {r}");
        assert_eq!(r["lost"], 0, "{publish}: {r}");
        assert_eq!(r["subscribers_cut"], 0, "{publish}: {r}");
        assert_eq!(r["stale"], 0, "{publish}: {r}");
    }
}

#[test]
fn echo_reports_round_trips() {
    let port = start_node(false);
    let url = format!("ws://127.0.0.1:{port}/ws/echo");
    let r = bench(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "4",
        "--duration",
        "1s",
        "--server-pid",
        &pid(),
    ]);
    assert!(r["round_trips_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
}

#[test]
fn churn_with_a_token_connects_and_without_one_counts_the_401s() {
    let port = start_node(true);
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    let tok = token("churner");
    let common = ["--url", &url, "--rate", "50", "--duration", "1s"];
    let mut with = common.to_vec();
    with.extend(["--token", &tok]);
    let r = bench(&[&["churn"][..], &with].concat());
    assert!(r["succeeded"].as_u64().unwrap_or(0) >= 40, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    let r = bench(&[&["churn"][..], &common[..]].concat());
    assert_eq!(r["succeeded"], 0, "{r}");
    let attempted = r["attempted"].as_u64().expect("attempted");
    assert!(attempted >= 40, "{r}");
    assert_eq!(r["failures"]["http_401"].as_u64(), Some(attempted), "{r}");
}

#[test]
fn hooked_upgrades_and_publishes_go_through_the_hook_app() {
    let app_port = tool(&["free-port"]);
    let app_port = app_port.trim();
    let app = Floor(
        Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
            .args(["hook-app", "--port", app_port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the hook app"),
    );
    tool(&[
        "wait-ready",
        "--url",
        &format!("http://127.0.0.1:{app_port}/health"),
    ]);
    let port = start_hooked_node(app_port.parse().expect("port"));
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    let app_pid = app.0.id().to_string();
    let common = ["--url", &url, "--rate", "50", "--duration", "1s"];
    let mut with = common.to_vec();
    with.extend(["--cookie", "sid=smoke-{n}", "--app-pid", &app_pid]);
    let r = bench(&[&["churn"][..], &with].concat());
    assert!(r["succeeded"].as_u64().unwrap_or(0) >= 40, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // Without the cookie the application refuses.
    let r = bench(&[&["churn"][..], &common[..]].concat());
    assert_eq!(r["succeeded"], 0, "{r}");
    assert!(r["failures"]["http_401"].as_u64().unwrap_or(0) >= 40, "{r}");
    let r = bench(&[
        "acks",
        "--url",
        &url,
        "--connections",
        "2",
        "--window",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--cookie",
        "sid=pub-{n}",
        "--server-pid",
        &pid(),
        "--app-pid",
        &app_pid,
    ]);
    assert!(r["acked"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["refused_or_failed"], 0, "{r}");
    assert!(r["app_cpu_us_per_msg"].is_number(), "{r}");
}

#[test]
fn acks_counts_acknowledged_publishes_of_guests() {
    let port = start_node(false);
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    let r = bench(&[
        "acks",
        "--url",
        &url,
        "--connections",
        "2",
        "--duration",
        "1s",
        "--server-pid",
        &pid(),
    ]);
    assert!(r["acked_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    assert_eq!(r["refused_or_failed"], 0, "{r}");
    assert!(r["app_cpu_us_per_msg"].is_null(), "{r}");
}

/// A child process (the floor server, the hook app), killed when the test
/// ends.
struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_floor_server_fans_out_raw_frames() {
    let port = tool(&["free-port"]);
    let port = port.trim();
    let floor = Floor(
        Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
            .args(["floor-server", "--port", port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the floor server"),
    );
    tool(&[
        "wait-ready",
        "--url",
        &format!("http://127.0.0.1:{port}/health"),
    ]);
    let url = format!("ws://127.0.0.1:{port}/ws/chat");
    let r = bench(&[
        "fanout",
        "--url",
        &url,
        "--protocol",
        "raw",
        "--subscribers",
        "20",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--server-pid",
        &floor.0.id().to_string(),
    ]);
    let expected = r["expected"].as_u64().expect("the floor server answered");
    assert!(expected >= 20 * 10, "{r}");
    assert_eq!(r["received"].as_u64(), Some(expected), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
}
