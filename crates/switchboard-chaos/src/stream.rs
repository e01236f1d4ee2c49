//! A steady stream to many subscribers: the subscribers (through nginx),
//! a publisher on the HTTP API of one node, and the tally of what each
//! subscriber holds against what the publisher was told.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http;
use crate::subscriber::{self, Command, Mark, Policy, Progress, Report};

/// How long the subscribers get to join, and the stream's end to reach them.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// One publish and what the API answered.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its sequence number, `data.n`.
    pub n: u64,
    /// When the answer came.
    pub at: Instant,
    /// Accepted (200, with an offset) or not.
    pub acked: bool,
    /// The answer's status (0 when there was none).
    pub status: u16,
}

/// What one subscriber's record holds against the publisher's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Acknowledged messages it never received.
    pub lost: u64,
    /// Messages it received more than once (each extra copy counts).
    pub dup: u64,
    /// Messages that came after a later one.
    pub reordered: u64,
    /// Messages nobody published.
    pub unexpected: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.lost += o.lost;
        self.dup += o.dup;
        self.reordered += o.reordered;
        self.unexpected += o.unexpected;
    }
}

/// Tallies `received` (in arrival order) against the acknowledged
/// sequence numbers and every one attempted.
pub fn tally(acked: &[u64], attempted: &HashSet<u64>, received: &[u64]) -> Tally {
    let mut t = Tally::default();
    let mut seen = HashSet::new();
    let mut highest = 0;
    for &n in received {
        if !attempted.contains(&n) {
            t.unexpected += 1;
        } else if !seen.insert(n) {
            t.dup += 1;
        } else if n < highest {
            t.reordered += 1;
        }
        highest = highest.max(n);
    }
    t.lost = acked.iter().filter(|n| !seen.contains(n)).count() as u64;
    t
}

/// How many of `count` subscribers are the Rust client: one in fifty.
pub fn rust_clients(count: usize) -> usize {
    (count / 50).clamp(1, count)
}

/// How many of `count` subscribers are the JavaScript client: one in
/// fifty too (none when there is only one subscriber).
pub fn js_clients(count: usize) -> usize {
    (count / 50).max(1).min(count - rust_clients(count))
}

/// Which client a subscriber is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A raw-protocol client ([`subscriber`]).
    Raw,
    /// The JavaScript client ([`crate::js_client`]).
    Js,
    /// The Rust client ([`crate::rust_client`]).
    Rust,
}

/// The kind of subscriber `i` of `count`, as [`Subscribers::start`]
/// orders them.
pub fn kind(i: usize, count: usize) -> Kind {
    let rust = rust_clients(count);
    let js = js_clients(count);
    if i >= count - rust {
        Kind::Rust
    } else if i >= count - rust - js {
        Kind::Js
    } else {
        Kind::Raw
    }
}

/// Subscribers of one room, running.
#[derive(Debug)]
pub struct Subscribers {
    handles: Vec<JoinHandle<Report>>,
    marks: Vec<Arc<Mark>>,
    commands: Vec<watch::Sender<Command>>,
    /// The Node process of the JavaScript-client subscribers.
    js: Option<crate::js_client::Host>,
}

impl Subscribers {
    /// Starts `count` subscribers of `room` at `url` and waits until every
    /// one has joined. The first ones are raw-protocol clients, then
    /// [`js_clients`]`(count)` JavaScript clients (in one Node process),
    /// then [`rust_clients`]`(count)` Rust clients.
    pub async fn start(url: &str, room: &str, count: usize) -> Result<Subscribers, String> {
        Subscribers::start_with(url, room, count, Policy::QUICK).await
    }

    /// [`Subscribers::start`] with the raw subscribers reconnecting by
    /// `policy` (our clients keep their own defaults).
    pub async fn start_with(
        url: &str,
        room: &str,
        count: usize,
        policy: Policy,
    ) -> Result<Subscribers, String> {
        let rust = rust_clients(count);
        let js = js_clients(count);
        let raw = count - rust - js;
        let progress = Arc::new(Progress::default());
        let mut subs = Subscribers {
            handles: Vec::new(),
            marks: Vec::new(),
            commands: Vec::new(),
            js: None,
        };
        for _ in 0..raw {
            let (mark, rx) = subs.add();
            let (url, room, progress) = (url.to_string(), room.to_string(), progress.clone());
            subs.handles.push(tokio::spawn(subscriber::run(
                url, room, progress, mark, rx, policy,
            )));
            // Spread the connects a little: nginx and the nodes take them
            // in order, not as one burst.
            if subs.handles.len().is_multiple_of(100) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if js > 0 {
            let each = (0..js).map(|_| subs.add()).collect();
            let (host, handles) = crate::js_client::start(url, room, &progress, each)?;
            subs.js = Some(host);
            subs.handles.extend(handles);
        }
        for _ in 0..rust {
            let (mark, rx) = subs.add();
            let (url, room, progress) = (url.to_string(), room.to_string(), progress.clone());
            subs.handles.push(tokio::spawn(crate::rust_client::run(
                url, room, progress, mark, rx,
            )));
        }
        let start = Instant::now();
        while progress.joined.load(std::sync::atomic::Ordering::Relaxed) < count {
            if start.elapsed() > SETTLE_DEADLINE {
                return Err(format!(
                    "only {} of {count} subscribers joined within {SETTLE_DEADLINE:?}",
                    progress.joined.load(std::sync::atomic::Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(subs)
    }

    /// A new subscriber's mark and command channel, kept here.
    fn add(&mut self) -> (Arc<Mark>, watch::Receiver<Command>) {
        let mark = Arc::new(Mark::default());
        let (tx, rx) = watch::channel(Command::Run);
        self.marks.push(mark.clone());
        self.commands.push(tx);
        (mark, rx)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Each subscriber's progress, in start order.
    pub fn marks(&self) -> &[Arc<Mark>] {
        &self.marks
    }

    /// Tells subscriber `i` what to do.
    pub fn command(&self, i: usize, command: Command) {
        let _ = self.commands[i].send(command);
    }

    /// Waits until every subscriber received `n` and is connected and
    /// joined (a client that lost its connection after the stream's end
    /// must come back too), or the deadline passed; lets late copies
    /// arrive, then stops them all and returns their reports, in start
    /// order.
    pub async fn finish(mut self, n: u64) -> Vec<Report> {
        use std::sync::atomic::Ordering::Relaxed;
        let start = Instant::now();
        while start.elapsed() < SETTLE_DEADLINE
            && self
                .marks
                .iter()
                .any(|m| m.highest.load(Relaxed) < n || m.down.load(Relaxed))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop_all();
        let mut reports = Vec::new();
        for handle in std::mem::take(&mut self.handles) {
            reports.push(handle.await.unwrap_or_default());
        }
        if let Some(js) = self.js.take() {
            js.stop().await;
        }
        reports
    }

    /// Tells every subscriber to stop.
    fn stop_all(&self) {
        for tx in &self.commands {
            let _ = tx.send(Command::Stop);
        }
    }
}

/// Subscribers given up on before [`Subscribers::finish`] (a scenario
/// that failed to start) stop too, instead of holding their connections
/// for the rest of the process; the Node process is killed with its handle.
impl Drop for Subscribers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Publishes `{"n": 1..=count}` to `room` through the HTTP API of the
/// node on `port`, `rate` per second, one at a time; returns every answer.
pub fn publish(port: u16, room: &str, rate: u32, count: u64) -> JoinHandle<Vec<Published>> {
    let path = format!("/api/rooms/{room}/messages");
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 1..=count {
            tick.tick().await;
            let body = format!(r#"{{"data":{{"n":{n}}}}}"#);
            let (status, acked) = match http::post(port, &path, &body).await {
                Ok((200, body)) => (200, body.contains("\"offset\"")),
                Ok((status, _)) => (status, false),
                Err(_) => (0, false),
            };
            out.push(Published {
                n,
                at: Instant::now(),
                acked,
                status,
            });
        }
        out
    })
}

/// The `q` quantile (0..=1) of `values`, or zero when there are none.
pub fn quantile(values: &mut [Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

/// Seconds with one decimal, as the figures print them.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_each_kind_of_fault() {
        let attempted: HashSet<u64> = (1..=6).collect();
        let acked = [1, 2, 3, 4, 5];
        // 2 twice, 4 after 5, 3 missing, 6 failed but delivered, 9 unknown.
        let t = tally(&acked, &attempted, &[1, 2, 2, 5, 4, 6, 9]);
        assert_eq!(
            t,
            Tally {
                lost: 1,
                dup: 1,
                reordered: 1,
                unexpected: 1
            }
        );
        assert_eq!(
            tally(&acked, &attempted, &[1, 2, 3, 4, 5]),
            Tally::default()
        );
    }

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut v, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&mut v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&mut [], 0.5), Duration::ZERO);
    }
}
