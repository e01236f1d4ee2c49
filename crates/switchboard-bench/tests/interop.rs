//! The lean client against a real WebSocket implementation
//! (tokio-tungstenite as the server), and against a scripted server for the
//! corner cases: pings, fragments, close codes, refused handshakes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_bench::target::Target;
use switchboard_bench::ws::{ConnectError, Msg, OP_PING, OP_TEXT, WsClient, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn target(port: u16, path: &str) -> Target {
    Target::parse(&format!("ws://127.0.0.1:{port}{path}")).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn echoes_through_tungstenite() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        ws.send(Message::Ping(b"hb".to_vec().into())).await.unwrap();
        let mut pongs = 0;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(_) | Message::Binary(_) => ws.send(m).await.unwrap(),
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"hb");
                    pongs += 1;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        pongs
    });
    let mut c = WsClient::connect(&target(port, "/ws/echo"), None, Duration::from_secs(5))
        .await
        .unwrap();
    for size in [10usize, 125, 126, 1000, 70_000] {
        let payload = vec![b'a'; size];
        c.send_text(&payload).await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Msg::Text);
        assert_eq!(c.payload(), &payload[..]);
    }
    c.close(Duration::from_secs(2)).await;
    assert_eq!(server.await.unwrap(), 1, "the ping was answered once");
}

async fn scripted(
    frames: Vec<u8>,
    status: &'static str,
) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            got += s.read(&mut buf[got..]).await.unwrap();
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"
        );
        // Head and the first frames in one write, as servers often do.
        let mut out = head.into_bytes();
        out.extend_from_slice(&frames);
        s.write_all(&out).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut rest)).await;
        rest
    });
    (port, h)
}

#[tokio::test(flavor = "current_thread")]
async fn pings_fragments_and_close_codes() {
    let mut f = Vec::new();
    encode_frame(&mut f, OP_TEXT, b"{\"type\":\"welcome\"}", None);
    encode_frame(&mut f, OP_PING, b"p1", None);
    // "hello world" in three fragments, with a ping in the middle.
    f.extend_from_slice(&[0x01, 5]);
    f.extend_from_slice(b"hello");
    encode_frame(&mut f, OP_PING, b"p2", None);
    f.extend_from_slice(&[0x00, 1, b' ']);
    f.extend_from_slice(&[0x80, 5]);
    f.extend_from_slice(b"world");
    f.extend_from_slice(&[0x88, 2, 0x0F, 0xA0]); // close 4000
    let (port, server) = scripted(f, "101 Switching Protocols").await;
    let mut c = WsClient::connect(&target(port, "/"), None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(c.recv().await.unwrap(), Msg::Text);
    assert_eq!(c.payload(), b"{\"type\":\"welcome\"}");
    assert_eq!(c.recv().await.unwrap(), Msg::Text);
    assert_eq!(c.payload(), b"hello world");
    assert_eq!(c.recv().await.unwrap(), Msg::Close(Some(4000)));
    drop(c);
    let written = server.await.unwrap();
    // Masked pongs came back (0x8A, masked length 2): at least one, for the
    // latest ping, before the close was read.
    let pongs = written.windows(2).filter(|w| w == &[0x8A, 0x82]).count();
    assert!(pongs >= 1, "{written:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn refused_handshake_reports_the_status() {
    let (port, _server) = scripted(Vec::new(), "401 Unauthorized").await;
    match WsClient::connect(&target(port, "/"), None, Duration::from_secs(5)).await {
        Err(e @ ConnectError::Status(401)) => assert_eq!(e.label(), "http_401"),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn eof_without_close_frame() {
    let (port, _server) = scripted(Vec::new(), "101 Switching Protocols").await;
    let mut c = WsClient::connect(&target(port, "/"), None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(c.recv().await.unwrap(), Msg::Eof);
}
