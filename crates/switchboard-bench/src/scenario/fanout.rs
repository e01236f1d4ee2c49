//! `fanout`: N subscribers, one publisher at a steady rate; delivery latency,
//! loss, and server CPU per delivery.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Output, Protocol, RssSampler, SubState, check_bound, check_server_alive, open_subscribers,
    server_rss,
};
use crate::procfs::Meter;
use crate::target::{Scheme, Target};
use crate::util::round;

mod publish;

use publish::{Envelope, Plan, PubState, http_worker, ws_publisher};

/// How the publisher publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// Over a WebSocket connection.
    Ws,
    /// With HTTP POSTs on keep-alive connections.
    Http,
}

/// Parameters of `fanout`.
#[derive(Clone, Debug, clap::Args)]
pub struct FanoutArgs {
    /// Chat endpoint URL (loopback only), e.g. ws://127.0.0.1:3000/ws/chat.
    #[arg(long)]
    pub url: String,
    /// The same endpoint on further nodes of a cluster (repeatable):
    /// subscribers are spread evenly over --url and these; the publisher
    /// uses --url's node (or --http-url).
    #[arg(long = "also-url")]
    pub also_urls: Vec<String>,
    /// PIDs of further server processes (repeatable; the other nodes, a
    /// broker): their CPU is added to the server's, so CPU per delivery is
    /// the whole cluster's.
    #[arg(long = "also-server-pid")]
    pub also_server_pids: Vec<u32>,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages per second (a steady schedule, not bursts).
    #[arg(long, conflicts_with = "rates")]
    pub rate: Option<f64>,
    /// Several rates, run one after the other on the same subscribers, e.g.
    /// 5,10,15; see --stop-on-fail.
    #[arg(long, value_parser = parse_rate_list)]
    pub rates: Option<RateList>,
    /// With --rates: stop at the first rate that does not pass (loss, a cut
    /// subscriber, a late publisher, or p99 above --pass-p99-ms).
    #[arg(long)]
    pub stop_on_fail: bool,
    /// The p99 delivery latency a rate must stay under to pass.
    #[arg(long, default_value_t = 100.0)]
    pub pass_p99_ms: f64,
    /// Publishing window per rate.
    #[arg(long, default_value = "10s", value_parser = crate::util::parse_duration)]
    pub duration: Duration,
    /// How long to wait for late deliveries after publishing ends.
    #[arg(long, default_value = "2s", value_parser = crate::util::parse_duration)]
    pub drain: Duration,
    /// PID of the server, for its CPU time and RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Publish over WebSocket or HTTP.
    #[arg(long, value_enum, default_value_t = Publish::Http)]
    pub publish: Publish,
    /// `switchboard` joins a room and publishes with the Switchboard API;
    /// `raw` subscribes by connecting and publishes the bare payload.
    #[arg(long, value_enum, default_value_t = Protocol::Switchboard)]
    pub protocol: Protocol,
    /// HTTP publish URL (default: /api/rooms/ROOM/messages for switchboard,
    /// /publish for raw, on the --url host).
    #[arg(long)]
    pub http_url: Option<String>,
    /// Room (Switchboard protocol).
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Size of each payload in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// HTTP publisher connections, each taking every k-th tick, so one slow
    /// response does not stall the schedule.
    #[arg(long, default_value_t = 4)]
    pub http_conns: usize,
    /// Handshakes in flight at once while opening subscribers (keep it under
    /// the server's listen backlog, often 128, to avoid SYN retries).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Pause after opening subscribers before publishing.
    #[arg(long, default_value = "1s", value_parser = crate::util::parse_duration)]
    pub settle: Duration,
}

/// A list of rates given as `5,10,15`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateList(pub Vec<f64>);

fn parse_rate_list(s: &str) -> Result<RateList, String> {
    crate::util::parse_rates(s).map(RateList)
}

struct Ctx {
    a: FanoutArgs,
    target: Target,
    http_target: Target,
    pid: Option<u32>,
}

async fn run_step(
    ctx: &Ctx,
    rate: f64,
    base_seq: u64,
    subs: &Rc<RefCell<SubState>>,
) -> Result<Value, String> {
    let a = &ctx.a;
    let pid = ctx.pid;
    check_server_alive(pid)?;
    let alive = {
        let mut s = subs.borrow_mut();
        s.reset(base_seq);
        s.alive
    };
    let ticks = (rate * a.duration.as_secs_f64()).floor().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let env = Envelope::new(a.protocol, a.publish, &a.room);
    let st = Rc::new(RefCell::new(PubState::default()));

    // A WebSocket publisher connects before the window.
    let ws_pub = if a.publish == Publish::Ws {
        let src = crate::net::source_ip(&ctx.target.addr, a.subscribers as u64);
        Some(
            super::open_session(
                &ctx.target,
                a.subscribers as u64,
                a.protocol,
                None,
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| format!("publisher failed to connect: {e}"))
            .map(|ws| (ws, src))?,
        )
    } else {
        None
    };

    let rss_before = server_rss(pid);
    let sampler = RssSampler::start(pid);
    let meter = Meter::start_nodes(pid, &a.also_server_pids);
    let t0 = Instant::now() + Duration::from_millis(20);
    let plan = Rc::new(Plan {
        t0,
        interval,
        ticks,
        deadline: t0 + a.duration + interval.max(Duration::from_millis(100)),
        base_seq,
        payload_bytes: a.payload_bytes,
    });
    let mut keep_ws = None;
    match ws_pub {
        Some((ws, _)) => {
            keep_ws = ws_publisher(ws, plan.clone(), env, st.clone()).await;
        }
        None => {
            let k = a.http_conns.max(1) as u64;
            let mut set = tokio::task::JoinSet::new();
            for w in 0..k {
                let src = crate::net::source_ip(&ctx.target.addr, a.subscribers as u64 + w);
                set.spawn_local(http_worker(
                    w,
                    k,
                    plan.clone(),
                    ctx.http_target.clone(),
                    src,
                    env.clone(),
                    st.clone(),
                ));
            }
            while set.join_next().await.is_some() {}
        }
    }
    let pub_end = Instant::now();
    let sent = st.borrow().sent;
    let expected = sent * alive;
    let drain_deadline = pub_end + a.drain;
    let done = Rc::new(Cell::new(false));
    while Instant::now() < drain_deadline {
        if subs.borrow().received >= expected {
            done.set(true);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = meter.stop(pid);
    let rss_peak = sampler.stop(pid);
    let rss_after = server_rss(pid);
    drop(keep_ws);
    let server_gone = check_server_alive(pid).err();

    let s = subs.borrow();
    let p = st.borrow();
    let received = s.received;
    let lost = expected.saturating_sub(received);
    let loss_pct = if expected > 0 {
        lost as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let lat = s.hist.summary();
    let cut = s.closed_count();
    let window = usage.wall_s;
    let pub_window = pub_end.duration_since(t0).as_secs_f64().max(1e-9);
    let missed = ticks - p.attempted;
    let behind = missed > 0 || p.late * 100 > ticks;
    let cpu_us = usage.server_cpu_us;
    let per_delivery = cpu_us
        .filter(|_| received > 0)
        .map(|us| round(us / received as f64, 3));
    let srv_pct = usage.server_pct.map(|v| round(v, 1));
    let tool_pct = usage.tool_pct.map(|v| round(v, 1));
    let other_pct = usage.other_pct.map(|v| round(v, 1));
    let publish_failed: u64 = p.failures.values().sum();
    let pass = server_gone.is_none()
        && lost == 0
        && cut == 0
        && !behind
        && publish_failed == 0
        && sent > 0
        && lat.p99_ms < a.pass_p99_ms;
    Ok(json!({
        "rate": rate,
        "subscribers": alive,
        "scheduled": ticks,
        "sent": sent,
        "publish_failures": p.failures,
        "missed_ticks": missed,
        "late_ticks": p.late,
        "max_publisher_lag_ms": round(p.max_lag.as_secs_f64() * 1000.0, 3),
        "publisher_behind": behind,
        "rate_achieved": round(sent as f64 / pub_window.max(a.duration.as_secs_f64()), 2),
        "publish_ms": p.publish_latency.summary(),
        "expected": expected,
        "received": received,
        "lost": lost,
        "loss_pct": round(loss_pct, 4),
        "stale": s.stale,
        "other_frames": s.other,
        "drained": done.get(),
        "subscribers_cut": cut,
        "closed_by_code": s.closed,
        "latency_ms": lat,
        "server_cpu_us_per_delivery": per_delivery,
        "server_cpu_pct": srv_pct,
        "tool_cpu_pct": tool_pct,
        "other_cpu_pct": other_pct,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
        "server_rss_kib_peak": rss_peak,
        "rss_growth_mib": match (rss_before, rss_peak) {
            (Some(b), Some(pk)) => Some(round((pk as f64 - b as f64) / 1024.0, 2)),
            _ => None,
        },
        "window_s": round(window, 3),
        "server_gone": server_gone,
        "pass": pass,
    }))
}

fn step_lines(r: &Value) -> Vec<String> {
    let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let lat = g("latency_ms");
    let mut v = vec![
        format!(
            "rate {}/s: sent {} of {} scheduled ({}/s achieved) to {} subscribers; publish p99 {} ms",
            g("rate"),
            g("sent"),
            g("scheduled"),
            g("rate_achieved"),
            g("subscribers"),
            r["publish_ms"]["p99_ms"]
        ),
        format!(
            "  delivered {} of {} (lost {} = {}%), cut {} {}; latency ms p50 {} p99 {} p99.9 {} max {}",
            g("received"),
            g("expected"),
            g("lost"),
            g("loss_pct"),
            g("subscribers_cut"),
            g("closed_by_code"),
            lat["p50_ms"],
            lat["p99_ms"],
            lat["p999_ms"],
            lat["max_ms"]
        ),
        format!(
            "  server CPU {} µs/delivery ({}% of a core), tool CPU {}%, rest of machine {}%; server RSS {} -> peak {} KiB; {}",
            g("server_cpu_us_per_delivery"),
            g("server_cpu_pct"),
            g("tool_cpu_pct"),
            g("other_cpu_pct"),
            g("server_rss_kib_before"),
            g("server_rss_kib_peak"),
            if g("pass") == Value::Bool(true) {
                "PASS"
            } else {
                "FAIL"
            }
        ),
    ];
    if g("publisher_behind") == Value::Bool(true) {
        v.push(format!(
            "  WARNING: the publisher fell behind its schedule ({} late ticks, {} missed, max lag {} ms)",
            g("late_ticks"), g("missed_ticks"), g("max_publisher_lag_ms")
        ));
    }
    if r["tool_cpu_pct"].as_f64().is_some_and(|v| v > 90.0) {
        v.push("  WARNING: the tool used >90% of its core; it may be the bottleneck".into());
    }
    if let Some(e) = r["server_gone"].as_str() {
        v.push(format!("  ERROR: {e}"));
    }
    v
}

/// Runs `fanout`.
pub async fn run(a: FanoutArgs) -> Result<Output, (Value, String)> {
    let rates: Vec<f64> = match (&a.rates, a.rate) {
        (Some(r), _) => r.0.clone(),
        (None, Some(r)) => vec![r],
        (None, None) => vec![10.0],
    };
    let params = json!({
        "url": a.url, "also_urls": a.also_urls, "also_server_pids": a.also_server_pids,
        "subscribers": a.subscribers, "rates": rates,
        "duration_s": a.duration.as_secs_f64(), "drain_s": a.drain.as_secs_f64(),
        "publish": a.publish, "protocol": a.protocol, "http_url": a.http_url,
        "room": a.room, "payload_bytes": a.payload_bytes, "http_conns": a.http_conns,
        "pass_p99_ms": a.pass_p99_ms, "stop_on_fail": a.stop_on_fail,
    });
    let fail = |m: String| (params.clone(), m);
    let target = Target::parse(&a.url).map_err(fail)?;
    if target.scheme != Scheme::Ws {
        return Err(fail("--url must be a ws:// URL".into()));
    }
    let mut also = Vec::new();
    for u in &a.also_urls {
        let t = Target::parse(u).map_err(fail)?;
        if t.scheme != Scheme::Ws {
            return Err(fail("--also-url must be a ws:// URL".into()));
        }
        also.push(t);
    }

    let http_target = match &a.http_url {
        Some(u) => Target::parse(u).map_err(fail)?,
        None => target.http_with_path(&match a.protocol {
            Protocol::Switchboard => format!(
                "/api/rooms/{}/messages",
                crate::util::percent_encode(&a.room)
            ),
            Protocol::Raw => "/publish".to_string(),
        }),
    };
    if http_target.scheme != Scheme::Http {
        return Err(fail("--http-url must be an http:// URL".into()));
    }
    check_bound(
        "subscribers",
        a.subscribers as f64,
        1.0,
        super::MAX_CONNECTIONS as f64,
    )
    .map_err(fail)?;
    for r in &rates {
        check_bound("rate", *r, 0.1, 100_000.0).map_err(fail)?;
    }
    if rates.len() > 20 {
        return Err(fail("at most 20 rates".into()));
    }
    check_bound("duration", a.duration.as_secs_f64(), 0.1, 600.0).map_err(fail)?;
    check_bound("drain", a.drain.as_secs_f64(), 0.0, 60.0).map_err(fail)?;
    check_bound("settle", a.settle.as_secs_f64(), 0.0, 60.0).map_err(fail)?;
    check_bound("payload-bytes", a.payload_bytes as f64, 1.0, 65_536.0).map_err(fail)?;
    check_bound("http-conns", a.http_conns as f64, 1.0, 64.0).map_err(fail)?;
    check_bound("concurrency", a.concurrency as f64, 1.0, 4096.0).map_err(fail)?;
    let pid = a.server_pid;
    check_server_alive(pid).map_err(fail)?;
    for &p in &a.also_server_pids {
        check_server_alive(Some(p)).map_err(fail)?;
    }

    let subs = Rc::new(RefCell::new(SubState::default()));
    let join = (a.protocol == Protocol::Switchboard).then_some(a.room.as_str());
    // Subscribers are spread evenly over the nodes, the first ones taking
    // the remainder.
    let nodes: Vec<&Target> = std::iter::once(&target).chain(also.iter()).collect();
    let mut opened = super::Opened::default();
    for (i, node) in nodes.iter().enumerate() {
        let n = a.subscribers / nodes.len() + usize::from(i < a.subscribers % nodes.len());
        eprintln!("fanout: opening {n} subscribers to {}", node.url());
        let part = open_subscribers(node, n, a.concurrency, a.protocol, join, &subs).await;
        opened.merge(part);
    }
    let failed: u64 = opened.failures.values().sum();
    if failed > 0 {
        for t in &opened.tasks {
            t.abort();
        }
        return Err(fail(format!(
            "{failed} of {} subscribers failed to open ({:?}); first error: {}",
            a.subscribers,
            opened.failures,
            opened.first_error.unwrap_or_default()
        )));
    }
    let open_s = opened.elapsed.as_secs_f64();
    eprintln!("fanout: {} subscribers open in {open_s:.2}s", a.subscribers);
    tokio::time::sleep(a.settle).await;

    let ctx = Ctx {
        a: a.clone(),
        target,
        http_target,
        pid,
    };
    let mut steps = Vec::new();
    let mut human = vec![format!(
        "fanout: {} subscribers opened in {open_s:.2}s; publishing over {:?} ({:?} protocol), {} B payloads, {:.0}s per rate",
        a.subscribers,
        a.publish,
        a.protocol,
        a.payload_bytes,
        a.duration.as_secs_f64()
    )];
    let mut max_pass: Option<f64> = None;
    let mut error = None;
    for (k, &rate) in rates.iter().enumerate() {
        let base = (k as u64 + 1) << 40;
        match run_step(&ctx, rate, base, &subs).await {
            Ok(r) => {
                human.extend(step_lines(&r));
                let pass = r["pass"] == Value::Bool(true);
                eprintln!(
                    "fanout: rate {rate}/s: p99 {} ms, lost {}, cut {} -> {}",
                    r["latency_ms"]["p99_ms"],
                    r["lost"],
                    r["subscribers_cut"],
                    if pass { "pass" } else { "fail" }
                );
                let gone = !r["server_gone"].is_null();
                steps.push(r);
                if pass {
                    max_pass = Some(max_pass.map_or(rate, |m: f64| m.max(rate)));
                } else if a.stop_on_fail || gone {
                    break;
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if k + 1 < rates.len() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    for t in &opened.tasks {
        t.abort();
    }
    if let Some(e) = error {
        return Err(fail(e));
    }
    let max_of = |key: &str| {
        steps
            .iter()
            .filter_map(|s| s[key].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let tool_max = max_of("tool_cpu_pct");
    let other_max = max_of("other_cpu_pct");
    let results = if rates.len() == 1 {
        let mut r = steps.pop().unwrap_or(Value::Null);
        r["open_s"] = json!(round(open_s, 3));
        r
    } else {
        human.push(format!(
            "highest passing rate (p99 < {} ms, no loss, no cut, publisher on time): {}",
            a.pass_p99_ms,
            max_pass.map_or("none".to_string(), |r| format!("{r}/s"))
        ));
        json!({
            "open_s": round(open_s, 3),
            "max_passing_rate": max_pass,
            "tool_cpu_pct": tool_max,
            "other_cpu_pct": other_max,
            "steps": steps,
        })
    };
    Ok(Output {
        scenario: "fanout",
        params,
        results,
        human,
    })
}
