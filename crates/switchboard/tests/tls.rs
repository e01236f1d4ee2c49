//! `serve_tls` as a library user runs it: the handshake deadline that keeps
//! half-open TLS clients from piling up, and a graceful shutdown that
//! closes `wss://` sessions with 1001.

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
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(tls: Tls) -> Server {
    let node = Node::builder()
        .config(Config::default())
        .default_endpoints()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(switchboard::serve_tls(
        listener,
        node.router(),
        node,
        tls,
        async move {
            let _ = stopped.await;
        },
    ));
    Server { addr, stop, task }
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
