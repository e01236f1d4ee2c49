//! `echo`: closed-loop round trips; each connection sends one message and
//! waits for it to come back.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Output, check_bound, check_server_alive, extract_seq_ts, write_payload};
use crate::procfs::Meter;
use crate::stats::Latency;
use crate::target::{Scheme, Target};
use crate::util::round;
use crate::ws::{Msg, WsClient};

/// Parameters of `echo`.
#[derive(Clone, Debug, clap::Args)]
pub struct EchoArgs {
    /// Echo endpoint URL (loopback only), e.g. ws://127.0.0.1:3000/ws/echo.
    #[arg(long)]
    pub url: String,
    /// Concurrent connections, each with one message in flight.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Measured window.
    #[arg(long, default_value = "10s", value_parser = crate::util::parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before the window.
    #[arg(long, default_value = "1s", value_parser = crate::util::parse_duration)]
    pub warmup: Duration,
    /// PID of the server, for its CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
}

#[derive(Default)]
struct EchoState {
    hist: Latency,
    count: u64,
    errors: std::collections::BTreeMap<String, u64>,
}

/// Runs `echo`.
pub async fn run(a: EchoArgs) -> Result<Output, (serde_json::Value, String)> {
    let params = json!({
        "url": a.url, "connections": a.connections, "duration_s": a.duration.as_secs_f64(),
        "warmup_s": a.warmup.as_secs_f64(), "payload_bytes": a.payload_bytes,
    });
    let fail = |m: String| (params.clone(), m);
    let target = Target::parse(&a.url).map_err(fail)?;
    if target.scheme != Scheme::Ws {
        return Err(fail("--url must be a ws:// URL".into()));
    }
    check_bound("connections", a.connections as f64, 1.0, 10_000.0).map_err(fail)?;
    check_bound("duration", a.duration.as_secs_f64(), 0.1, 600.0).map_err(fail)?;
    check_bound("warmup", a.warmup.as_secs_f64(), 0.0, 60.0).map_err(fail)?;
    check_bound("payload-bytes", a.payload_bytes as f64, 1.0, 65_536.0).map_err(fail)?;
    let pid = a.server_pid;
    check_server_alive(pid).map_err(fail)?;

    let mut conns = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let src = crate::net::source_ip(&target.addr, i as u64);
        let ws = WsClient::connect(&target, src, Duration::from_secs(10))
            .await
            .map_err(|e| fail(format!("connection {i} failed to open: {e}")))?;
        conns.push(ws);
    }
    let st = Rc::new(RefCell::new(EchoState::default()));
    let stop = Rc::new(Cell::new(false));
    let mut tasks = Vec::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let st = st.clone();
        let stop = stop.clone();
        let size = a.payload_bytes;
        tasks.push(tokio::task::spawn_local(async move {
            let mut buf = Vec::with_capacity(size + 64);
            let mut seq = (i as u64) << 32;
            while !stop.get() {
                seq += 1;
                let sent_at = Instant::now();
                write_payload(&mut buf, seq, crate::clock::to_ns(sent_at), size);
                if let Err(e) = ws.send_text(&buf).await {
                    *st.borrow_mut()
                        .errors
                        .entry(crate::net::error_kind(&e))
                        .or_default() += 1;
                    return;
                }
                loop {
                    let r = ws.recv().await;
                    match r {
                        Ok(Msg::Text | Msg::Binary) => {
                            if extract_seq_ts(ws.payload()).is_some_and(|(s, _)| s == seq) {
                                let mut s = st.borrow_mut();
                                s.count += 1;
                                s.hist.record_ns(sent_at.elapsed().as_nanos() as u64);
                                break;
                            }
                        }
                        _ => {
                            *st.borrow_mut()
                                .errors
                                .entry(super::end_label(&r))
                                .or_default() += 1;
                            return;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(a.warmup).await;
    let (count0, meter) = {
        let mut s = st.borrow_mut();
        s.hist.reset();
        (s.count, Meter::start(pid))
    };
    tokio::time::sleep(a.duration).await;
    let usage = meter.stop(pid);
    stop.set(true);
    let (count, lat, errors) = {
        let s = st.borrow();
        (s.count - count0, s.hist.summary(), s.errors.clone())
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for t in &tasks {
        t.abort();
    }
    check_server_alive(pid).map_err(fail)?;
    let window = usage.wall_s;
    let rate = count as f64 / window;
    let cpu_us = usage.server_cpu_us;
    let per_msg = cpu_us
        .filter(|_| count > 0)
        .map(|us| round(us / count as f64, 3));
    let srv_pct = usage.server_pct.map(|v| round(v, 1));
    let tool_pct = usage.tool_pct.map(|v| round(v, 1));
    let other_pct = usage.other_pct.map(|v| round(v, 1));
    let results = json!({
        "round_trips": count,
        "round_trips_per_s": round(rate, 1),
        "latency_ms": lat,
        "server_cpu_us_per_msg": per_msg,
        "server_cpu_pct": srv_pct,
        "tool_cpu_pct": tool_pct,
        "other_cpu_pct": other_pct,
        "errors": errors,
        "window_s": round(window, 3),
    });
    let mut human = vec![
        format!(
            "echo: {} connections, {count} round trips in {window:.2}s = {rate:.0}/s",
            a.connections
        ),
        format!(
            "latency ms: p50 {} p99 {} p99.9 {} max {}",
            lat.p50_ms, lat.p99_ms, lat.p999_ms, lat.max_ms
        ),
        format!(
            "server CPU: {} µs per message ({}% of a core); tool CPU {}%; rest of the machine {}%",
            super::fmt_opt(per_msg, 2),
            super::fmt_opt(srv_pct, 1),
            super::fmt_opt(tool_pct, 1),
            super::fmt_opt(other_pct, 1)
        ),
    ];
    if !errors.is_empty() {
        human.push(format!("WARNING: connections ended early: {errors:?}"));
    }
    Ok(Output {
        scenario: "echo",
        params,
        results,
        human,
    })
}
