//! The `switchboard` server: the engine with its standard endpoints on one
//! port, configured from the command line, the environment and an optional
//! TOML file (in that order of precedence). Its subcommands check the
//! settings (`check-config`), print a file of defaults (`print-config`) and
//! mint development tokens (`token`).

#![forbid(unsafe_code)]

/// jemalloc packs the many small per-connection allocations tighter than
/// glibc's malloc and returns freed memory to the system on its own.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod assets;
mod settings;
mod token;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchboard::NodeRoutes as _;

use anyhow::Context;
use switchboard::broker::memory::MemoryBroker;
use switchboard::node::NodeBuilder;
use switchboard::tls::Tls;
use switchboard::{Endpoint, Node};
use switchboard_redis::RedisBroker;

use settings::{Action, BrokerChoice, Env, Invocation, LoadError};

/// Installs the SIGINT and SIGTERM handlers now (so that a signal that
/// arrives right after the server says it is listening is not fatal) and
/// returns a future that completes on the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let wait = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
    };
    #[cfg(not(unix))]
    let wait = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        wait.await;
        tracing::info!("shutdown signal received; closing connections with 1001 (going away)");
    })
}

/// Reloads the TLS certificate and key on SIGHUP and, unless `interval` is
/// zero, whenever the files change; returns the task that does it.
fn reload_tls(tls: &Tls, interval: Duration) -> std::io::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let tls = tls.clone();
    Ok(tokio::spawn(async move {
        let watch = async {
            if interval.is_zero() {
                std::future::pending().await
            } else {
                tls.clone().watch(interval).await
            }
        };
        let mut watch = std::pin::pin!(watch);
        loop {
            #[cfg(unix)]
            tokio::select! {
                _ = hangup.recv() => { tls.reload_and_log("SIGHUP"); }
                () = &mut watch => {}
            }
            #[cfg(not(unix))]
            watch.as_mut().await;
        }
    }))
}

/// Pending connections the kernel queues before `accept` (the default of
/// 128 overflows when thousands of clients reconnect at once after a
/// restart; the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (host:port, names resolved) with a deep accept queue.
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(resolved)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// The exit status of a configuration error (as for a bad flag).
const CONFIG_ERROR: u8 = 2;

/// Prints `e` on one line (its causes after colons, never a backtrace) and
/// returns `status`.
fn fail(e: impl std::fmt::Display, status: u8) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(status)
}

#[tokio::main]
async fn main() -> ExitCode {
    let invocation = match settings::load(std::env::args_os().collect(), &Env::from_process()) {
        Ok(invocation) => invocation,
        Err(LoadError::Flags(e)) => e.exit(),
        Err(e @ LoadError::Invalid(_)) => return fail(e, CONFIG_ERROR),
    };
    match &invocation.action {
        Action::PrintConfig => {
            print!("{}", settings::print::example_file());
            ExitCode::SUCCESS
        }
        Action::Token(claims) => {
            match token::mint(&invocation.args, claims, std::time::SystemTime::now()) {
                Ok(jwt) => {
                    println!("{jwt}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("{e:#}"), CONFIG_ERROR),
            }
        }
        Action::CheckConfig => check(&invocation),
        Action::Serve => serve(invocation).await,
    }
}

/// The node as the settings describe it, but for its broker, which
/// [`serve`] connects to and [`check`] does not.
struct Plan {
    builder: NodeBuilder,
    broker: BrokerChoice,
    /// The certificate and key, when the port speaks TLS.
    tls: Option<Tls>,
}

/// Everything the settings decide that can be checked without the network.
fn plan(args: &settings::Args) -> anyhow::Result<Plan> {
    let config = args.engine_config()?;
    let broker = args.broker_choice()?;
    if let BrokerChoice::Redis(_) = broker {
        args.redis_config()?
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid Redis broker settings: {e}"))?;
    }
    let tls = args.tls()?;
    let specs = settings::endpoints::from_file(args.config.as_deref())?;
    let mut builder = Node::builder().config(config);
    let hooks = args.hooks.hooks(args.authenticator()?)?;
    if let Some(events) = hooks.events {
        builder = builder.events(events);
    }
    if specs.is_empty() {
        builder = builder.default_endpoints();
        if let Some(chat) = hooks.chat {
            builder = builder.endpoint(Endpoint::chat("/ws/chat").hooks(chat));
        }
    } else {
        for spec in &specs {
            builder = builder.endpoint(spec.build(hooks.each.as_ref())?);
        }
    }
    match (hooks.connect, hooks.jwt) {
        (Some(connect), _) => builder = builder.authenticator(connect),
        (None, Some(jwt)) => builder = builder.authenticator(jwt),
        (None, None) => {}
    }
    Ok(Plan {
        builder,
        broker,
        tls,
    })
}

/// `check-config`: builds the node as the server would, without listening
/// or contacting the broker, and prints the effective settings.
fn check(invocation: &Invocation) -> ExitCode {
    for warning in &invocation.warnings {
        eprintln!("warning: {warning}");
    }
    let args = &invocation.args;
    let node = plan(args).and_then(|plan| {
        let memory = MemoryBroker::with_config(args.memory_config()?);
        Ok(plan.builder.broker(memory).build()?)
    });
    match node {
        Ok(node) => {
            let endpoints: Vec<String> = node
                .endpoints()
                .iter()
                .map(|e| e.path().to_string())
                .collect();
            print!("{}", settings::print::effective(invocation, &endpoints));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}"), CONFIG_ERROR),
    }
}

/// Runs the server until SIGINT or SIGTERM. A setting that cannot work
/// exits with [`CONFIG_ERROR`]; a failure to reach the broker or to listen
/// with 1.
async fn serve(invocation: Invocation) -> ExitCode {
    invocation.args.log.init();
    for warning in &invocation.warnings {
        tracing::warn!("{warning}");
    }
    let plan = match plan(&invocation.args) {
        Ok(plan) => plan,
        Err(e) => return fail(format!("{e:#}"), CONFIG_ERROR),
    };
    match run(&invocation.args, plan).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}"), 1),
    }
}

/// The server's life once its settings are known to be good.
async fn run(args: &settings::Args, plan: Plan) -> anyhow::Result<()> {
    let Plan {
        mut builder,
        broker: choice,
        tls,
    } = plan;
    if args.jwt_secret.is_none()
        && args.jwt_public_key.is_none()
        && args.hooks.hook_connect_url.is_none()
    {
        tracing::warn!(
            "no credentials configured: every WebSocket client is accepted as a generated \
             guest user (set SWITCHBOARD_JWT_SECRET, --jwt-public-key or \
             --hook-connect-url to require credentials)"
        );
    }
    let mut redis = None;
    match &choice {
        BrokerChoice::Memory => {
            builder = builder.broker(MemoryBroker::with_config(args.memory_config()?));
        }
        BrokerChoice::Redis(url) => {
            let broker = RedisBroker::connect(url, args.redis_config()?)
                .await
                .with_context(|| format!("cannot use the broker {}", choice.describe()))?;
            // Shared: the node holds one handle, `main` keeps the other to
            // close the broker after the node shut down.
            let broker = Arc::new(broker);
            builder = builder.broker(broker.clone());
            redis = Some(broker);
        }
    }
    let node = builder.build()?;
    tracing::info!(
        node = node.id(),
        history_count = args.history_count,
        history_age_s = args.history_age.as_secs_f64(),
        "broker: {}",
        choice.describe()
    );
    if node.config().api_key.is_none() {
        tracing::warn!(
            "no API key configured: the HTTP publish API accepts only loopback callers \
             (set SWITCHBOARD_API_KEY to open it to your backends)"
        );
    }

    let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
    // Metrics on an address of their own, when set: served until the node
    // has shut down, so that its last moments are scraped too.
    let mut metrics = None;
    let routes = match args.metrics_listen.as_deref().filter(|a| !a.is_empty()) {
        Some(addr) => {
            let listener = listen(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
            tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
            metrics = Some(tokio::spawn(switchboard::http::serve_metrics(
                listener,
                node.clone(),
                std::future::pending(),
            )));
            switchboard::http::router_without_metrics(&node)
        }
        None => node.router(),
    };
    // Before the server says it listens, so that a SIGHUP sent from then on
    // reloads rather than ends the process.
    let reloads = match &tls {
        None => None,
        Some(tls) => {
            let interval = args.tls.tls_reload_interval;
            tracing::info!(
                cert = %tls.cert_path().display(),
                key = %tls.key_path().display(),
                "TLS on (h2 and http/1.1); the pair is reloaded on SIGHUP{}",
                if interval.is_zero() {
                    String::new()
                } else {
                    format!(" and when the files change (checked every {interval:?})")
                }
            );
            Some(reload_tls(tls, interval).context("cannot install the SIGHUP handler")?)
        }
    };
    let addr = format!("{}:{}", args.host, args.port);
    let listener = listen(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    let paths: Vec<&str> = node.endpoints().iter().map(|e| e.path()).collect();
    tracing::info!(
        "switchboard {} listening on {}://{local} (WebSocket endpoints: {})",
        env!("CARGO_PKG_VERSION"),
        if tls.is_some() { "https" } else { "http" },
        paths.join(", ")
    );
    let app = switchboard::http::refuse_stray_upgrades(routes.merge(assets::routes()), &node);
    let served = match tls {
        None => switchboard::serve(listener, app, node, shutdown).await,
        Some(tls) => switchboard::serve_tls(listener, app, node, tls, shutdown).await,
    };
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    if let Some(task) = metrics {
        task.abort();
    }
    served?;
    if let Some(redis) = redis {
        // The node has closed its connections: take its presence entries out
        // of Redis now rather than letting them expire.
        if let Err(e) = redis.close().await {
            tracing::warn!(error = %e, "could not remove this node's presence entries from redis");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
