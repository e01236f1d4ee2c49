//! The server loop: accepts TCP connections, serves HTTP on each (over
//! TLS with [`serve_tls`]), and shuts the node down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::node::Node;
use crate::tls::Tls;

/// How long a client may take to send its request head (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to complete the TLS handshake, so that
/// half-open TLS clients cannot pile up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle HTTP/2 connection is pinged, and how long the answer
/// may take, so that connections to vanished clients are closed.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Serves `app` (which should include [`router`](super::router)) on
/// `listener` until `shutdown` completes, then shuts the node down
/// gracefully: the listener closes, every connection gets 1001 "going
/// away", and the call returns once they are closed or `shutdown_timeout`
/// passed.
///
/// Each TCP connection is served by hyper's HTTP/1.1 server with upgrades;
/// the peer address is recorded (for logs, loopback checks and rate limits),
/// `TCP_NODELAY` is set, and a request head must arrive within 10 s. After a
/// WebSocket upgrade the session takes the TCP stream back from hyper, so no
/// HTTP buffer stays allocated for the life of the connection (with another
/// server loop, such as `axum::serve`, everything works the same but each
/// connection keeps hyper's read buffer, 8-16 KiB).
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    node: Node,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    run(listener, app, node, None, shutdown).await
}

/// [`serve`] over TLS: `wss://` and `https://` on `listener`, with the
/// certificate of `tls` (reloadable, see [`crate::tls`]).
///
/// The TLS handshake must complete within 10 s. Clients that negotiate
/// `h2` by ALPN are served HTTP/2 (the HTTP API, `/health`, `/metrics`;
/// idle HTTP/2 connections are pinged every 20 s); the others HTTP/1.1,
/// which WebSocket upgrades need. After an upgrade the session takes the
/// TLS stream back from hyper, as [`serve`] does with the TCP stream, and
/// writes through the connection's task (the node's flushers write only
/// to plain TCP sockets).
pub async fn serve_tls<F>(
    listener: TcpListener,
    app: Router,
    node: Node,
    tls: Tls,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    run(listener, app, node, Some(tls), shutdown).await
}

async fn run<F>(
    listener: TcpListener,
    app: Router,
    node: Node,
    tls: Option<Tls>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    // HTTP connections (not yet upgraded) are told to finish their current
    // request and close; upgraded ones belong to sessions, which the node
    // closes with 1001.
    let closing = CancellationToken::new();
    let http_conns = tokio_util::task::TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(lowat) = node.config().tcp_notsent_lowat {
            // Bounds what a stalled client pins in the kernel, so that its
            // outbound queue, not the socket, absorbs a backlog.
            let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(lowat);
        }
        let closing = closing.clone();
        match &tls {
            None => {
                http_conns.spawn(http1(tcp, peer, app.clone(), closing));
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
                let app = app.clone();
                http_conns.spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                return tracing::debug!(%peer, "TLS handshake timed out");
                            }
                        },
                        () = closing.cancelled() => return,
                    };
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        http2(stream, peer, app, closing).await;
                    } else {
                        http1(stream, peer, app, closing).await;
                    }
                });
            }
        }
    }
    drop(listener);
    node.begin_shutdown();
    closing.cancel();
    http_conns.close();
    let timeout = node.config().shutdown_timeout;
    if tokio::time::timeout(timeout, http_conns.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within the shutdown timeout");
    }
    if !node.shutdown().await {
        tracing::warn!("some connections did not close within the shutdown timeout");
    }
    Ok(())
}

/// The hyper service for one connection: `app`, with the peer's address
/// in every request's extensions.
fn service(
    app: Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    tower::util::MapRequest<
        Router,
        impl FnMut(http::Request<hyper::body::Incoming>) -> http::Request<hyper::body::Incoming> + Clone,
    >,
> {
    let svc = app.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    });
    TowerToHyperService::new(svc)
}

/// Serves HTTP/1.1 with upgrades on `io` (a TCP or TLS stream, which the
/// upgrade handler takes back by its type).
fn http1<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    closing: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service(app, peer))
        .with_upgrades();
    drive(conn, peer, closing, |c| c.graceful_shutdown())
}

/// Serves HTTP/2 on a TLS stream.
fn http2(
    io: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    app: Router,
    closing: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE)
        .serve_connection(TokioIo::new(io), service(app, peer));
    drive(conn, peer, closing, |c| c.graceful_shutdown())
}

/// Runs one HTTP connection to its end, or, once `closing` is cancelled,
/// lets it finish its current requests and close.
async fn drive<C, E>(
    conn: C,
    peer: SocketAddr,
    closing: CancellationToken,
    graceful_shutdown: fn(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = closing.cancelled() => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}
