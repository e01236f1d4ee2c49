//! The log as an operator reads it: JSON lines when asked, one line per
//! refused upgrade with its reason and client address, no more lines than
//! the budget under a flood, and never a token or an API key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard_testkit::ws;

const SECRET: &str = "a-jwt-secret-that-must-never-be-logged";
const API_KEY: &str = "an-api-key-that-must-never-be-logged";
/// A token-shaped value that no check accepts, with a marker to look for.
const BAD_TOKEN: &str = "eyJtarkersecretpart.eyJzdWIiOiJ4In0.c2lnbmF0dXJlbWFya2Vy";

struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--port", "0", "--log-format", "json"])
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env_remove("RUST_LOG")
        .env_remove("PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchboard");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let port = loop {
        let line = lines.next().expect("a log line").expect("UTF-8");
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().expect("a port");
        }
    };
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            keep.lock().unwrap().push(line);
        }
    });
    Server { child, port, log }
}

fn mint_token() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "--user", "alice", "--ttl", "600"])
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .output()
        .expect("run switchboard token");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// The log lines written so far, parsed; panics on a line that is not JSON.
fn records(server: &Server) -> Vec<Value> {
    server
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn refusals(server: &Server) -> Vec<Value> {
    records(server)
        .into_iter()
        .filter(|r| {
            r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("upgrade refused"))
        })
        .collect()
}

async fn wait_for(server: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let r = refusals(server);
        if pred(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:#?}", refusals(server));
}

#[tokio::test]
async fn refusals_are_logged_once_as_json_within_a_budget_and_without_secrets() {
    let server = start();
    let http = format!("http://127.0.0.1:{}", server.port);
    let ws_url = format!("ws://127.0.0.1:{}/ws/chat", server.port);
    let client = reqwest::Client::new();

    // A 401 with the token in the query: logged with its reason and address,
    // never with the token.
    let (status, _) = ws::expect_refused(format!("{ws_url}?token={BAD_TOKEN}").as_str()).await;
    assert_eq!(status, 401);
    let first = wait_for(&server, "the 401 line", |r| !r.is_empty()).await;
    let line = &first[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["status"], 401);
    assert_eq!(line["fields"]["path"], "/ws/chat");
    assert_eq!(line["fields"]["client"], "127.0.0.1");
    assert_eq!(
        line["fields"]["message"],
        "upgrade refused: token malformed: not three base64url parts with a JSON header"
    );

    // A 400 and a 426, each logged once with what was wrong.
    let resp = client
        .get(format!("{http}/ws/chat"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .get(format!("{http}/ws/chat"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    let three = wait_for(&server, "the 400 and 426 lines", |r| r.len() >= 3).await;
    assert_eq!(three.len(), 3, "{three:#?}");
    assert_eq!(three[1]["fields"]["status"], 400);
    assert_eq!(
        three[1]["fields"]["message"],
        "upgrade refused: missing or malformed Sec-WebSocket-Key"
    );
    assert_eq!(three[2]["fields"]["status"], 426);
    assert!(
        three[2]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("a proxy in front of this server dropped them"),
        "{}",
        three[2]
    );

    // Credentials that work and that do not, on the socket and the API.
    let token = mint_token();
    let alice = ws::Client::connect(ws::request(
        &ws_url,
        &[("authorization", &format!("Bearer {token}"))],
    ))
    .await;
    let cookie = format!("switchboard_token={BAD_TOKEN}");
    let (status, _) = ws::expect_refused(ws::request(&ws_url, &[("cookie", &cookie)])).await;
    assert_eq!(status, 401);
    let publish = |key: &'static str| {
        client
            .post(format!("{http}/api/rooms/lobby/messages"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(r#"{"data":"hi"}"#)
            .send()
    };
    assert_eq!(publish(API_KEY).await.unwrap().status(), 200);
    assert_eq!(
        publish("not-the-api-key-but-long").await.unwrap().status(),
        401
    );
    alice.close().await;

    // A flood of bad upgrades: at most the budget per second is written.
    let before = refusals(&server).len();
    let flood: u64 = 400;
    for _ in 0..flood {
        let resp = client.get(format!("{http}/ws/echo")).send().await.unwrap();
        assert_eq!(resp.status(), 426);
    }
    // After a quiet second, the next line (for another path, to tell it
    // apart) says how many were held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = refusals(&server).len() - before;
    // 20 a second (some already spent on the lines above); the flood may
    // straddle a few one-second windows.
    assert!(
        (1..=100).contains(&after),
        "{after} refusal lines for {flood} refusals"
    );
    let resp = client
        .get(format!("{http}/ws/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    let all = wait_for(&server, "the line after the flood", |r| {
        r.iter().any(|l| l["fields"]["path"] == "/ws/notifications")
    })
    .await;
    let last = all
        .iter()
        .find(|l| l["fields"]["path"] == "/ws/notifications")
        .unwrap();
    let held = last["fields"]["suppressed"]
        .as_u64()
        .expect("suppressed count");
    assert_eq!(held, flood - after as u64, "{last}");

    let log = server.log.lock().unwrap().join("\n");
    for secret in [
        SECRET,
        API_KEY,
        BAD_TOKEN,
        "tarkersecretpart",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
