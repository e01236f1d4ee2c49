//! The load scenarios, and what they share: opening sessions in bulk,
//! subscriber loops, payload encoding and the output record.

pub mod acks;
pub mod churn;
pub mod echo;
pub mod fanout;
pub mod idle;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memchr::memmem::Finder;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::clock;
use crate::net;
use crate::stats::Latency;
use crate::target::Target;
use crate::ws::{ConnectError, Msg, WsClient};

/// Most connections one run may open (the process may hold ~19.9k sockets
/// under the 20,000 open-file limit).
pub const MAX_CONNECTIONS: usize = 19_000;
/// A tick counts as late only past this much (or past its interval, if
/// longer): Tokio timers have a 1 ms granularity.
pub const TIMER_SLACK: Duration = Duration::from_millis(2);
/// Longest measured window accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Which wire protocol the server speaks on its chat endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Switchboard v1: `welcome` first, `join` a room, `message` frames.
    Switchboard,
    /// Baselines: every text frame on the chat endpoint is the raw payload.
    Raw,
}

/// What a scenario reports: human lines, then one JSON object.
#[derive(Debug)]
pub struct Output {
    /// Scenario name (`idle`, `echo`, `fanout`, `churn`).
    pub scenario: &'static str,
    /// The parameters it ran with.
    pub params: Value,
    /// The measurements.
    pub results: Value,
    /// Summary lines for people.
    pub human: Vec<String>,
}

impl Output {
    /// The single-line JSON record.
    pub fn json_line(&self) -> String {
        json!({"scenario": self.scenario, "params": self.params, "results": self.results})
            .to_string()
    }
}

/// Checks a bound and explains a violation.
pub fn check_bound(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if !(lo..=hi).contains(&v) {
        return Err(format!("--{name} must be between {lo} and {hi}, got {v}"));
    }
    Ok(())
}

static SEQ_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static TS_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts\":"));

fn parse_u64_prefix(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

/// Finds `"seq":N` and then `"ts":T` in a delivered frame, without parsing
/// the JSON (the payload's key order is fixed by [`write_payload`]).
pub fn extract_seq_ts(frame: &[u8]) -> Option<(u64, u64)> {
    let i = SEQ_KEY.find(frame)? + 6;
    let seq = parse_u64_prefix(&frame[i..])?;
    let j = i + TS_KEY.find(&frame[i..])? + 5;
    let ts = parse_u64_prefix(&frame[j..])?;
    Some((seq, ts))
}

/// Writes the benchmark payload `{"seq":S,"ts":T,"pad":"xx.."}` into `buf`
/// (cleared first), padded to `total_len` bytes when that is larger than
/// the minimum.
pub fn write_payload(buf: &mut Vec<u8>, seq: u64, ts_ns: u64, total_len: usize) {
    use std::io::Write;
    buf.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{{\"seq\":{seq},\"ts\":{ts_ns},\"pad\":\"");
    let fixed = buf.len() + 2;
    let pad = total_len.saturating_sub(fixed);
    buf.resize(buf.len() + pad, b'x');
    buf.extend_from_slice(b"\"}");
}

/// Per-run state shared by every subscriber task (one thread, so a
/// `RefCell`).
#[derive(Default, Debug)]
pub struct SubState {
    /// Delivery latencies of the current window.
    pub hist: Latency,
    /// Deliveries with `seq >= min_seq`.
    pub received: u64,
    /// Deliveries from an earlier window.
    pub stale: u64,
    /// Frames without a benchmark payload.
    pub other: u64,
    /// First sequence number of the current window.
    pub min_seq: u64,
    /// Subscribers still open.
    pub alive: u64,
    /// Subscribers closed since the last reset, by close code or reason.
    pub closed: BTreeMap<String, u64>,
}

impl SubState {
    /// Starts a new window whose payloads have `seq >= min_seq`.
    pub fn reset(&mut self, min_seq: u64) {
        self.hist.reset();
        self.received = 0;
        self.stale = 0;
        self.other = 0;
        self.min_seq = min_seq;
        self.closed.clear();
    }

    /// Subscribers closed since the last reset.
    pub fn closed_count(&self) -> u64 {
        self.closed.values().sum()
    }
}

/// Label for how a connection ended.
pub fn end_label(r: &std::io::Result<Msg>) -> String {
    match r {
        Ok(Msg::Close(Some(c))) => c.to_string(),
        Ok(Msg::Close(None)) => "close_without_code".into(),
        Ok(Msg::Eof) => "eof_without_close".into(),
        Ok(_) => "unexpected".into(),
        Err(e) => format!("error_{}", net::error_kind(e)),
    }
}

/// A subscriber: records every delivery's latency until the connection
/// ends, then records how it ended.
pub async fn subscriber_loop(mut ws: WsClient, st: Rc<RefCell<SubState>>) {
    let end = loop {
        let r = ws.recv().await;
        match r {
            Ok(Msg::Text | Msg::Binary) => {
                let now = clock::now_ns();
                let mut s = st.borrow_mut();
                match extract_seq_ts(ws.payload()) {
                    Some((seq, ts)) if seq >= s.min_seq => {
                        s.received += 1;
                        s.hist.record_ns(now.saturating_sub(ts));
                    }
                    Some(_) => s.stale += 1,
                    None => s.other += 1,
                }
            }
            _ => break end_label(&r),
        }
    };
    let mut s = st.borrow_mut();
    s.alive = s.alive.saturating_sub(1);
    *s.closed.entry(end).or_default() += 1;
}

/// Opens one session: the WebSocket handshake, then for Switchboard the
/// `welcome` frame and, with `join`, the `joined` reply.
pub async fn open_session(
    target: &Target,
    index: u64,
    protocol: Protocol,
    join: Option<&str>,
    timeout: Duration,
) -> Result<WsClient, ConnectError> {
    let deadline = Instant::now() + timeout;
    let mut ws = WsClient::connect(target, net::source_ip(&target.addr, index), timeout).await?;
    if protocol == Protocol::Raw {
        return Ok(ws);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let r = tokio::time::timeout(left, async {
        match ws.recv().await? {
            Msg::Text if ws.payload().starts_with(b"{\"type\":\"welcome\"") => {}
            Msg::Text => {
                return Err(ConnectError::Malformed(format!(
                    "expected welcome, got {}",
                    String::from_utf8_lossy(&ws.payload()[..ws.payload().len().min(120)])
                )));
            }
            other => {
                return Err(ConnectError::Malformed(format!(
                    "expected welcome, got {other:?}"
                )));
            }
        }
        if let Some(room) = join {
            let frame = json!({"type": "join", "room": room}).to_string();
            ws.send_text(frame.as_bytes()).await?;
            loop {
                match ws.recv().await? {
                    Msg::Text if ws.payload().starts_with(b"{\"type\":\"joined\"") => break,
                    Msg::Text if ws.payload().starts_with(b"{\"type\":\"error\"") => {
                        return Err(ConnectError::Malformed(format!(
                            "join refused: {}",
                            String::from_utf8_lossy(ws.payload())
                        )));
                    }
                    Msg::Text | Msg::Binary => continue,
                    other => {
                        return Err(ConnectError::Malformed(format!(
                            "closed while joining: {other:?}"
                        )));
                    }
                }
            }
        }
        Ok(())
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(ws),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Result of opening many subscriber sessions.
#[derive(Default, Debug)]
pub struct Opened {
    /// The subscriber tasks (abort them to close the connections).
    pub tasks: Vec<JoinHandle<()>>,
    /// Sessions that failed to open, by reason.
    pub failures: BTreeMap<String, u64>,
    /// First failure message, for the error report.
    pub first_error: Option<String>,
    /// Time to open them all.
    pub elapsed: Duration,
    /// Time each session took to open.
    pub open_latency: Latency,
}

impl Opened {
    /// Adds the sessions opened by another call (to another node).
    pub fn merge(&mut self, other: Opened) {
        self.tasks.extend(other.tasks);
        for (reason, n) in other.failures {
            *self.failures.entry(reason).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.open_latency.merge(&other.open_latency);
    }
}

/// Opens `n` sessions with at most `concurrency` handshakes in flight; each
/// open session runs [`subscriber_loop`] on `st`.
pub async fn open_subscribers(
    target: &Target,
    n: usize,
    concurrency: usize,
    protocol: Protocol,
    join: Option<&str>,
    st: &Rc<RefCell<SubState>>,
) -> Opened {
    let started = Instant::now();
    let sem = std::sync::Arc::new(Semaphore::new(concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Duration, ConnectError>>();
    let mut tasks = Vec::with_capacity(n);
    let join: Option<Rc<str>> = join.map(Rc::from);
    for i in 0..n {
        // The semaphore is never closed.
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let target = target.clone();
        let tx = tx.clone();
        let st = st.clone();
        let join = join.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let t = Instant::now();
            let r = open_session(
                &target,
                i as u64,
                protocol,
                join.as_deref(),
                Duration::from_secs(15),
            )
            .await;
            drop(permit);
            match r {
                Ok(ws) => {
                    st.borrow_mut().alive += 1;
                    let _ = tx.send(Ok(t.elapsed()));
                    drop(tx);
                    subscriber_loop(ws, st).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        }));
        if i > 0 && i % 2000 == 0 {
            eprintln!("  opened {i}/{n} connections...");
        }
    }
    drop(tx);
    let mut failures = BTreeMap::new();
    let mut first_error = None;
    let mut open_latency = Latency::new();
    for _ in 0..tasks.len() {
        let Some(r) = rx.recv().await else {
            break;
        };
        match r {
            Ok(d) => open_latency.record_us(d.as_micros() as u64),
            Err(e) => {
                *failures.entry(e.label()).or_insert(0) += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Opened {
        tasks,
        failures,
        first_error,
        elapsed: started.elapsed(),
        open_latency,
    }
}

/// Samples a process's RSS periodically and keeps the peak.
#[derive(Debug)]
pub struct RssSampler {
    peak: Rc<std::cell::Cell<u64>>,
    task: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid` every 200 ms (does nothing without a pid).
    pub fn start(pid: Option<u32>) -> RssSampler {
        let peak = Rc::new(std::cell::Cell::new(0));
        let task = pid.map(|pid| {
            let peak = peak.clone();
            tokio::task::spawn_local(async move {
                loop {
                    if let Ok(v) = crate::procfs::rss_kib(Some(pid)) {
                        peak.set(peak.get().max(v));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        RssSampler { peak, task }
    }

    /// Stops sampling and returns the peak in KiB (`None` without a pid).
    pub fn stop(mut self, pid: Option<u32>) -> Option<u64> {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let last = pid.and_then(|p| crate::procfs::rss_kib(Some(p)).ok());
        pid.map(|_| self.peak.get().max(last.unwrap_or(0)))
    }
}

/// Formats an optional number for the human summary.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// The server's RSS in KiB, if a pid is watched.
pub fn server_rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| crate::procfs::rss_kib(Some(p)).ok())
}

/// Fails with a clear message when the watched server process is gone.
pub fn check_server_alive(pid: Option<u32>) -> Result<(), String> {
    match pid {
        Some(p) if !std::path::Path::new(&format!("/proc/{p}")).exists() => Err(format!(
            "server process {p} is gone (crashed or was stopped)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_through_frames() {
        let mut buf = Vec::new();
        write_payload(&mut buf, 42, 123_456_789, 100);
        assert_eq!(buf.len(), 100);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["ts"], 123_456_789u64);
        assert_eq!(extract_seq_ts(&buf), Some((42, 123_456_789)));

        // Inside a Switchboard message frame.
        let frame = format!(
            r#"{{"type":"message","room":"bench","offset":7,"from":"guest-1","data":{}}}"#,
            String::from_utf8(buf.clone()).unwrap()
        );
        assert_eq!(extract_seq_ts(frame.as_bytes()), Some((42, 123_456_789)));

        // Too small a size still yields a valid payload.
        write_payload(&mut buf, u64::MAX, u64::MAX, 1);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["pad"], "");
        assert_eq!(extract_seq_ts(&buf), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn extract_rejects_foreign_frames() {
        assert_eq!(extract_seq_ts(br#"{"type":"welcome","user":"u"}"#), None);
        assert_eq!(extract_seq_ts(br#"{"seq":x,"ts":1}"#), None);
        assert_eq!(extract_seq_ts(br#"{"seq":1}"#), None);
        assert_eq!(
            extract_seq_ts(br#"{"seq":99999999999999999999,"ts":1}"#),
            None
        );
    }

    #[test]
    fn sub_state_resets_per_window() {
        let mut s = SubState {
            received: 5,
            alive: 3,
            ..SubState::default()
        };
        s.closed.insert("4000".into(), 2);
        s.hist.record_us(10);
        s.reset(100);
        assert_eq!(
            (s.received, s.min_seq, s.closed_count(), s.alive),
            (0, 100, 0, 3)
        );
        assert_eq!(s.hist.count(), 0);
    }

    #[test]
    fn bounds() {
        assert!(check_bound("rate", 5.0, 0.1, 10.0).is_ok());
        assert!(
            check_bound("rate", 11.0, 0.1, 10.0)
                .unwrap_err()
                .contains("--rate")
        );
    }
}
