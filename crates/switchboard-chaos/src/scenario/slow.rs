//! Slow consumers: a tenth of a room's subscribers stop reading while a
//! burst is published to it. They must be closed with 4000 (slow
//! consumer) once their outbound queue overflows, and the others must not
//! notice: the others' delivery latency p99 stays within twice that of a
//! run without the slow ones (a target), and the node's memory stays
//! bounded.
//!
//! Two runs on a fresh node each (the built-in broker: what is measured is
//! one node's fan-out): first the readers alone, then the readers and the
//! slow ones. Every message carries the instant it was published; every
//! reader takes its latency on arrival. A slow subscriber reads normally
//! until the burst starts, then stops reading until the node has closed
//! every slow one (its count of slow-consumer closes, read from `/health`
//! every 100 ms, in both runs alike)
//! or the burst is over, then reads what is left: the messages in the TCP
//! buffers, then the close frame (the node waits 5 seconds for a socket to
//! take it, then drops the connection without it).
//!
//! The target applies to the messages published while the slow ones were
//! connected and not reading (up to the one published when the node had
//! closed them all), in both runs: what slow consumers cost the others. The p99 of the whole burst is printed beside it: its end
//! also holds the slow ones' late reads, some 70 MB moved on loopback on
//! the same two cores as the readers, a cost of this single-machine set-up
//! that remote clients would not put on the node's machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use super::{Options, Outcome};
use crate::cluster::Node;
use crate::http;
use crate::sampler::{Sampler, Usage};
use crate::stream::quantile;
use switchboard_bench::target::Target;
use switchboard_bench::ws::{Msg, WsClient};

/// The most the readers' delivery latency p99 may grow when slow
/// subscribers are among them (a target: see [`super::Outcome`]).
const MAX_P99_RATIO: f64 = 2.0;

/// The share of subscribers that stop reading, in percent.
const SLOW_PERCENT: usize = 10;

/// The receive buffer of a slow subscriber's socket: a small one, as on a
/// slow link, so that the burst fills it instead of the client's memory.
const SLOW_RCVBUF: u32 = 16 * 1024;

/// The bytes of padding in each message of the burst.
const PAD: usize = 512;

/// Messages in the burst.
const BURST: u64 = 1000;

/// Deliveries per second the burst aims at: its publish rate is this over
/// the number of readers (40/s for 4,500 readers), within
/// [`BURST_RATES`]. It leaves the machine room to measure latency, not its
/// own saturation.
const DELIVERY_BUDGET: usize = 180_000;

/// The slowest and the fastest publish rate of the burst, per second.
const BURST_RATES: (usize, usize) = (40, 200);

/// Publishes per second of a burst to `readers` readers.
fn burst_rate(readers: usize) -> u32 {
    (DELIVERY_BUDGET / readers.max(1)).clamp(BURST_RATES.0, BURST_RATES.1) as u32
}

/// The longest a connect, `welcome` or `joined` may take.
const STEP: Duration = Duration::from_secs(20);

/// Runs the scenario with `opts.clients` subscribers in all.
pub async fn run(opts: &Options) -> Outcome {
    match run_inner(opts).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed("slow-consumers", why),
    }
}

/// What one reader saw during the burst.
#[derive(Debug, Default)]
struct Reader {
    /// Every burst message's `n` and publish-to-arrival latency, in
    /// microseconds.
    latencies: Vec<(u32, u32)>,
    /// Burst messages received.
    received: u64,
    /// The close code, if the server closed it.
    closed: Option<u16>,
}

/// What one slow subscriber saw once it read again.
#[derive(Debug, Default)]
struct Slow {
    /// Burst messages it got out of the buffers.
    received: u64,
    /// The close code it found, if a close frame arrived.
    closed: Option<u16>,
    /// The connection ended without a close frame.
    dropped: bool,
}

/// Phases the subscribers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    Burst,
    After,
    Done,
}

/// Opens a slow subscriber (the lean client, on a socket with a small
/// receive buffer) and joins `room`.
async fn connect_slow(port: u16, rcvbuf: u32, room: &str) -> Result<WsClient, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(rcvbuf)
        .map_err(|e| e.to_string())?;
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let target = Target::parse(&format!("ws://127.0.0.1:{port}/ws/chat"))?;
    let ws = WsClient::upgrade(tcp, &target, STEP)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    join(ws, room).await
}

/// The burst message fields a subscriber reads: `n` and `t` (microseconds
/// from the scenario's start). The publisher writes them first in `data`,
/// so they are read off the frame's text without decoding the padding: a
/// reader of thousands of connections must keep up with the burst.
fn burst_fields(text: &str) -> Option<(u64, u64)> {
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let number = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        let digits: &str = &text[at..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    };
    Some((number(r#""data":{"n":"#)?, number(r#","t":"#)?))
}

/// Opens a reader on the load tool's lean client (one reused buffer per
/// connection, no allocation per message), so that thousands of readers
/// keep up with the burst, and joins `room`.
async fn connect_reader(port: u16, room: &str) -> Result<WsClient, String> {
    let target = Target::parse(&format!("ws://127.0.0.1:{port}/ws/chat"))?;
    let ws = WsClient::connect(&target, None, STEP)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    join(ws, room).await
}

/// Joins `room` once `welcome` has come.
async fn join(mut ws: WsClient, room: &str) -> Result<WsClient, String> {
    let join = json!({"type": "join", "room": room, "id": 1}).to_string();
    let mut sent = false;
    tokio::time::timeout(STEP, async {
        loop {
            match ws.recv().await {
                Ok(Msg::Text) => {
                    let text = std::str::from_utf8(ws.payload()).unwrap_or_default();
                    if text.starts_with(r#"{"type":"welcome""#) && !sent {
                        sent = true;
                        ws.send_text(join.as_bytes())
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if text.starts_with(r#"{"type":"joined""#) {
                        return Ok(());
                    }
                }
                Ok(Msg::Binary) => {}
                Ok(Msg::Close(code)) => return Err(format!("closed with {code:?} before joined")),
                Ok(Msg::Eof) | Err(_) => return Err("ended before joined".to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no welcome and joined in time".to_string())??;
    Ok(ws)
}

async fn reader(mut ws: WsClient, start: Instant, mut phase: watch::Receiver<Phase>) -> Reader {
    let mut out = Reader::default();
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow_and_update() == Phase::Done {
                    ws.close(Duration::from_secs(1)).await;
                    return out;
                }
            }
            message = ws.recv() => match message {
                Ok(Msg::Text) => {
                    let text = std::str::from_utf8(ws.payload()).unwrap_or_default();
                    if let Some((n, t)) = burst_fields(text) {
                        let now = start.elapsed().as_micros() as u64;
                        let us = now.saturating_sub(t).min(u64::from(u32::MAX)) as u32;
                        out.latencies.push((n as u32, us));
                        out.received += 1;
                    }
                }
                Ok(Msg::Binary) => {}
                Ok(Msg::Close(code)) => {
                    out.closed = Some(code.unwrap_or(1005));
                    return out;
                }
                Ok(Msg::Eof) | Err(_) => {
                    out.closed = Some(1006);
                    return out;
                }
            }
        }
    }
}

async fn slow(mut ws: WsClient, mut phase: watch::Receiver<Phase>) -> Slow {
    let mut out = Slow::default();
    // Pongs wait for the next frame sent, so that `recv` stays safe to
    // cancel below.
    ws.set_auto_pong(false);
    // Empty the small receive buffer in one read when reading again.
    ws.set_read_size(4 * SLOW_RCVBUF as usize);
    // Read normally until the burst starts.
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow_and_update() != Phase::Before {
                    break;
                }
            }
            message = ws.recv() => if !matches!(message, Ok(Msg::Text | Msg::Binary)) {
                out.dropped = true;
                return out;
            }
        }
    }
    // Stop reading until the burst is over.
    while *phase.borrow_and_update() == Phase::Burst {
        if phase.changed().await.is_err() {
            break;
        }
    }
    // Read what is left, on the lean client: five hundred of these drain
    // some 70 MB at once while the readers are timing the burst in the
    // same process, and a client that allocated per message would show up
    // in the readers' latency.
    let _ = tokio::time::timeout(STEP, async {
        loop {
            match ws.recv().await {
                Ok(Msg::Text) => {
                    let text = std::str::from_utf8(ws.payload()).unwrap_or_default();
                    if burst_fields(text).is_some() {
                        out.received += 1;
                    }
                }
                Ok(Msg::Binary) => {}
                Ok(Msg::Close(code)) => {
                    out.closed = Some(code.unwrap_or(1005));
                    return;
                }
                Ok(Msg::Eof) | Err(_) => {
                    out.dropped = true;
                    return;
                }
            }
        }
    })
    .await;
    out
}

/// One run's figures.
#[derive(Debug, Default)]
struct Run {
    readers: usize,
    slow: usize,
    /// Every reader's `(n, latency in µs)` of every burst message.
    latencies: Vec<(u32, u32)>,
    /// The burst messages published before the node had closed every slow
    /// subscriber (none in a run without them).
    stalled_until: Option<u64>,
    /// Burst messages the readers missed, all readers together.
    missed: u64,
    /// Readers the server closed.
    readers_closed: usize,
    slow_4000: usize,
    slow_other_close: usize,
    slow_dropped: usize,
    slow_still_open: usize,
    slow_received: u64,
    /// The node's count of slow-consumer closes.
    node_slow_closes: u64,
    /// The node's count of connections closed for a missed pong.
    node_heartbeat_closes: u64,
    /// How long publishing the burst took.
    burst_took: Duration,
    rss_rest_kib: u64,
    usage: Usage,
    failed_publishes: u64,
}

async fn one_run(opts: &Options, readers: usize, slow_count: usize) -> Result<Run, String> {
    let node = Node::start(
        &opts.binary,
        &[
            "--port".into(),
            "0".into(),
            "--upgrade-rate".into(),
            "0".into(),
        ],
    )
    .await?;
    let room = "chaos-slow";
    let (phase_tx, phase_rx) = watch::channel(Phase::Before);
    let start = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let mut reader_tasks = Vec::new();
    let mut slow_tasks = Vec::new();
    // Slow ones spread among the readers, as they would be.
    for i in 0..readers + slow_count {
        let is_slow = slow_count > 0
            && i % (readers + slow_count).div_ceil(slow_count) == 0
            && slow_tasks.len() < slow_count;
        let (port, phase, connected) = (node.port, phase_rx.clone(), connected.clone());
        if is_slow {
            slow_tasks.push(tokio::spawn(async move {
                let ws = connect_slow(port, SLOW_RCVBUF, room).await?;
                connected.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(slow(ws, phase).await)
            }));
        } else {
            reader_tasks.push(tokio::spawn(async move {
                let ws = connect_reader(port, room).await?;
                connected.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(reader(ws, start, phase).await)
            }));
        }
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let total = readers + slow_count;
    let wait = Instant::now();
    while connected.load(Ordering::Relaxed) < total {
        if wait.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "only {} of {total} subscribers joined",
                connected.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_rest_kib = node.rss_kib();
    let sampler = Sampler::start(vec![node.pid()], Duration::from_millis(100));
    let _ = phase_tx.send(Phase::Burst);
    let pad = "x".repeat(PAD);
    let rate = burst_rate(readers);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let path = format!("/api/rooms/{room}/messages");
    let mut failed_publishes = 0;
    // Once the node closed every slow one, they read again, soon enough
    // to find the close frame it is holding for them. The node is asked
    // every 100 ms in both runs, so that the asking costs the readers
    // the same with and without slow subscribers.
    let watch_port = node.port;
    let watch_phase = phase_tx.clone();
    let published = Arc::new(AtomicU64::new(0));
    let watch_published = published.clone();
    let watcher = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            let Ok((200, body)) = http::get(watch_port, "/health").await else {
                continue;
            };
            let closed =
                serde_json::from_str::<Value>(&body).unwrap_or_default()["stats"]["slow_consumers"]
                    .as_u64()
                    .unwrap_or(0);
            if slow_count > 0 && closed >= slow_count as u64 {
                let _ = watch_phase.send(Phase::After);
                return Some(watch_published.load(Ordering::Relaxed));
            }
        }
    });
    let burst_start = Instant::now();
    let mut posts = Vec::new();
    for n in 1..=BURST {
        tick.tick().await;
        // Each publish on its own, so that a slow answer does not hold
        // up the burst's pace.
        let t = start.elapsed().as_micros() as u64;
        published.store(n, Ordering::Relaxed);
        let body = format!(r#"{{"data":{{"n":{n},"t":{t},"pad":"{pad}"}}}}"#);
        let (port, path) = (node.port, path.clone());
        posts.push(tokio::spawn(async move {
            matches!(http::post(port, &path, &body).await, Ok((200, _)))
        }));
    }
    for post in posts {
        if !post.await.unwrap_or(false) {
            failed_publishes += 1;
        }
    }
    let burst_took = burst_start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled_until = if watcher.is_finished() {
        watcher.await.ok().flatten()
    } else {
        watcher.abort();
        None
    };
    let usage = sampler.stop().await;
    let _ = phase_tx.send_replace(Phase::After);
    // Let the readers take the last messages and the slow ones read out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = node.health().await?;
    let _ = phase_tx.send(Phase::Done);

    let mut run = Run {
        readers,
        slow: slow_count,
        rss_rest_kib,
        usage,
        failed_publishes,
        node_slow_closes: health["stats"]["slow_consumers"].as_u64().unwrap_or(0),
        node_heartbeat_closes: health["stats"]["heartbeat_timeouts"].as_u64().unwrap_or(0),
        burst_took,
        stalled_until,
        ..Run::default()
    };
    for task in reader_tasks {
        let r = task.await.map_err(|e| e.to_string())??;
        run.missed += BURST.saturating_sub(r.received);
        run.readers_closed += usize::from(r.closed.is_some());
        run.latencies.extend_from_slice(&r.latencies);
    }
    for task in slow_tasks {
        let s = task.await.map_err(|e| e.to_string())??;
        run.slow_received += s.received;
        match (s.closed, s.dropped) {
            (Some(4000), _) => run.slow_4000 += 1,
            (Some(_), _) => run.slow_other_close += 1,
            (None, true) => run.slow_dropped += 1,
            (None, false) => run.slow_still_open += 1,
        }
    }
    Ok(run)
}

/// p50, p99 and max latency, in µs, of the burst messages up to `until`.
fn latency(run: &Run, until: u64) -> (u64, u64, u64) {
    let mut values: Vec<Duration> = run
        .latencies
        .iter()
        .filter(|&&(n, _)| u64::from(n) <= until)
        .map(|&(_, us)| Duration::from_micros(u64::from(us)))
        .collect();
    let p50 = quantile(&mut values, 0.5).as_micros() as u64;
    let p99 = quantile(&mut values, 0.99).as_micros() as u64;
    let max = values.last().map_or(0, |d| d.as_micros() as u64);
    (p50, p99, max)
}

fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}

async fn run_inner(opts: &Options) -> Result<Outcome, String> {
    let total = opts.clients;
    let slow_count = (total * SLOW_PERCENT / 100).max(1);
    let readers = total - slow_count;
    let without = one_run(opts, readers, 0).await?;
    let with = one_run(opts, readers, slow_count).await?;
    // The target's window: the messages published while the slow ones
    // were connected and not reading, in both runs. The whole burst also
    // holds the slow ones' late reads (some 70 MB on loopback, on the
    // cores the readers share), which no remote client would put there.
    let stalled = with.stalled_until.unwrap_or(BURST);
    let (p50, p99, max) = latency(&with, stalled);
    let (p50_without, p99_without, max_without) = latency(&without, stalled);
    let (_, p99_all, max_all) = latency(&with, BURST);
    let (_, p99_all_without, max_all_without) = latency(&without, BURST);
    let ratio = p99 as f64 / p99_without.max(1) as f64;
    let ratio_all = p99_all as f64 / p99_all_without.max(1) as f64;
    // The most a slow connection may cost: its outbound queue's byte bound
    // (2 MiB by default) and the messages its writer holds.
    let bound_kib = without.usage.rss_peak_kib + (slow_count as u64) * 2 * 1024;
    let line = format!(
        "slow-consumers: subscribers={total} slow={slow_count} burst={BURST}x{}B at {}/s \
         (took {:.1}s, {:.1}s without slow) closed_4000={} heartbeat_closes={} slow_saw_close_frame={} slow_dropped={} slow_other_close={} \
         slow_still_open={} slow_buffered_avg={} stalled_through={stalled} readers_p99={} (without slow: {}, ratio {ratio:.2}) readers_p50={} ({}) \
         readers_max={} ({}) whole_burst_p99={} ({}, ratio {ratio_all:.2}) whole_burst_max={} ({}) \
         readers_missed={} readers_closed={} rss_rest={}KiB peak={}KiB \
         (without slow: rest {}KiB peak {}KiB) failed_publishes={}",
        PAD + 20,
        burst_rate(readers),
        with.burst_took.as_secs_f64(),
        without.burst_took.as_secs_f64(),
        with.node_slow_closes,
        with.node_heartbeat_closes + without.node_heartbeat_closes,
        with.slow_4000,
        with.slow_dropped,
        with.slow_other_close,
        with.slow_still_open,
        with.slow_received / slow_count as u64,
        ms(p99),
        ms(p99_without),
        ms(p50),
        ms(p50_without),
        ms(max),
        ms(max_without),
        ms(p99_all),
        ms(p99_all_without),
        ms(max_all),
        ms(max_all_without),
        with.missed + without.missed,
        with.readers_closed + without.readers_closed,
        with.rss_rest_kib,
        with.usage.rss_peak_kib,
        without.rss_rest_kib,
        without.usage.rss_peak_kib,
        with.failed_publishes + without.failed_publishes,
    );
    let checks = vec![
        (
            with.node_slow_closes == slow_count as u64,
            format!(
                "the node closed {} connections as slow consumers, not the {slow_count} that stopped reading",
                with.node_slow_closes
            ),
        ),
        (
            with.slow_4000 == slow_count,
            format!(
                "of {slow_count} slow subscribers, {} found the 4000 close frame, {} another close, \
                 {} a dropped connection, {} were still open",
                with.slow_4000, with.slow_other_close, with.slow_dropped, with.slow_still_open
            ),
        ),
        (
            with.missed + without.missed == 0 && with.readers_closed + without.readers_closed == 0,
            format!(
                "readers missed {} messages, {} were closed",
                with.missed + without.missed,
                with.readers_closed + without.readers_closed
            ),
        ),
        (
            with.usage.rss_peak_kib <= bound_kib,
            format!(
                "peak RSS {}KiB above the bound {bound_kib}KiB",
                with.usage.rss_peak_kib
            ),
        ),
        (
            with.failed_publishes + without.failed_publishes == 0,
            "publishes failed".into(),
        ),
    ];
    let targets = [(
        ratio <= MAX_P99_RATIO,
        format!(
            "the readers' p99 over messages 1-{stalled} was {ratio:.2}x that of the run without slow subscribers"
        ),
    )];
    let _ = (without.readers, with.slow);
    Ok(Outcome::new(line, &checks).with_targets(&targets))
}

#[cfg(test)]
mod tests {
    use super::burst_fields;

    #[test]
    fn burst_fields_are_read_off_the_message_frame() {
        let frame =
            r#"{"type":"message","room":"r","offset":7,"data":{"n":12,"t":345678,"pad":"xx"}}"#;
        assert_eq!(burst_fields(frame), Some((12, 345678)));
        assert_eq!(burst_fields(r#"{"type":"joined","room":"r"}"#), None);
        assert_eq!(
            burst_fields(r#"{"type":"message","room":"r","data":{"text":"hi"}}"#),
            None
        );
    }
}
