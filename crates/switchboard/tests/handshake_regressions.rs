//! Upgrade requests that once got the wrong answer, sent byte for byte to a
//! real server (`switchboard::serve`), each with the status it must get.

mod common;

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a raw request head and returns the response's status line.
async fn status_line(server: &TestServer, head: &[u8]) -> String {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(head).await.expect("write the request");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read the response");
        assert!(n > 0, "closed without a response");
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    text.split("\r\n").next().unwrap_or_default().to_string()
}

/// RFC 6455 section 4.1: the handshake is a GET. The router serves HEAD on
/// GET routes, and a HEAD with every upgrade header used to get `101` and
/// start a session.
#[tokio::test]
async fn a_head_request_with_upgrade_headers_is_not_upgraded() {
    let server = TestServer::start_default().await;
    let head = b"HEAD /ws/echo HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let status = status_line(&server, head).await;
    assert!(status.starts_with("HTTP/1.1 426 "), "{status}");
    assert_eq!(server.node.stats().snapshot().connections_total, 0);

    // The same request by GET is upgraded.
    let get = [b"GET".as_slice(), &head[4..]].concat();
    let status = status_line(&server, &get).await;
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
}

/// An `Origin` that is not ASCII used to be read as no `Origin` at all,
/// which the default policy lets in: it must be refused like any origin the
/// policy does not allow.
#[tokio::test]
async fn an_origin_that_is_not_ascii_is_refused() {
    let server = TestServer::start_default().await;
    let head = b"GET /ws/chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25zZQ==\r\n\
                 Sec-WebSocket-Protocol: chat, switchboard.v1\r\nHost: localhost:3000\r\n\
                 Origin: h\x83tp://localhUUUUUUU\r\n\r\n";
    let status = status_line(&server, head).await;
    assert!(status.starts_with("HTTP/1.1 403 "), "{status}");
    assert_eq!(server.node.stats().snapshot().connections_total, 0);

    // Without the Origin, the same request is upgraded.
    let text = String::from_utf8_lossy(head);
    let (without, _) = text.split_once("Origin:").expect("an Origin line");
    let status = status_line(&server, format!("{without}\r\n").as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
}
