//! TLS in the `switchboard` binary: `wss://` sessions, HTTP/2 for the API,
//! a plain-HTTP client refused, the certificate reloaded on SIGHUP and when
//! its files change, a bad new pair refused, and `check-config`'s errors for
//! the certificate files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use switchboard_testkit::tls::{self, ServerCert, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// How long anything here may take.
const WAIT: Duration = Duration::from_secs(10);

/// A directory of its own for a test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` as a deployment tool does: a new file renamed
    /// over the old one, so that no reader sees it half written.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        let tmp = self.0.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Writes a certificate chain and key as `cert.pem` and `key.pem`.
    fn install(&self, cert: &ServerCert) -> (String, String) {
        (
            self.write("cert.pem", &cert.chain_pem),
            self.write("key.pem", &cert.key_pem),
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary with a clean environment.
fn switchboard(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (var, _) in std::env::vars() {
        if var.starts_with("SWITCHBOARD_") || var == "PORT" {
            cmd.env_remove(var);
        }
    }
    cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// The running binary, killed when dropped, with its log.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary with TLS from `dir`'s files and waits until it
    /// listens.
    fn start(dir: &TempDir, extra: &[&str]) -> Server {
        let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
        let mut args = vec!["--port", "0", "--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        let mut child = switchboard(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn switchboard");
        let stdout = child.stdout.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        let line = server.wait_log("listening on https://127.0.0.1:");
        let rest = line
            .split("listening on https://127.0.0.1:")
            .nth(1)
            .unwrap();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        server
            .addr
            .set_port(digits.parse().expect("port in log line"));
        server
    }

    /// The next log line that contains `text`.
    fn wait_log(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?} within {WAIT:?}"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The next JSON frame of `ws`.
async fn next_json(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("a frame, not the end")
            .expect("a frame, not an error");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

/// Reads frames until one of type `kind`; returns it.
async fn expect(ws: &mut Wss, kind: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn send(ws: &mut Wss, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// A `wss://` session on `/ws/chat` that has read its welcome; and the
/// certificate the server showed it.
async fn chat(addr: SocketAddr, config: std::sync::Arc<rustls::ClientConfig>) -> (Wss, Vec<u8>) {
    let (mut ws, cert) = tls::wss(addr, config, "/ws/chat").await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, cert.to_vec())
}

/// Joins `room` with frame id `id` and waits for `joined`.
async fn join(ws: &mut Wss, room: &str, id: u64) {
    send(ws, json!({"type": "join", "room": room, "id": id})).await;
    let joined = expect(ws, "joined").await;
    assert_eq!(joined["id"], id, "{joined}");
}

#[tokio::test]
async fn wss_sessions_join_publish_and_receive() {
    let dir = TempDir::new("wss");
    let ca = TestCa::new("wss CA");
    dir.install(&ca.issue());
    let server = Server::start(&dir, &[]);
    let config = tls::client_config(&[&ca], &[b"http/1.1"]);
    let (mut ana, _) = chat(server.addr, config.clone()).await;
    let (mut bob, _) = chat(server.addr, config).await;
    join(&mut ana, "lobby", 1).await;
    join(&mut bob, "lobby", 1).await;
    let data = json!({"text": "over TLS", "pad": "x".repeat(40_000)});
    send(
        &mut ana,
        json!({"type": "publish", "room": "lobby", "data": data, "id": 2}),
    )
    .await;
    let ack = expect(&mut ana, "ack").await;
    assert_eq!(ack["id"], 2, "{ack}");
    let message = expect(&mut bob, "message").await;
    assert_eq!(message["room"], "lobby");
    assert_eq!(message["data"], data);
}

/// An HTTP/2 (or HTTP/1.1) client over TLS that trusts `ca`.
async fn h2_request(
    addr: SocketAddr,
    ca: &TestCa,
    req: http::Request<Full<Bytes>>,
) -> (http::Response<()>, String) {
    let stream = tls::connect(addr, tls::client_config(&[ca], &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the server chose h2"
    );
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        http::Response::from_parts(parts, ()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn request(method: &str, path: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(format!("https://{}{path}", tls::SERVER_NAME))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn http2_serves_the_api_and_websocket_stays_on_http1() {
    let dir = TempDir::new("h2");
    let ca = TestCa::new("h2 CA");
    dir.install(&ca.issue());
    let server = Server::start(&dir, &[]);

    let (resp, body) = h2_request(server.addr, &ca, request("GET", "/health", "")).await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // A publish over HTTP/2 reaches a wss:// session.
    let (mut ws, _) = chat(server.addr, tls::client_config(&[&ca], &[])).await;
    join(&mut ws, "news", 1).await;
    let (resp, body) = h2_request(
        server.addr,
        &ca,
        request("POST", "/api/rooms/news/messages", r#"{"data":{"n":1}}"#),
    )
    .await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200, "{body}");
    let message = expect(&mut ws, "message").await;
    assert_eq!(message["data"], json!({"n": 1}));

    // WebSocket over HTTP/2 (RFC 8441) is not offered: a GET to an
    // endpoint over HTTP/2 is told to upgrade, over HTTP/1.1.
    let (resp, body) = h2_request(server.addr, &ca, request("GET", "/ws/chat", "")).await;
    assert_eq!(resp.status(), 426, "{body}");
    assert_eq!(resp.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused_and_the_port_still_serves_tls() {
    let dir = TempDir::new("plain");
    let ca = TestCa::new("plain CA");
    dir.install(&ca.issue());
    let server = Server::start(&dir, &[]);

    // A plain-HTTP request gets no HTTP response: a TLS alert at most, and
    // the connection is closed at once rather than left hanging.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    if let Some(first) = answer.first() {
        assert_eq!(*first, 0x15, "a TLS alert record, if anything");
    }

    // An HTTP client and a ws:// client fail with an error, not a hang.
    let url = format!("http://127.0.0.1:{}/health", server.addr.port());
    let err = tokio::time::timeout(WAIT, reqwest::get(url))
        .await
        .expect("reqwest gives up in time");
    assert!(err.is_err(), "{err:?}");
    let url = format!("ws://127.0.0.1:{}/ws/chat", server.addr.port());
    let err = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the WebSocket client gives up in time");
    assert!(err.is_err());

    // The port still serves TLS.
    chat(server.addr, tls::client_config(&[&ca], &[])).await;
}

#[tokio::test]
async fn sighup_loads_a_new_certificate_for_new_connections_and_old_ones_go_on() {
    let dir = TempDir::new("sighup");
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let (old, new) = (old_ca.issue(), new_ca.issue());
    dir.install(&old);
    // Reloads on SIGHUP only: the files are not watched.
    let mut server = Server::start(&dir, &["--tls-reload-interval", "0"]);
    let both = tls::client_config(&[&old_ca, &new_ca], &[]);
    let (mut early, cert) = chat(server.addr, both.clone()).await;
    assert_eq!(cert, old.der.to_vec());

    dir.install(&new);
    // Not watched: the old certificate is still shown.
    let (_, cert) = chat(server.addr, both.clone()).await;
    assert_eq!(cert, old.der.to_vec());
    server.signal("-HUP");
    let line = server.wait_log("TLS certificate reloaded (SIGHUP)");
    assert!(line.contains(&dir.path("cert.pem")), "{line}");
    let (mut late, cert) = chat(server.addr, both).await;
    assert_eq!(cert, new.der.to_vec(), "a new connection gets the new one");
    // A client that trusts only the new CA now connects.
    chat(server.addr, tls::client_config(&[&new_ca], &[])).await;

    // The connection made with the old certificate goes on, both ways.
    join(&mut early, "room", 1).await;
    join(&mut late, "room", 1).await;
    send(
        &mut late,
        json!({"type": "publish", "room": "room", "data": "after reload", "id": 2}),
    )
    .await;
    let message = expect(&mut early, "message").await;
    assert_eq!(message["data"], "after reload");
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let dir = TempDir::new("poll");
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let (old, new) = (old_ca.issue(), new_ca.issue());
    dir.install(&old);
    let mut server = Server::start(&dir, &["--tls-reload-interval", "0.2"]);
    let both = tls::client_config(&[&old_ca, &new_ca], &[]);
    let (mut early, cert) = chat(server.addr, both.clone()).await;
    assert_eq!(cert, old.der.to_vec());

    dir.install(&new);
    server.wait_log("TLS certificate reloaded (the files changed)");
    let (_, cert) = chat(server.addr, both).await;
    assert_eq!(cert, new.der.to_vec());
    join(&mut early, "room", 1).await;
}

#[tokio::test]
async fn a_bad_new_pair_is_refused_and_the_old_certificate_stays() {
    let dir = TempDir::new("bad");
    let ca = TestCa::new("bad CA");
    let (good, other) = (ca.issue(), ca.issue());
    let (cert_path, key_path) = dir.install(&good);
    let mut server = Server::start(&dir, &["--tls-reload-interval", "0"]);
    let config = tls::client_config(&[&ca], &[]);

    // A key that is not the certificate's.
    dir.write("cert.pem", &other.chain_pem);
    server.signal("-HUP");
    let line = server.wait_log("TLS certificate not reloaded (SIGHUP)");
    assert!(
        line.contains(&format!(
            "the private key in {key_path} does not match the certificate in {cert_path}; \
             the previous certificate stays in use"
        )),
        "{line}"
    );
    let (_, cert) = chat(server.addr, config.clone()).await;
    assert_eq!(cert, good.der.to_vec(), "the old pair stays");

    // A missing file.
    std::fs::remove_file(&key_path).unwrap();
    server.signal("-HUP");
    let line = server.wait_log("TLS certificate not reloaded (SIGHUP)");
    assert!(
        line.contains(&format!("cannot read {key_path}: ")),
        "{line}"
    );
    let (_, cert) = chat(server.addr, config.clone()).await;
    assert_eq!(cert, good.der.to_vec());

    // Fixed: the matching key arrives, and the new pair is taken.
    dir.write("key.pem", &other.key_pem);
    server.signal("-HUP");
    server.wait_log("TLS certificate reloaded (SIGHUP)");
    let (_, cert) = chat(server.addr, config).await;
    assert_eq!(cert, other.der.to_vec());
}

/// `check-config` with these arguments, which must refuse them with status
/// 2; its one line of error.
fn check_refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = switchboard(&[&["check-config"], args].concat());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn check_config_loads_and_checks_the_certificate_files() {
    let dir = TempDir::new("check");
    let ca = TestCa::new("check CA");
    let (good, other) = (ca.issue(), ca.issue());
    let (cert, key) = dir.install(&good);
    let other_key = dir.write("other-key.pem", &other.key_pem);
    let missing = dir.path("missing.pem");
    let toml = dir.write("sb.toml", &format!("tls_cert = {cert:?}\n"));

    assert_eq!(
        check_refused(&["--tls-cert", &cert], &[]),
        "error: invalid setting `tls_key`: not set, but `tls_cert` is (set by the flag \
         --tls-cert); TLS needs both, or neither\n"
    );
    assert_eq!(
        check_refused(&[&toml], &[]),
        format!(
            "error: invalid setting `tls_key`: not set, but `tls_cert` is (set by the key \
             tls_cert at {toml}:1); TLS needs both, or neither\n"
        )
    );
    assert_eq!(
        check_refused(&[], &[("SWITCHBOARD_TLS_KEY", &key)]),
        "error: invalid setting `tls_cert`: not set, but `tls_key` is (set by the environment \
         variable SWITCHBOARD_TLS_KEY); TLS needs both, or neither\n"
    );
    assert_eq!(
        check_refused(&["--tls-cert", &missing, "--tls-key", &key], &[]),
        format!(
            "error: invalid setting `tls_cert`: cannot read {missing}: No such file or \
             directory (os error 2) (set by the flag --tls-cert)\n"
        )
    );
    assert_eq!(
        check_refused(&["--tls-cert", &cert, "--tls-key", &missing], &[]),
        format!(
            "error: invalid setting `tls_key`: cannot read {missing}: No such file or \
             directory (os error 2) (set by the flag --tls-key)\n"
        )
    );
    assert_eq!(
        check_refused(&["--tls-cert", &cert, "--tls-key", &other_key], &[]),
        format!(
            "error: invalid setting `tls_key`: the private key in {other_key} does not match \
             the certificate in {cert} (set by the flag --tls-key)\n"
        )
    );
    // The files given the wrong way round: a key where the certificate
    // should be, and a certificate where the key should be.
    assert_eq!(
        check_refused(&["--tls-cert", &key, "--tls-key", &key], &[]),
        format!(
            "error: invalid setting `tls_cert`: {key} holds no PEM certificate \
             (-----BEGIN CERTIFICATE-----) (set by the flag --tls-cert)\n"
        )
    );
    assert_eq!(
        check_refused(&["--tls-cert", &cert, "--tls-key", &cert], &[]),
        format!(
            "error: invalid setting `tls_key`: {cert} holds no PEM private key \
             (-----BEGIN PRIVATE KEY-----) (set by the flag --tls-key)\n"
        )
    );
    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    let e = check_refused(&["--tls-cert", &garbage, "--tls-key", &key], &[]);
    assert!(
        e.starts_with(&format!(
            "error: invalid setting `tls_cert`: {garbage} is not valid PEM: "
        )),
        "{e}"
    );

    // A good pair passes, and is shown.
    let out = switchboard(&["check-config", "--tls-cert", &cert, "--tls-key", &key])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "tls_cert = {cert:?}  # set by the flag --tls-cert"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("tls_reload_interval = 5  # default"),
        "{stdout}"
    );
    assert!(Path::new(&key).exists());
}
