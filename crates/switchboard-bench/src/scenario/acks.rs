//! `acks`: closed-loop publishes through Switchboard's `/ws/chat`; each
//! connection keeps `--window` `publish` frames (with an `id`) in flight and
//! sends the next one as each `ack` comes back. Reports acknowledged
//! publishes per second, ack latency and server CPU per publish: with a
//! publish hook configured, each of them waits for the application.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memchr::memmem::Finder;
use serde_json::json;

use super::Output;
use super::{Protocol, check_bound, check_server_alive, open_session, write_payload};
use crate::procfs::Meter;
use crate::stats::Latency;
use crate::target::{Scheme, Target};
use crate::util::round;
use crate::ws::{Msg, WsClient};

/// Parameters of `acks`.
#[derive(Clone, Debug, clap::Args)]
pub struct AcksArgs {
    /// Switchboard chat endpoint URL (loopback only), e.g.
    /// ws://127.0.0.1:3000/ws/chat.
    #[arg(long)]
    pub url: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Publishes each connection keeps in flight (sent, not yet
    /// acknowledged).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Room published to (nobody is in it: no deliveries).
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Measured window.
    #[arg(long, default_value = "8s", value_parser = crate::util::parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before the window.
    #[arg(long, default_value = "1s", value_parser = crate::util::parse_duration)]
    pub warmup: Duration,
    /// Size of each message's `data` in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// A `Cookie` header sent with every upgrade (`{n}`: the connection's
    /// number).
    #[arg(long)]
    pub cookie: Option<String>,
    /// PID of the server, for its CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// PID of the hook application: its CPU is reported apart and not
    /// counted as the rest of the machine's.
    #[arg(long)]
    pub app_pid: Option<u32>,
}

#[derive(Default)]
struct AcksState {
    hist: Latency,
    acked: u64,
    errors: BTreeMap<String, u64>,
    ended: BTreeMap<String, u64>,
}

static ID_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"id\":"));
static CODE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"code\":\""));

/// Classifies a frame received by a publisher: `Ok(Some(id))` for an ack,
/// `Err(code)` for an error frame, `Ok(None)` for anything else.
pub fn classify(frame: &[u8]) -> Result<Option<u64>, String> {
    let id = || {
        let i = ID_KEY.find(frame)? + 5;
        let digits = frame[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&frame[i..i + digits])
            .ok()?
            .parse()
            .ok()
    };
    if frame.starts_with(b"{\"type\":\"ack\"") {
        return Ok(id());
    }
    if frame.starts_with(b"{\"type\":\"error\"") {
        let code = CODE_KEY
            .find(frame)
            .map(|i| {
                let rest = &frame[i + 8..];
                let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                String::from_utf8_lossy(&rest[..end]).into_owned()
            })
            .unwrap_or_else(|| "error".into());
        return Err(code);
    }
    Ok(None)
}

/// Appends a `publish` frame for `room` with `data` and `id` to `buf`
/// (cleared first).
pub fn write_publish(buf: &mut Vec<u8>, room: &str, data: &[u8], id: u64) {
    use std::io::Write;
    buf.clear();
    // Writing to a Vec cannot fail; the room was checked to need no escaping.
    let _ = write!(buf, "{{\"type\":\"publish\",\"room\":\"{room}\",\"data\":");
    buf.extend_from_slice(data);
    let _ = write!(buf, ",\"id\":{id}}}");
}

async fn publisher(
    mut ws: WsClient,
    i: usize,
    a: Rc<AcksArgs>,
    st: Rc<RefCell<AcksState>>,
    stop: Rc<Cell<bool>>,
) {
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(a.window);
    let mut data = Vec::with_capacity(a.payload_bytes + 16);
    let mut frame = Vec::with_capacity(a.payload_bytes + 96);
    let mut next_id = 0u64;
    let end = 'run: loop {
        while !stop.get() && in_flight.len() < a.window {
            let now = Instant::now();
            let seq = ((i as u64) << 32) | next_id;
            write_payload(&mut data, seq, crate::clock::to_ns(now), a.payload_bytes);
            write_publish(&mut frame, &a.room, &data, next_id);
            if let Err(e) = ws.send_text(&frame).await {
                break 'run format!("error_{}", crate::net::error_kind(&e));
            }
            in_flight.push_back((next_id, now));
            next_id += 1;
        }
        if in_flight.is_empty() {
            break "done".to_string();
        }
        let r = ws.recv().await;
        match r {
            Ok(Msg::Text) => match classify(ws.payload()) {
                Ok(Some(id)) => {
                    // Acks come in the order the publishes were sent.
                    while let Some(&(first, at)) = in_flight.front() {
                        if first > id {
                            break;
                        }
                        in_flight.pop_front();
                        if first == id {
                            let mut s = st.borrow_mut();
                            s.acked += 1;
                            s.hist.record_ns(at.elapsed().as_nanos() as u64);
                        }
                    }
                }
                Ok(None) => {}
                Err(code) => {
                    *st.borrow_mut().errors.entry(code).or_default() += 1;
                    in_flight.pop_front();
                }
            },
            Ok(Msg::Binary) => {}
            _ => break super::end_label(&r),
        }
    };
    *st.borrow_mut().ended.entry(end).or_default() += 1;
}

/// Runs `acks`.
pub async fn run(a: AcksArgs) -> Result<Output, (serde_json::Value, String)> {
    let params = json!({
        "url": a.url, "connections": a.connections, "window": a.window, "room": a.room,
        "duration_s": a.duration.as_secs_f64(), "warmup_s": a.warmup.as_secs_f64(),
        "payload_bytes": a.payload_bytes, "cookie": a.cookie,
    });
    let fail = |m: String| (params.clone(), m);
    let target = Target::parse(&a.url).map_err(fail)?;
    if target.scheme != Scheme::Ws {
        return Err(fail("--url must be a ws:// URL".into()));
    }
    check_bound("connections", a.connections as f64, 1.0, 1_000.0).map_err(fail)?;
    check_bound("window", a.window as f64, 1.0, 1_000.0).map_err(fail)?;
    check_bound("duration", a.duration.as_secs_f64(), 0.1, 600.0).map_err(fail)?;
    check_bound("warmup", a.warmup.as_secs_f64(), 0.0, 60.0).map_err(fail)?;
    check_bound("payload-bytes", a.payload_bytes as f64, 1.0, 60_000.0).map_err(fail)?;
    if a.room.is_empty()
        || !a
            .room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
    {
        return Err(fail(
            "--room must be letters, digits, '-', '_', ':' or '.'".into(),
        ));
    }
    let pid = a.server_pid;
    check_server_alive(pid).map_err(fail)?;
    check_server_alive(a.app_pid).map_err(fail)?;

    let mut conns = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let ws = match &a.cookie {
            None => open_session(
                &target,
                i as u64,
                Protocol::Switchboard,
                None,
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| fail(format!("connection {i} failed to open: {e}")))?,
            Some(c) => {
                let headers = format!("Cookie: {}\r\n", c.replace("{n}", &i.to_string()));
                let src = crate::net::source_ip(&target.addr, i as u64);
                let mut ws =
                    WsClient::connect_with_headers(&target, src, Duration::from_secs(10), &headers)
                        .await
                        .map_err(|e| fail(format!("connection {i} failed to open: {e}")))?;
                match ws.recv().await {
                    Ok(Msg::Text) if ws.payload().starts_with(b"{\"type\":\"welcome\"") => {}
                    other => {
                        return Err(fail(format!(
                            "connection {i}: expected welcome, got {other:?}"
                        )));
                    }
                }
                ws
            }
        };
        conns.push(ws);
    }
    let st = Rc::new(RefCell::new(AcksState::default()));
    let stop = Rc::new(Cell::new(false));
    let args = Rc::new(a.clone());
    let mut tasks = Vec::new();
    for (i, ws) in conns.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(publisher(
            ws,
            i,
            args.clone(),
            st.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(a.warmup).await;
    let (acked0, errors0, meter) = {
        let mut s = st.borrow_mut();
        s.hist.reset();
        let errors0: u64 = s.errors.values().sum();
        (
            s.acked,
            errors0,
            Meter::start(pid).with_aside(a.app_pid.as_slice()),
        )
    };
    tokio::time::sleep(a.duration).await;
    let usage = meter.stop(pid);
    let (acked, refused, lat) = {
        let s = st.borrow();
        let errs: u64 = s.errors.values().sum();
        (s.acked - acked0, errs - errors0, s.hist.summary())
    };
    stop.set(true);
    // Let the windows drain, so the server is not left with a backlog.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for t in &mut tasks {
            let _ = t.await;
        }
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    check_server_alive(pid).map_err(fail)?;
    let (errors, ended) = {
        let s = st.borrow();
        (s.errors.clone(), s.ended.clone())
    };
    let window = usage.wall_s;
    let rate = acked as f64 / window;
    let per_msg = usage
        .server_cpu_us
        .filter(|_| acked > 0)
        .map(|us| round(us / acked as f64, 2));
    let app_per_msg = usage
        .aside_cpu_us
        .filter(|_| acked > 0)
        .map(|us| round(us / acked as f64, 2));
    let srv_pct = usage.server_pct.map(|v| round(v, 1));
    let tool_pct = usage.tool_pct.map(|v| round(v, 1));
    let other_pct = usage.other_pct.map(|v| round(v, 1));
    let cut: u64 = ended
        .iter()
        .filter(|(k, _)| k.as_str() != "done")
        .map(|(_, v)| v)
        .sum();
    let results = json!({
        "acked": acked,
        "acked_per_s": round(rate, 1),
        "refused_or_failed": refused,
        "errors": errors,
        "connections_ended": ended,
        "latency_ms": lat,
        "server_cpu_us_per_msg": per_msg,
        "app_cpu_us_per_msg": app_per_msg,
        "server_cpu_pct": srv_pct,
        "tool_cpu_pct": tool_pct,
        "other_cpu_pct": other_pct,
        "window_s": round(window, 3),
    });
    let mut human = vec![
        format!(
            "acks: {} connections × {} in flight, {acked} publishes acknowledged in {window:.2}s = {rate:.0}/s",
            a.connections, a.window
        ),
        format!(
            "ack latency ms: p50 {} p99 {} p99.9 {} max {}",
            lat.p50_ms, lat.p99_ms, lat.p999_ms, lat.max_ms
        ),
        format!(
            "server CPU: {} µs per publish ({}% of a core); hook app {} µs per publish; tool CPU {}%; rest of the machine {}%",
            super::fmt_opt(per_msg, 2),
            super::fmt_opt(srv_pct, 1),
            super::fmt_opt(app_per_msg, 2),
            super::fmt_opt(tool_pct, 1),
            super::fmt_opt(other_pct, 1)
        ),
    ];
    if !errors.is_empty() {
        human.push(format!(
            "WARNING: publishes answered with errors: {errors:?}"
        ));
    }
    if cut > 0 {
        human.push(format!("WARNING: connections ended early: {ended:?}"));
    }
    if acked == 0 {
        return Err(fail(format!(
            "no publish was acknowledged (errors {errors:?}, connections {ended:?})"
        )));
    }
    Ok(Output {
        scenario: "acks",
        params,
        results,
        human,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut b = Vec::new();
        write_publish(&mut b, "bench", br#"{"seq":1}"#, 42);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "publish");
        assert_eq!(v["room"], "bench");
        assert_eq!(v["data"]["seq"], 1);
        assert_eq!(v["id"], 42);
        assert_eq!(
            classify(br#"{"type":"ack","id":42,"offset":7}"#),
            Ok(Some(42))
        );
        assert_eq!(
            classify(br#"{"type":"error","id":3,"code":"unavailable","message":"x"}"#),
            Err("unavailable".into())
        );
        assert_eq!(
            classify(br#"{"type":"message","room":"r","data":1}"#),
            Ok(None)
        );
    }
}
