//! The `switchboard` server: the engine with its standard endpoints on one
//! port, configured from the command line, the environment and an optional
//! TOML file (in that order of precedence).

mod settings;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use switchboard::Node;
use tracing_subscriber::EnvFilter;

use settings::Args;

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
    let args = Args::parse_from(settings::args_with_config_file()?);
    let config = args.engine_config()?;
    let mut builder = Node::builder().config(config).default_endpoints();
    match args.authenticator()? {
        Some(jwt) => builder = builder.authenticator(jwt),
        None => tracing::warn!(
            "no credentials configured: every WebSocket client is accepted as a generated \
             guest user (set SWITCHBOARD_JWT_SECRET or --jwt-public-key to require tokens)"
        ),
    }
    let node = builder.build()?;
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
    let paths: Vec<&str> = node.endpoints().iter().map(|e| e.path()).collect();
    tracing::info!(
        "switchboard {} listening on http://{local} (WebSocket endpoints: {})",
        env!("CARGO_PKG_VERSION"),
        paths.join(", ")
    );
    let app = node.router().route(
        "/",
        switchboard::axum::routing::get(|| async { switchboard::axum::response::Html(INDEX) }),
    );
    switchboard::serve(listener, app, node, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
