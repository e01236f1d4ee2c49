//! Upgrade-level abuse on one node: thousands of TCP connections that
//! send nothing, and connections that send a request head one byte a
//! second. The server allows 10 seconds for a request head; every such
//! connection must be closed by then, whatever it does, and memory must
//! come back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Options, Outcome};
use crate::cluster::Node;
use crate::stream::{quantile, secs};

/// The server's allowance for a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How much later than the allowance a connection may be closed.
const SLACK: Duration = Duration::from_secs(3);

/// Slow-header connections, next to the idle ones.
const SLOW: usize = 100;

/// Runs the scenario with `opts.clients` idle connections.
pub async fn run(opts: &Options) -> Outcome {
    match run_inner(opts).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed("idle-sockets", why),
    }
}

/// How one abusive connection ended.
struct Ended {
    /// From connect to the server closing it; `None` when it was still
    /// open at the deadline.
    after: Option<Duration>,
    /// Whether the connect itself failed.
    refused: bool,
}

async fn abuse(port: u16, slow: bool, connected: Arc<tokio::sync::Barrier>) -> Ended {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)).await else {
        connected.wait().await;
        return Ended {
            after: None,
            refused: true,
        };
    };
    connected.wait().await;
    let start = Instant::now();
    let deadline = HEAD_TIMEOUT + SLACK + Duration::from_secs(5);
    let head = b"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
    let closed = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 512];
        if slow {
            for byte in head.iter().cycle() {
                if socket.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::select! {
                    read = socket.read(&mut buf) => {
                        // A response (408, 400) or the end: either way,
                        // the server is done with it; read to the end.
                        if matches!(read, Ok(0) | Err(_)) {
                            return;
                        }
                        while let Ok(n) = socket.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                        }
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        } else {
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        }
    })
    .await;
    Ended {
        after: closed.is_ok().then(|| start.elapsed()),
        refused: false,
    }
}

async fn run_inner(opts: &Options) -> Result<Outcome, String> {
    let node = Node::start(&opts.binary, &["--port".into(), "0".into()]).await?;
    let idle = opts.clients;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = node.rss_kib();
    let connected = Arc::new(tokio::sync::Barrier::new(idle + SLOW + 1));
    let mut tasks = Vec::new();
    for i in 0..idle + SLOW {
        tasks.push(tokio::spawn(abuse(node.port, i >= idle, connected.clone())));
    }
    connected.wait().await;
    // Held: all of them connected; give the node a moment to account them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_held = node.rss_kib();
    let mut peak = rss_held;
    let mut ended = Vec::new();
    let mut pending = tasks;
    while !pending.is_empty() {
        peak = peak.max(node.rss_kib());
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            ended.push(t.await.map_err(|e| e.to_string())?);
        }
        pending = rest;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = node.rss_kib();
    let refused = ended.iter().filter(|e| e.refused).count();
    let still_open = ended
        .iter()
        .filter(|e| !e.refused && e.after.is_none_or(|d| d > HEAD_TIMEOUT + SLACK))
        .count();
    let mut times: Vec<Duration> = ended.iter().filter_map(|e| e.after).collect();
    let p50 = quantile(&mut times, 0.5);
    let max = times.last().copied().unwrap_or_default();
    let per_socket = (rss_held.saturating_sub(rss_before)) as f64 * 1024.0 / (idle + SLOW) as f64;
    let line = format!(
        "idle-sockets: held={} (idle={idle} slow_headers={SLOW}) refused={refused} \
         rss_before={}KiB held={}KiB peak={}KiB after={}KiB per_socket={:.0}B \
         closed_after_p50={} max={} open_past_{}s={still_open}",
        idle + SLOW - refused,
        rss_before,
        rss_held,
        peak,
        rss_after,
        per_socket,
        secs(p50),
        secs(max),
        (HEAD_TIMEOUT + SLACK).as_secs(),
    );
    let checks = vec![
        (refused == 0, format!("{refused} connects refused")),
        (
            still_open == 0,
            format!("{still_open} connections outlived the request-head timeout"),
        ),
    ];
    Ok(Outcome::new(line, &checks))
}
