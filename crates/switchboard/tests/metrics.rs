//! `/metrics` on a live server: the series move as traffic flows, a scrape
//! passes `promtool check metrics`, the access check is the API's, the
//! metrics can be served on a listener of their own, and every metric the
//! Grafana dashboard queries exists.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;
use switchboard::{Config, Node};
use tokio::net::TcpListener;

/// Scrapes `/metrics` at `url`, asserting a 200 in the text format.
async fn scrape_url(url: &str) -> String {
    let resp = reqwest::get(url).await.expect("scrape");
    assert_eq!(resp.status(), 200, "{url}");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    resp.text().await.unwrap()
}

async fn scrape(server: &TestServer) -> String {
    scrape_url(&server.http("/metrics")).await
}

/// The value of the sample written exactly as `series` (name and labels),
/// if the scrape has it.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(rest.parse().expect("a number"))
    })
}

fn value(scrape: &str, series: &str) -> f64 {
    sample(scrape, series).unwrap_or_else(|| panic!("no sample {series} in:\n{scrape}"))
}

/// Polls the scrape until `series` has `want`.
async fn eventually_sample(server: &TestServer, series: &str, want: f64) -> String {
    let url = server.http("/metrics");
    ws::eventually(series, WAIT, || {
        let url = url.clone();
        async move {
            let s = scrape_url(&url).await;
            (sample(&s, series) == Some(want)).then_some(s)
        }
    })
    .await
}

/// Runs `promtool check metrics` on `text`; fails, saying how to install
/// it, when promtool is missing.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is required for this test ({e}): install it with \
             `apt-get install prometheus` (Debian), or run scripts/test, which does"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHAT: &str = r#"{endpoint="/ws/chat",transport="websocket"}"#;

/// Drives one of everything the metrics count, asserting each series moves,
/// and returns the last scrape.
async fn traffic(server: &TestServer) -> String {
    let s = scrape(server).await;
    assert_eq!(value(&s, &format!("switchboard_connections{CHAT}")), 0.0);
    assert_eq!(
        value(&s, &format!("switchboard_connections_accepted_total{CHAT}")),
        0.0
    );

    // A connection raises its endpoint's gauge and accepted counter.
    let mut a = connect(&server.ws("/ws/chat")).await;
    let s = eventually_sample(server, &format!("switchboard_connections{CHAT}"), 1.0).await;
    assert_eq!(
        value(&s, &format!("switchboard_connections_accepted_total{CHAT}")),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"switchboard_connections{endpoint="/ws/echo",transport="websocket"}"#
        ),
        0.0,
        "every endpoint's series is there from the start"
    );

    // A refused upgrade bumps its status and reason.
    let (status, _) = upgrade_status_with(
        &server.ws("/ws/chat"),
        &[("origin", "https://elsewhere.example")],
    )
    .await;
    assert_eq!(status, 403);
    eventually_sample(
        server,
        r#"switchboard_upgrades_refused_total{status="403",reason="forbidden_origin"}"#,
        1.0,
    )
    .await;

    // A room message: published, fanned out to one, delivered, written.
    let joined = a.join("lobby").await;
    let (status, _) = server
        .post("/api/rooms/lobby/messages", r#"{"data":"hi"}"#)
        .await;
    assert_eq!(status, 200);
    let m = a.next_json().await;
    assert_eq!(m["data"], "hi");
    let s = eventually_sample(server, "switchboard_deliveries_total", 1.0).await;
    // The message, and the presence event the join published.
    assert_eq!(value(&s, "switchboard_published_total"), 2.0);
    // The message went to one connection; the presence event to none.
    let to_one = value(&s, r#"switchboard_fanout_recipients_bucket{le="1"}"#)
        - value(&s, r#"switchboard_fanout_recipients_bucket{le="0"}"#);
    assert_eq!(to_one, 1.0, "{s}");
    let fanouts = value(&s, "switchboard_fanout_recipients_count");
    assert!(fanouts >= 1.0);
    assert_eq!(value(&s, "switchboard_fanout_recipients_sum"), 1.0);
    assert_eq!(
        value(&s, "switchboard_delivery_latency_seconds_count"),
        fanouts,
        "one latency per fan-out"
    );
    assert!(value(&s, "switchboard_broker_publish_latency_seconds_count") >= 1.0);
    assert_eq!(value(&s, "switchboard_rooms"), 1.0);
    assert_eq!(value(&s, "switchboard_broker_up"), 1.0);
    assert!(
        value(&s, "switchboard_frames_sent_total") >= 3.0,
        "welcome, joined, message"
    );
    assert!(value(&s, "switchboard_sent_bytes_total") > 30.0);

    // A frame the server cannot read: received, answered with an error.
    a.send_text("not json").await;
    let err = a.next_json().await;
    assert_eq!(err["code"], "bad_json");
    let s = eventually_sample(
        server,
        r#"switchboard_client_errors_total{code="bad_json"}"#,
        1.0,
    )
    .await;
    assert!(value(&s, "switchboard_frames_received_total") >= 2.0);
    assert!(value(&s, "switchboard_received_bytes_total") >= 8.0);

    // A client coming back asks to recover what it missed.
    let epoch = joined["epoch"].clone();
    assert!(epoch.is_string(), "{joined}");
    let mut b = connect(&server.ws("/ws/chat")).await;
    b.send(json!({"type":"join","room":"lobby","id":7,"since":{"offset":0,"epoch":epoch}}))
        .await;
    b.expect_json("joined").await;
    let s = eventually_sample(server, "switchboard_client_reconnects_total", 1.0).await;
    assert_eq!(value(&s, &format!("switchboard_connections{CHAT}")), 2.0);
    assert_eq!(value(&s, "switchboard_users"), 2.0, "two guests");

    // Closing lowers the gauge; the accepted counter stays.
    a.close().await;
    b.close().await;
    let s = eventually_sample(server, &format!("switchboard_connections{CHAT}"), 0.0).await;
    assert_eq!(
        value(&s, &format!("switchboard_connections_accepted_total{CHAT}")),
        2.0
    );
    // The users go with their connections.
    eventually_sample(server, "switchboard_users", 0.0).await
}

async fn upgrade_status_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    expect_refused(ws::request(url, headers)).await
}

#[tokio::test]
async fn series_move_with_traffic_and_a_scrape_passes_promtool() {
    let server = TestServer::start_default().await;
    let s = traffic(&server).await;
    promtool_check(&s);
    for name in [
        "switchboard_slow_consumer_closes_total",
        "switchboard_heartbeat_timeout_closes_total",
        "switchboard_broker_errors_total",
        "switchboard_broker_reconnects_total",
        "switchboard_outbound_queued_frames",
        "switchboard_outbound_queue_max_frames",
        "switchboard_presence_entries",
        "switchboard_history_bytes",
        "switchboard_history_budget_bytes",
        "switchboard_history_evicted_total",
    ] {
        assert!(sample(&s, name).is_some(), "{name} missing in:\n{s}");
    }
    assert!(
        value(&s, "switchboard_history_bytes") > 0.0,
        "one message kept"
    );
    // `/health` still shows its counters, read from the same metrics.
    let health: serde_json::Value = reqwest::get(server.http("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["stats"]["connections_total"], 2);
    assert_eq!(health["stats"]["rejected_upgrades"], 1);
    assert_eq!(health["stats"]["deliveries"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_close_is_counted_and_queues_are_measured() {
    let config = Config::builder()
        .outbound_queue_frames(16)
        .outbound_queue_bytes(1024 * 1024)
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    let mut slow = connect(&server.ws("/ws/chat")).await;
    slow.join("feed").await;
    // `slow` reads nothing from here on: once the socket's buffers are full,
    // its queue grows one frame per message until it overflows at 16.
    let payload = format!(r#"{{"data":"{}"}}"#, "p".repeat(60_000));
    let mut deepest = 0.0f64;
    for _ in 0..500 {
        let (status, _) = server.post("/api/rooms/feed/messages", &payload).await;
        assert_eq!(status, 200);
        let s = scrape(&server).await;
        let (queued, longest) = (
            value(&s, "switchboard_outbound_queued_frames"),
            value(&s, "switchboard_outbound_queue_max_frames"),
        );
        assert!(queued >= longest && longest <= 16.0, "{queued} {longest}");
        deepest = deepest.max(longest);
        if value(&s, "switchboard_slow_consumer_closes_total") == 1.0 {
            break;
        }
    }
    assert!(
        deepest >= 1.0,
        "the queue was seen growing before the close"
    );
    let s = eventually_sample(&server, "switchboard_slow_consumer_closes_total", 1.0).await;
    promtool_check(&s);
    drop(slow);
    server.stop().await;
}

#[tokio::test]
async fn a_heartbeat_timeout_is_counted() {
    let config = Config::builder()
        .heartbeat_interval(std::time::Duration::from_millis(150))
        .heartbeat_timeout(std::time::Duration::from_millis(150))
        .build()
        .unwrap();
    let server = TestServer::start(config).await;
    // Never polled again, so its pings go unanswered.
    let silent = connect(&server.ws("/ws/chat")).await;
    eventually_sample(&server, "switchboard_heartbeat_timeout_closes_total", 1.0).await;
    eventually_sample(&server, &format!("switchboard_connections{CHAT}"), 0.0).await;
    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_protected_like_the_api() {
    const KEY: &str = "a-metrics-key-of-24-chars";
    let server = TestServer::start(Config::builder().api_key(KEY).build().unwrap()).await;
    let client = reqwest::Client::new();
    let url = server.http("/metrics");

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let resp = client.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "invalid API key");

    let resp = client.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("switchboard_connections{")
    );
    server.stop().await;

    // Without a key, only loopback callers: a relayed request is refused.
    let server = TestServer::start_default().await;
    let resp = client
        .get(server.http("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own_are_open_and_leave_the_main_port() {
    const KEY: &str = "a-metrics-key-of-24-chars";
    let node = Node::builder()
        .config(Config::builder().api_key(KEY).build().unwrap())
        .default_endpoints()
        .build()
        .unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, metrics_addr) = (main.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = tokio::spawn(switchboard::http::serve_metrics(
        metrics,
        node.clone(),
        std::future::pending(),
    ));
    let app = switchboard::http::router_without_metrics(&node);
    let main_task = tokio::spawn(switchboard::serve(main, app, node.clone(), async move {
        let _ = stopped.await;
    }));

    let _c = connect(&format!("ws://{main_addr}/ws/chat")).await;
    // No key needed on the metrics listener, and the series are the node's.
    let url = format!("http://{metrics_addr}/metrics");
    ws::eventually("connection counted", WAIT, || {
        let url = url.clone();
        async move {
            let s = scrape_url(&url).await;
            (sample(&s, &format!("switchboard_connections{CHAT}")) == Some(1.0)).then_some(())
        }
    })
    .await;
    let resp = reqwest::get(format!("http://{metrics_addr}/health"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "only /metrics on the metrics listener");
    // The main port no longer serves them, even with the key.
    let resp = reqwest::Client::new()
        .get(format!("http://{main_addr}/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = reqwest::get(format!("http://{main_addr}/health"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the rest of the API stays");

    let _ = stop.send(());
    main_task.await.unwrap().unwrap();
    metrics_task.abort();
}

/// The metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("switchboard_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_string());
        i = end;
    }
    names
}

fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_exists_in_a_scrape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/switchboard-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 20, "the dashboard queries {names:?}");

    let server = TestServer::start_default().await;
    let s = traffic(&server).await;
    let present: BTreeSet<&str> = s
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no scrape has: {missing:?}"
    );
    server.stop().await;
}
