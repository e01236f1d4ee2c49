//! `churn`: connect and disconnect at a steady rate.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Output, Protocol, TIMER_SLACK, check_bound, check_server_alive, server_rss};
use crate::procfs::Meter;
use crate::stats::Latency;
use crate::target::{Scheme, Target};
use crate::util::round;
use crate::ws::{Msg, WsClient};

/// Parameters of `churn`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChurnArgs {
    /// WebSocket URL (loopback only), e.g. ws://127.0.0.1:3000/ws/chat.
    #[arg(long)]
    pub url: String,
    /// New connections per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to keep connecting.
    #[arg(long, default_value = "10s", value_parser = crate::util::parse_duration)]
    pub duration: Duration,
    /// Credential appended to the URL as `?token=` (or `&token=`).
    #[arg(long)]
    pub token: Option<String>,
    /// `switchboard` waits for the welcome frame before disconnecting; `raw`
    /// disconnects right after the handshake.
    #[arg(long, value_enum, default_value_t = Protocol::Switchboard)]
    pub protocol: Protocol,
    /// PID of the server, for CPU and RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Most connection attempts in flight; ticks beyond it are skipped and
    /// counted.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// A `Cookie` header sent with every upgrade, e.g. `sid=bench-{n}`;
    /// `{n}` is replaced by the attempt's number (for the connect hook).
    #[arg(long)]
    pub cookie: Option<String>,
    /// PID of the hook application: its CPU is reported apart and not
    /// counted as the rest of the machine's.
    #[arg(long)]
    pub app_pid: Option<u32>,
    /// Time limit for one attempt (handshake and welcome).
    #[arg(long, default_value = "5s", value_parser = crate::util::parse_duration)]
    pub timeout: Duration,
}

#[derive(Default)]
struct ChurnState {
    in_flight: usize,
    ok: u64,
    failures: BTreeMap<String, u64>,
    connect: Latency,
}

/// Runs `churn`.
pub async fn run(a: ChurnArgs) -> Result<Output, (serde_json::Value, String)> {
    let params = json!({
        "url": a.url, "rate": a.rate, "duration_s": a.duration.as_secs_f64(),
        "token": a.token.as_ref().map(|_| "(set)"), "protocol": a.protocol,
        "max_in_flight": a.max_in_flight, "timeout_s": a.timeout.as_secs_f64(),
        "cookie": a.cookie,
    });
    let fail = |m: String| (params.clone(), m);
    let mut target = Target::parse(&a.url).map_err(fail)?;
    if target.scheme != Scheme::Ws {
        return Err(fail("--url must be a ws:// URL".into()));
    }
    if let Some(t) = &a.token {
        target = target.with_query("token", t);
    }
    check_bound("rate", a.rate, 0.1, 5_000.0).map_err(fail)?;
    check_bound("duration", a.duration.as_secs_f64(), 0.1, 600.0).map_err(fail)?;
    check_bound("max-in-flight", a.max_in_flight as f64, 1.0, 4096.0).map_err(fail)?;
    check_bound("timeout", a.timeout.as_secs_f64(), 0.1, 60.0).map_err(fail)?;
    let pid = a.server_pid;
    check_server_alive(pid).map_err(fail)?;

    let st = Rc::new(RefCell::new(ChurnState::default()));
    let ticks = (a.rate * a.duration.as_secs_f64()).floor().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let rss_before = server_rss(pid);
    if let Some(c) = &a.cookie
        && (c.is_empty() || c.bytes().any(|b| b.is_ascii_control()))
    {
        return Err(fail("--cookie must be a non-empty header value".into()));
    }
    check_server_alive(a.app_pid).map_err(fail)?;
    let meter = Meter::start(pid).with_aside(a.app_pid.as_slice());
    let t0 = Instant::now();
    let mut skipped = 0u64;
    let mut late = 0u64;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..ticks {
        let sched = t0 + interval.mul_f64(i as f64);
        let now = Instant::now();
        if sched > now {
            tokio::time::sleep_until(sched.into()).await;
        } else if now - sched > interval.max(TIMER_SLACK) {
            late += 1;
        }
        while set.try_join_next().is_some() {}
        if st.borrow().in_flight >= a.max_in_flight {
            skipped += 1;
            continue;
        }
        st.borrow_mut().in_flight += 1;
        let st = st.clone();
        let target = target.clone();
        let protocol = a.protocol;
        let timeout = a.timeout;
        let headers = a
            .cookie
            .as_ref()
            .map(|c| format!("Cookie: {}\r\n", c.replace("{n}", &i.to_string())))
            .unwrap_or_default();
        set.spawn_local(async move {
            let start = Instant::now();
            let src = crate::net::source_ip(&target.addr, i);
            let r = tokio::time::timeout(timeout, async {
                let mut ws = WsClient::connect_with_headers(&target, src, timeout, &headers)
                    .await
                    .map_err(|e| e.label())?;
                if protocol == Protocol::Switchboard {
                    let m = ws.recv().await;
                    match m {
                        Ok(Msg::Text) if ws.payload().starts_with(b"{\"type\":\"welcome\"") => {}
                        Ok(Msg::Text | Msg::Binary) => return Err("no_welcome".to_string()),
                        _ => return Err(format!("closed_{}", super::end_label(&m))),
                    }
                }
                Ok(ws)
            })
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
            let elapsed = start.elapsed();
            match r {
                Ok(ws) => {
                    {
                        let mut s = st.borrow_mut();
                        s.ok += 1;
                        s.connect.record_us(elapsed.as_micros() as u64);
                    }
                    ws.close(Duration::from_secs(1)).await;
                }
                Err(label) => *st.borrow_mut().failures.entry(label).or_default() += 1,
            }
            st.borrow_mut().in_flight -= 1;
        });
    }
    let schedule_end = Instant::now();
    while set.join_next().await.is_some() {}
    let usage = meter.stop(pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server_rss(pid);
    check_server_alive(pid).map_err(fail)?;

    let s = st.borrow();
    let window = schedule_end
        .duration_since(t0)
        .as_secs_f64()
        .max(a.duration.as_secs_f64());
    let achieved = s.ok as f64 / window;
    let failed: u64 = s.failures.values().sum();
    let lat = s.connect.summary();
    let cpu_per_conn = usage
        .server_cpu_us
        .filter(|_| s.ok > 0)
        .map(|us| round(us / s.ok as f64, 1));
    let app_per_conn = usage
        .aside_cpu_us
        .filter(|_| s.ok > 0)
        .map(|us| round(us / s.ok as f64, 1));
    let tool_pct = usage.tool_pct.map(|v| round(v, 1));
    let other_pct = usage.other_pct.map(|v| round(v, 1));
    let results = json!({
        "attempted": ticks - skipped,
        "succeeded": s.ok,
        "failed": failed,
        "failures": s.failures,
        "skipped_in_flight_limit": skipped,
        "late_ticks": late,
        "rate_achieved": round(achieved, 2),
        "connect_ms": lat,
        "server_cpu_us_per_conn": cpu_per_conn,
        "app_cpu_us_per_conn": app_per_conn,
        "tool_cpu_pct": tool_pct,
        "other_cpu_pct": other_pct,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
    });
    let mut human = vec![
        format!(
            "churn: {} of {} attempts succeeded ({achieved:.1}/s achieved of {}/s), {failed} failed {:?}, {skipped} skipped",
            s.ok,
            ticks - skipped,
            a.rate,
            s.failures
        ),
        format!(
            "connect ms (to {}): p50 {} p99 {} max {}; server {} µs CPU per connection (hook app {}); tool CPU {}%",
            if a.protocol == Protocol::Switchboard {
                "welcome"
            } else {
                "101"
            },
            lat.p50_ms,
            lat.p99_ms,
            lat.max_ms,
            super::fmt_opt(cpu_per_conn, 1),
            super::fmt_opt(app_per_conn, 1),
            super::fmt_opt(tool_pct, 1)
        ),
    ];
    if late * 100 > ticks {
        human.push(format!(
            "WARNING: {late} ticks started late: the tool fell behind"
        ));
    }
    Ok(Output {
        scenario: "churn",
        params,
        results,
        human,
    })
}
