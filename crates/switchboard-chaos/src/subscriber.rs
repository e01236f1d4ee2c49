//! A room subscriber that speaks `docs/protocol.md` to the letter and
//! hides nothing: it connects, reads `welcome`, joins (with `since` and
//! `replay_new_epoch` once it has a position), records every `message`
//! frame of its room in arrival order (duplicates included: nothing is
//! deduplicated), and on a close or a dropped connection reconnects with
//! the reconnect policy of the close code: at once with a little jitter
//! after 1001, 1012 and 4005, else exponential backoff with full jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// The longest a connect, a `welcome` or a `joined` may take.
const STEP: Duration = Duration::from_secs(10);

/// When a subscriber reconnects: exponential backoff with full jitter
/// after a dropped connection, a refused upgrade or most close codes; a
/// short jitter only after 1001, 1012 and 4005 ("reconnect at once").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The ceiling of the first backoff step, doubled per failed attempt.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    /// The window of the jitter before reconnecting at once.
    pub going_away_jitter: Duration,
}

impl Policy {
    /// Quick retries, for the scenarios that measure delivery rather
    /// than the clients' pacing: 200 ms base, 5 s cap, 500 ms jitter.
    pub const QUICK: Policy = Policy {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
        going_away_jitter: Duration::from_millis(500),
    };

    /// The defaults of both of the project's clients: 500 ms base, 30 s
    /// cap, 1 s jitter (`switchboard_client::Backoff`, the JS client's
    /// options).
    pub const CLIENTS: Policy = Policy {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
        going_away_jitter: Duration::from_secs(1),
    };
}

/// What one subscriber saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// The `n` of every message of the room, in arrival order.
    pub received: Vec<u64>,
    /// From noticing a lost connection to the `joined` of the rejoin.
    pub reconnects: Vec<Duration>,
    /// Every `error` frame, as received.
    pub errors: Vec<String>,
    /// The code of every close frame from the server.
    pub close_codes: Vec<u16>,
    /// Connections that ended without a close frame.
    pub dropped: u32,
    /// Connects or upgrades that failed.
    pub failed_connects: u32,
    /// Rejoins answered with `"recovered": false`.
    pub gaps: u32,
    /// `reset` frames (the room's epoch changed).
    pub resets: u32,
    /// The connection ids it had, oldest first.
    pub conns: Vec<String>,
    /// When each `welcome` arrived (one per upgrade that succeeded).
    pub welcomed_at: Vec<Instant>,
    /// When each `joined` of the room arrived, the first join included.
    pub joined_at: Vec<Instant>,
    /// The HTTP status of every upgrade refused with one (429, 503...).
    pub refused: Vec<u16>,
}

/// Progress shared with the scenario while subscribers run.
#[derive(Debug, Default)]
pub struct Progress {
    /// Subscribers whose first `joined` arrived.
    pub joined: AtomicUsize,
}

/// One subscriber's handle: its highest `n` so far, for waiting on the
/// stream's end, and when it last joined.
#[derive(Debug, Default)]
pub struct Mark {
    /// The highest `n` received so far.
    pub highest: AtomicU64,
    /// Milliseconds from [`epoch`] to its latest `joined`; 0 before the
    /// first.
    pub joined_ms: AtomicU64,
    /// Its connection was lost and the room is not joined again yet.
    pub down: AtomicBool,
}

/// The instant [`Mark::joined_ms`] counts from: the first call.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds from [`epoch`] to now, at least 1.
pub fn now_ms() -> u64 {
    (epoch().elapsed().as_millis() as u64).max(1)
}

/// What every kind of subscriber records as it receives, joins and loses
/// its connection, in its [`Report`] and in the [`Mark`] and [`Progress`]
/// the scenario watches.
#[derive(Debug)]
pub struct Tracker {
    mark: Arc<Mark>,
    progress: Arc<Progress>,
    /// Since when the connection has been lost, until the next join.
    down_since: Option<Instant>,
}

impl Tracker {
    /// A tracker for one subscriber.
    pub fn new(mark: Arc<Mark>, progress: Arc<Progress>) -> Tracker {
        Tracker {
            mark,
            progress,
            down_since: None,
        }
    }

    /// A message of the room, its `n`.
    pub fn received(&self, report: &mut Report, n: u64) {
        report.received.push(n);
        self.mark.highest.fetch_max(n, Ordering::Relaxed);
    }

    /// The room was joined: the first time, or again after a lost
    /// connection (whose reconnect time this records).
    pub fn joined(&mut self, report: &mut Report) {
        if report.joined_at.is_empty() {
            self.progress.joined.fetch_add(1, Ordering::Relaxed);
        }
        report.joined_at.push(Instant::now());
        self.mark.joined_ms.store(now_ms(), Ordering::Relaxed);
        self.mark.down.store(false, Ordering::Relaxed);
        if let Some(since) = self.down_since.take() {
            report.reconnects.push(since.elapsed());
        }
    }

    /// The connection was lost, or an attempt to make one failed.
    pub fn lost(&mut self) {
        self.down_since.get_or_insert_with(Instant::now);
        self.mark.down.store(true, Ordering::Relaxed);
    }
}

/// What a subscriber does on its own, at times the scenario picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Keep going.
    Run,
    /// Close the connection (1000) now and reconnect when told to run.
    Disconnect,
    /// Close and finish.
    Stop,
}

/// Runs one subscriber of `room` at `url` until told to stop.
pub async fn run(
    url: String,
    room: String,
    progress: Arc<Progress>,
    mark: Arc<Mark>,
    mut commands: watch::Receiver<Command>,
    policy: Policy,
) -> Report {
    let mut report = Report::default();
    // The position: last offset and the epoch it belongs to.
    let mut position: Option<(u64, String)> = None;
    let mut tracker = Tracker::new(mark, progress);
    let mut attempt: u32 = 0;
    let mut join_id: u64 = 0;
    loop {
        let command = *commands.borrow_and_update();
        match command {
            Command::Stop => return report,
            Command::Disconnect => {
                if commands.changed().await.is_err() {
                    return report;
                }
                continue;
            }
            Command::Run => {}
        }
        let connected = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(&url)).await;
        let mut socket = match connected {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                report.refused.push(response.status().as_u16());
                report.failed_connects += 1;
                tracker.lost();
                backoff(&policy, &mut attempt).await;
                continue;
            }
            _ => {
                report.failed_connects += 1;
                tracker.lost();
                backoff(&policy, &mut attempt).await;
                continue;
            }
        };
        join_id += 1;
        let mut join = json!({"type": "join", "room": room, "id": join_id});
        if let Some((offset, epoch)) = &position {
            join["since"] = json!({"offset": offset, "epoch": epoch});
            join["replay_new_epoch"] = json!(true);
        }
        let mut welcomed = false;
        let mut joined = false;
        // How this connection ended: Some(code) for a close frame.
        let mut ended_with: Option<u16> = None;
        let mut told_to_disconnect = false;
        loop {
            let frame = tokio::select! {
                biased;
                changed = commands.changed() => {
                    let command = if changed.is_ok() { *commands.borrow_and_update() } else { Command::Stop };
                    if command != Command::Run {
                        let _ = socket.close(None).await;
                        // Read the server's answer to the close.
                        let _ = tokio::time::timeout(STEP, async {
                            while let Some(Ok(_)) = socket.next().await {}
                        })
                        .await;
                        if command == Command::Stop {
                            return report;
                        }
                        told_to_disconnect = true;
                        break;
                    }
                    continue;
                }
                frame = tokio::time::timeout(if joined { Duration::from_secs(3600) } else { STEP }, socket.next()) => frame,
            };
            let message = match frame {
                Ok(Some(Ok(message))) => message,
                // An error, the end of the stream, or no welcome/joined in time.
                _ => break,
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(close) => {
                    ended_with = Some(close.map(|c| u16::from(c.code)).unwrap_or(1005));
                    // Let the library answer the close and see the end.
                    let _ = tokio::time::timeout(STEP, async {
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    break;
                }
                _ => continue,
            };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                report.errors.push(format!("not JSON: {text}"));
                continue;
            };
            match frame["type"].as_str().unwrap_or_default() {
                "welcome" if !welcomed => {
                    welcomed = true;
                    report.welcomed_at.push(Instant::now());
                    report
                        .conns
                        .push(frame["conn"].as_str().unwrap_or_default().to_string());
                    if socket.send(Message::text(join.to_string())).await.is_err() {
                        break;
                    }
                }
                "message" if frame["room"] == room.as_str() => {
                    let n = frame["data"]["n"].as_u64().unwrap_or(0);
                    tracker.received(&mut report, n);
                    if let (Some(offset), Some((last, _))) =
                        (frame["offset"].as_u64(), position.as_mut())
                    {
                        *last = offset;
                    }
                }
                "reset" if frame["id"] == join_id => {
                    report.resets += 1;
                    let epoch = frame["epoch"].as_str().unwrap_or_default().to_string();
                    position = Some((frame["offset"].as_u64().unwrap_or(0), epoch));
                }
                "joined" if frame["id"] == join_id => {
                    joined = true;
                    attempt = 0;
                    tracker.joined(&mut report);
                    if frame["recovered"] == false {
                        report.gaps += 1;
                    }
                    let epoch = frame["epoch"].as_str().unwrap_or_default().to_string();
                    position = Some((frame["offset"].as_u64().unwrap_or(0), epoch));
                }
                "error" => {
                    report.errors.push(text.to_string());
                    if frame["id"] == join_id && !joined {
                        // The join was refused (e.g. the broker is down):
                        // try again on a new connection, after a backoff.
                        let _ = socket.close(None).await;
                        break;
                    }
                }
                _ => {}
            }
        }
        tracker.lost();
        if told_to_disconnect {
            continue;
        }
        match ended_with {
            Some(code) => {
                report.close_codes.push(code);
                if matches!(code, 1001 | 1012 | 4005) {
                    let jitter = rand::random::<f64>() * policy.going_away_jitter.as_secs_f64();
                    tokio::time::sleep(Duration::from_secs_f64(jitter)).await;
                } else {
                    backoff(&policy, &mut attempt).await;
                }
            }
            None => {
                report.dropped += 1;
                backoff(&policy, &mut attempt).await;
            }
        }
    }
}

/// Sleeps a full-jitter exponential backoff step and counts the attempt.
async fn backoff(policy: &Policy, attempt: &mut u32) {
    let ceiling = policy
        .base
        .saturating_mul(1 << (*attempt).min(10))
        .min(policy.cap);
    *attempt += 1;
    let delay = ceiling.mul_f64(rand::random::<f64>());
    tokio::time::sleep(delay).await;
}
