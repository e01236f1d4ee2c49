//! What the soak's clients and the backend's traffic count, shared by every
//! task, and the problems they saw: anything a correct server and a
//! correct client never produce without a fault, which the soak has none
//! of.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Problem descriptions kept per kind, for the failure's report.
const SAMPLES: usize = 3;

/// Counters, each a relaxed atomic: they are read once the tasks are done.
#[derive(Debug, Default)]
pub struct Tally {
    /// Connections that got their `welcome`.
    pub opened: AtomicU64,
    /// Connections this side closed with a close frame, answered by the
    /// server.
    pub closed_clean: AtomicU64,
    /// Connections dropped without a close frame (FIN or RST).
    pub dropped: AtomicU64,
    /// Connections that came back with `user_stream` and `since`.
    pub resumed: AtomicU64,
    /// Churn clients started.
    pub churners: AtomicU64,
    /// Room messages the HTTP API accepted.
    pub api_rooms: AtomicU64,
    /// User messages the HTTP API accepted.
    pub api_users: AtomicU64,
    /// Broadcasts the HTTP API accepted.
    pub api_broadcasts: AtomicU64,
    /// Presence reads the HTTP API answered.
    pub api_presence: AtomicU64,
    /// Clients' `publish` frames acknowledged.
    pub client_acks: AtomicU64,
    /// `message` frames received: rooms, users and broadcasts, replays
    /// included.
    pub delivered: AtomicU64,
    /// Of those, replayed after a reconnect (room and user streams).
    pub replayed: AtomicU64,
    /// `presence_event` frames received.
    pub presence_events: AtomicU64,
    /// `presence` replies received.
    pub presence_replies: AtomicU64,
    /// Error frames that were asked for (a `leave` of a room not joined).
    pub expected_errors: AtomicU64,
    problems: Mutex<BTreeMap<&'static str, (u64, Vec<String>)>>,
}

impl Tally {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a problem of `kind`, keeping the first few descriptions.
    pub fn problem(&self, kind: &'static str, what: impl Into<String>) {
        let mut problems = self.problems.lock().expect("problems lock");
        let (n, samples) = problems.entry(kind).or_default();
        *n += 1;
        if samples.len() < SAMPLES {
            samples.push(what.into());
        }
    }

    /// How many problems of `kind` there were.
    pub fn problems_of(&self, kind: &str) -> u64 {
        self.problems
            .lock()
            .expect("problems lock")
            .get(kind)
            .map_or(0, |(n, _)| *n)
    }

    /// Every problem: the count per kind and a few descriptions.
    pub fn problems(&self) -> Vec<(&'static str, u64, Vec<String>)> {
        self.problems
            .lock()
            .expect("problems lock")
            .iter()
            .map(|(kind, (n, samples))| (*kind, *n, samples.clone()))
            .collect()
    }
}

/// The kinds of problem, as the figures name them.
pub mod kind {
    /// A connect or an upgrade failed (refused, timed out).
    pub const FAILED_CONNECT: &str = "failed_connects";
    /// A publish not accepted: HTTP status other than 200, an `error` to
    /// a client's `publish`, or no `ack` in time.
    pub const FAILED_PUBLISH: &str = "failed_publishes";
    /// An `error` frame nobody asked for.
    pub const ERROR_FRAME: &str = "error_frames";
    /// The server closed a connection, or it dropped, when nobody asked.
    pub const UNEXPECTED_CLOSE: &str = "unexpected_closes";
    /// A message whose offset is not the last one plus one, on a room, a
    /// user stream or the broadcasts.
    pub const HOLE: &str = "holes";
    /// A resume (`since`, `user_stream=<offset>:<epoch>`) not recovered.
    pub const NOT_RECOVERED: &str = "not_recovered";
    /// A request without its reply in time, or a reply to nothing asked.
    pub const NO_REPLY: &str = "no_reply";
    /// A frame that should not come: unknown type, a `reset`, a message of
    /// a room not joined, not JSON.
    pub const UNEXPECTED_FRAME: &str = "unexpected_frames";
    /// A presence read on the HTTP API that did not answer 200.
    pub const FAILED_READ: &str = "failed_reads";
}
