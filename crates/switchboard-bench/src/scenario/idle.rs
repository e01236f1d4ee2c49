//! `idle`: open N connections, hold them, and measure the server's resident
//! memory per connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::{
    Output, Protocol, SubState, check_bound, check_server_alive, open_subscribers, server_rss,
};
use crate::target::{Scheme, Target};
use crate::util::round;

/// Parameters of `idle`.
#[derive(Clone, Debug, clap::Args)]
pub struct IdleArgs {
    /// WebSocket URL (loopback only), e.g. ws://127.0.0.1:3000/ws/chat.
    #[arg(long)]
    pub url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// PID of the server, to read its RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Protocol: `switchboard` reads the welcome frame (and joins with
    /// --join); `raw` only connects.
    #[arg(long, value_enum, default_value_t = Protocol::Switchboard)]
    pub protocol: Protocol,
    /// Room every connection joins (Switchboard protocol only).
    #[arg(long)]
    pub join: Option<String>,
    /// Handshakes in flight at once (keep it under the server's listen
    /// backlog, often 128, to avoid SYN retries).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Wait after the last connection opened before reading RSS.
    #[arg(long, default_value = "2s", value_parser = crate::util::parse_duration)]
    pub settle: Duration,
    /// Open/close cycles (more than 1 shows whether memory is reused or
    /// leaks).
    #[arg(long, default_value_t = 1)]
    pub cycles: u32,
    /// How long to keep holding the connections after the measurement.
    #[arg(long, default_value = "0s", value_parser = crate::util::parse_duration)]
    pub hold: Duration,
}

/// Runs `idle`.
pub async fn run(a: IdleArgs) -> Result<Output, (serde_json::Value, String)> {
    let params = json!({
        "url": a.url, "connections": a.connections, "protocol": a.protocol,
        "join": a.join, "cycles": a.cycles, "settle_s": a.settle.as_secs_f64(), "hold_s": a.hold.as_secs_f64(),
    });
    let fail = |m: String| (params.clone(), m);
    let target = Target::parse(&a.url).map_err(fail)?;
    if target.scheme != Scheme::Ws {
        return Err(fail("--url must be a ws:// URL".into()));
    }
    check_bound(
        "connections",
        a.connections as f64,
        1.0,
        super::MAX_CONNECTIONS as f64,
    )
    .map_err(fail)?;
    check_bound("concurrency", a.concurrency as f64, 1.0, 4096.0).map_err(fail)?;
    check_bound("cycles", f64::from(a.cycles), 1.0, 20.0).map_err(fail)?;
    if a.settle > super::MAX_DURATION || a.hold > super::MAX_DURATION {
        return Err(fail("--settle and --hold must be at most 600s".into()));
    }
    let pid = a.server_pid;
    check_server_alive(pid).map_err(fail)?;
    let join = if a.protocol == Protocol::Switchboard {
        a.join.as_deref()
    } else {
        None
    };

    let rss_before = server_rss(pid);
    let tool_rss_before = crate::procfs::rss_kib(None).ok();
    let st = Rc::new(RefCell::new(SubState::default()));
    eprintln!(
        "idle: opening {} connections to {}",
        a.connections,
        target.url()
    );
    let opened =
        open_subscribers(&target, a.connections, a.concurrency, a.protocol, join, &st).await;
    let failed: u64 = opened.failures.values().sum();
    if failed > 0 {
        for t in &opened.tasks {
            t.abort();
        }
        return Err(fail(format!(
            "{failed} of {} connections failed to open ({:?}); first error: {}",
            a.connections,
            opened.failures,
            opened.first_error.unwrap_or_default()
        )));
    }
    tokio::time::sleep(a.settle).await;
    check_server_alive(pid).map_err(fail)?;
    let rss_after = server_rss(pid);
    let tool_rss_after = crate::procfs::rss_kib(None).ok();
    tokio::time::sleep(a.hold).await;
    let (alive, closed) = {
        let s = st.borrow();
        (s.alive, s.closed.clone())
    };
    for t in &opened.tasks {
        t.abort();
    }
    tokio::time::sleep(a.settle).await;
    let rss_after_close = server_rss(pid);

    // Further open/close cycles on the same server: RSS that keeps growing
    // from cycle to cycle is a leak, not allocator retention.
    let mut cycles =
        vec![json!({"rss_kib_open": rss_after, "rss_kib_after_close": rss_after_close})];
    for c in 1..a.cycles {
        let st = Rc::new(RefCell::new(SubState::default()));
        let again =
            open_subscribers(&target, a.connections, a.concurrency, a.protocol, join, &st).await;
        let failed: u64 = again.failures.values().sum();
        tokio::time::sleep(a.settle).await;
        let open = server_rss(pid);
        for t in &again.tasks {
            t.abort();
        }
        tokio::time::sleep(a.settle).await;
        check_server_alive(pid).map_err(fail)?;
        let closed_rss = server_rss(pid);
        eprintln!(
            "idle: cycle {}: RSS {open:?} KiB open, {closed_rss:?} KiB closed",
            c + 1
        );
        cycles.push(
            json!({"rss_kib_open": open, "rss_kib_after_close": closed_rss, "failed": failed}),
        );
    }

    let n = a.connections as f64;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(after)) => Some(round((after as f64 - b as f64) / n, 2)),
        _ => None,
    };
    let tool_per_conn = match (tool_rss_before, tool_rss_after) {
        (Some(b), Some(after)) => Some(round((after as f64 - b as f64) / n, 2)),
        _ => None,
    };
    let open_s = opened.elapsed.as_secs_f64();
    let ol = opened.open_latency.summary();
    let results = json!({
        "connections": a.connections,
        "open_s": round(open_s, 3),
        "open_rate_per_s": round(n / open_s.max(1e-9), 1),
        "open_ms": ol,
        "still_open_after_hold": alive,
        "closed_by_server": closed,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
        "server_rss_kib_after_close": rss_after_close,
        "cycles": cycles,
        "rss_kib_per_conn": per_conn,
        "tool_rss_kib_per_conn": tool_per_conn,
        "tool_cpu_pct": null,
    });
    let human = vec![
        format!(
            "idle: {} connections opened in {:.2}s ({:.0}/s), open p99 {:.1} ms",
            a.connections,
            open_s,
            n / open_s.max(1e-9),
            ol.p99_ms
        ),
        format!(
            "server RSS: {} KiB before, {} KiB with connections, {} KiB after closing them",
            super::fmt_opt(rss_before.map(|v| v as f64), 0),
            super::fmt_opt(rss_after.map(|v| v as f64), 0),
            super::fmt_opt(rss_after_close.map(|v| v as f64), 0)
        ),
        format!(
            "=> {} KiB per connection (server); tool {} KiB per connection",
            super::fmt_opt(per_conn, 2),
            super::fmt_opt(tool_per_conn, 2)
        ),
    ];
    let mut human = human;
    if cycles.len() > 1 {
        let closed: Vec<String> = cycles
            .iter()
            .map(|c| c["rss_kib_after_close"].to_string())
            .collect();
        human.push(format!(
            "server RSS after closing, per cycle: {} KiB",
            closed.join(", ")
        ));
    }
    if alive < a.connections as u64 {
        human.push(format!(
            "WARNING: {} connections were closed by the server while held: {closed:?}",
            a.connections as u64 - alive
        ));
    }
    Ok(Output {
        scenario: "idle",
        params,
        results,
        human,
    })
}
