//! The `switchboard` server: the engine with its standard endpoints on one
//! port, configured from the command line and the environment.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchboard::{Config, Node};
use tracing_subscriber::EnvFilter;

/// Realtime WebSocket server: endpoints, rooms, user push and an HTTP publish
/// API on one port.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about)]
struct Args {
    /// Address to listen on. Use 0.0.0.0 to accept connections from other
    /// machines.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,

    /// Key that HTTP API callers must send as `Authorization: Bearer <key>`.
    /// Without it, the API accepts only loopback callers.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Seconds between heartbeat pings (20 suits mobile-heavy apps).
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL", default_value_t = 30.0)]
    heartbeat_interval: f64,

    /// Seconds a ping may wait for its pong before the connection is dropped.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TIMEOUT", default_value_t = 10.0)]
    heartbeat_timeout: f64,

    /// Largest message accepted from a client, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024)]
    max_message_size: usize,

    /// Frames queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE", default_value_t = 512)]
    outbound_queue: usize,

    /// Seconds a graceful shutdown waits for connections to close.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    shutdown_timeout: f64,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{name} must be a positive number"))
}

fn config(args: &Args) -> anyhow::Result<Config> {
    let mut b = Config::builder()
        .heartbeat_interval(seconds("heartbeat-interval", args.heartbeat_interval)?)
        .heartbeat_timeout(seconds("heartbeat-timeout", args.heartbeat_timeout)?)
        .max_message_size(args.max_message_size)
        .outbound_queue_frames(args.outbound_queue)
        .shutdown_timeout(seconds("shutdown-timeout", args.shutdown_timeout)?);
    if let Some(key) = args.api_key.as_deref().filter(|k| !k.is_empty()) {
        b = b.api_key(key);
    }
    Ok(b.build()?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; closing connections with 1001 (going away)");
}

const INDEX: &str = include_str!("index.html");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = config(&args)?;
    let node = Node::builder().config(config).default_endpoints().build()?;

    tracing::warn!(
        "no credentials configured: every WebSocket client is accepted as a generated guest user"
    );
    if node.config().api_key.is_none() {
        tracing::warn!(
            "no API key configured: the HTTP publish API accepts only loopback callers \
             (set SWITCHBOARD_API_KEY to open it to your backends)"
        );
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(
        "switchboard {} listening on http://{local} (WebSocket endpoints: {})",
        env!("CARGO_PKG_VERSION"),
        node.endpoints()
            .iter()
            .map(|e| e.path())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let app = node.router().route(
        "/",
        switchboard::axum::routing::get(|| async { switchboard::axum::response::Html(INDEX) }),
    );
    switchboard::serve(listener, app, node, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
