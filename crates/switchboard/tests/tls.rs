//! `serve_tls` as a library user runs it: the handshake deadline that keeps
//! half-open TLS clients from piling up, a graceful shutdown that closes
//! `wss://` sessions with 1001, and the slow-consumer bound over TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard::NodeRoutes as _;
use switchboard::tls::Tls;
use switchboard::{Config, Node};
use switchboard_testkit::tls::{self, TestCa};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A certificate of a new test CA, in files of a directory removed when
/// dropped.
struct Files {
    dir: PathBuf,
    ca: TestCa,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-lib-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new(name);
        let cert = ca.issue();
        std::fs::write(dir.join("cert.pem"), &cert.chain_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
        Files { dir, ca }
    }

    fn tls(&self) -> Tls {
        Tls::load(self.dir.join("cert.pem"), self.dir.join("key.pem")).expect("a good pair")
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Server {
    addr: SocketAddr,
    node: Node,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(tls: Tls) -> Server {
    start_with(tls, Config::default()).await
}

async fn start_with(tls: Tls, config: Config) -> Server {
    let node = Node::builder()
        .config(config)
        .default_endpoints()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(switchboard::serve_tls(
        listener,
        node.router(),
        node.clone(),
        tls,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        node,
        stop,
        task,
    }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve_tls returns in time")
            .expect("server task")
            .expect("serve_tls ok");
    }
}

#[tokio::test(start_paused = true)]
async fn a_tls_handshake_that_does_not_complete_is_dropped_after_10_s() {
    let files = Files::new("handshake");
    let server = start(files.tls()).await;
    let started = tokio::time::Instant::now();
    // Connects and never says hello.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buf))
        .await
        .expect("the server drops the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    // A client that completes its handshake is served.
    let (mut ws, _) = tls::wss(
        server.addr,
        tls::client_config(&[&files.ca], &[]),
        "/ws/echo",
    )
    .await;
    ws.send_text("hello").await;
    server.stop().await;
}

/// Sending a text frame, for brevity.
trait SendText {
    async fn send_text(&mut self, text: &str);
}

impl<S> SendText for tokio_tungstenite::WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.send(Message::text(text)).await.unwrap();
        let echo = self.next().await.unwrap().unwrap();
        assert_eq!(echo, Message::text(text));
    }
}

#[tokio::test]
async fn shutdown_closes_wss_sessions_with_going_away() {
    let files = Files::new("shutdown");
    let server = start(files.tls()).await;
    let (mut ws, _) = tls::wss(
        server.addr,
        tls::client_config(&[&files.ca], &[]),
        "/ws/echo",
    )
    .await;
    ws.send_text("before").await;
    let stop = tokio::spawn(server.stop());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    // Reading on answers the close; then the server ends the connection.
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the end of the connection in time")
    {}
    stop.await.unwrap();
}

/// The next text frame as JSON, skipping control frames.
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_wss_client_that_stops_reading_is_closed_as_slow_consumer() {
    use futures_util::SinkExt;
    let files = Files::new("slow");
    let config = Config::builder()
        .outbound_queue_frames(16)
        .outbound_queue_bytes(1024 * 1024)
        .build()
        .unwrap();
    let server = start_with(files.tls(), config).await;
    let (mut slow, _) = tls::wss(
        server.addr,
        tls::client_config(&[&files.ca], &[]),
        "/ws/chat",
    )
    .await;
    assert_eq!(next_json(&mut slow).await["type"], "welcome");
    let join = serde_json::json!({"type": "join", "room": "feed", "id": 1});
    slow.send(Message::text(join.to_string())).await.unwrap();
    assert_eq!(next_json(&mut slow).await["type"], "joined");
    // Big messages fill the kernel's and rustls's buffers; the client reads
    // nothing until the server has given up on it.
    let data = serde_json::value::to_raw_value(&"p".repeat(60_000)).unwrap();
    for _ in 0..400 {
        server.node.publish_room("feed", &data).await.unwrap();
        if server.node.stats().snapshot().slow_consumers == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(server.node.stats().snapshot().slow_consumers, 1);
    // What was queued before the server gave up comes first, then 4000.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("the close in time")
        {
            Some(Ok(Message::Close(frame))) => break u16::from(frame.expect("a code").code),
            Some(Ok(_)) => {}
            other => panic!("expected frames, then a close; got {other:?}"),
        }
    };
    assert_eq!(code, 4000);
    // Reading on answers the close; then the server ends the connection.
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), slow.next())
        .await
        .expect("the end of the connection in time")
    {}
    server.stop().await;
}
