//! Room subscribers on the JavaScript client (`clients/js`), hosted by one
//! Node process (`js/subscribers.mjs`, on Node's built-in WebSocket, as in
//! a browser). The client reconnects, rejoins and recovers on its own; the
//! script writes what each client hands the application, one JSON line per
//! event, and this folds the lines into one [`Report`] per client, so that
//! the same tally applies to it as to the raw and the Rust subscribers.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::subscriber::{Command, Mark, Progress, Report, Tracker};

/// The script, beside this crate's sources.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/js/subscribers.mjs");

/// How long the script gets to close its clients before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One line of the script, for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Connecting,
    Connected(String),
    Joined,
    Message(u64),
    Disconnected(u16),
    Gap,
    Error(String),
}

/// Parses one line of the script: the client's index and what happened.
fn parse(line: &str) -> Option<(usize, Event)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let i = usize::try_from(v["i"].as_u64()?).ok()?;
    let event = match v["e"].as_str()? {
        "connecting" => Event::Connecting,
        "connected" => Event::Connected(v["conn"].as_str()?.to_string()),
        "joined" => Event::Joined,
        "m" => Event::Message(v["n"].as_u64()?),
        "disconnected" => Event::Disconnected(u16::try_from(v["code"].as_u64()?).ok()?),
        "gap" => Event::Gap,
        "error" => Event::Error(v["message"].as_str().unwrap_or("").to_string()),
        _ => return None,
    };
    Some((i, event))
}

/// The Node process and the task that reads it.
#[derive(Debug)]
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: JoinHandle<()>,
}

impl Host {
    /// Asks the script to close its clients and waits for it to end
    /// (killing it after a grace period).
    pub async fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.reader.abort();
    }
}

/// The `node` binary: `$NODE`, or `node` on the `PATH`.
fn node() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

/// Starts `count` JavaScript-client subscribers of `room` at `url` in one
/// Node process. Each gets a task, returned in order, that keeps the
/// client's [`Report`], its [`Mark`] and the shared [`Progress`] as the
/// script's lines come, and returns the report on [`Command::Stop`]
/// ([`Command::Disconnect`] is ignored: the client decides when it
/// reconnects).
pub fn start(
    url: &str,
    room: &str,
    progress: &Arc<Progress>,
    subscribers: Vec<(Arc<Mark>, watch::Receiver<Command>)>,
) -> Result<(Host, Vec<JoinHandle<Report>>), String> {
    let mut child = Process::new(node())
        .args([
            "--no-warnings",
            "--experimental-websocket",
            SCRIPT,
            url,
            room,
        ])
        .arg(subscribers.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start `{}` for the JavaScript client subscribers ({e}): \
                 install Node.js 20 or later (apt-get install nodejs), or set NODE",
                node()
            )
        })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout of the Node process")?;
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for (mark, commands) in subscribers {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        handles.push(tokio::spawn(run(rx, progress.clone(), mark, commands)));
    }
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((i, event)) = parse(&line)
                && let Some(tx) = senders.get(i)
            {
                let _ = tx.send(event);
            }
        }
        // The process ended: every client's channel closes with it.
    });
    Ok((
        Host {
            child,
            stdin,
            reader,
        },
        handles,
    ))
}

/// Keeps one client's record until told to stop.
async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    progress: Arc<Progress>,
    mark: Arc<Mark>,
    mut commands: watch::Receiver<Command>,
) -> Report {
    let mut report = Report::default();
    let mut tracker = Tracker::new(mark, progress);
    // An attempt is under way and has not reached `welcome`.
    let mut attempting = false;
    let mut host_ended = false;
    loop {
        let event = tokio::select! {
            changed = commands.changed() => {
                if changed.is_err() || *commands.borrow_and_update() == Command::Stop {
                    return report;
                }
                continue;
            }
            event = events.recv(), if !host_ended => event,
        };
        let Some(event) = event else {
            host_ended = true;
            report.errors.push("the Node process ended".into());
            continue;
        };
        match event {
            Event::Connecting => attempting = true,
            Event::Connected(conn) => {
                attempting = false;
                report.conns.push(conn);
                report.welcomed_at.push(Instant::now());
            }
            Event::Joined => tracker.joined(&mut report),
            Event::Message(n) => tracker.received(&mut report, n),
            Event::Disconnected(code) => {
                if attempting {
                    // Refused or failed before `welcome`: a browser's
                    // WebSocket tells no more than 1006.
                    attempting = false;
                    report.failed_connects += 1;
                } else {
                    tracker.lost();
                    if code == 1006 {
                        report.dropped += 1;
                    } else {
                        report.close_codes.push(code);
                    }
                }
            }
            Event::Gap => report.gaps += 1,
            Event::Error(message) => report.errors.push(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, parse};

    #[test]
    fn the_script_lines_parse_into_events() {
        assert_eq!(
            parse(r#"{"i":3,"e":"m","n":42}"#),
            Some((3, Event::Message(42)))
        );
        assert_eq!(
            parse(r#"{"i":0,"e":"connected","conn":"n2-17"}"#),
            Some((0, Event::Connected("n2-17".into())))
        );
        assert_eq!(
            parse(r#"{"i":1,"e":"disconnected","code":1001}"#),
            Some((1, Event::Disconnected(1001)))
        );
        assert_eq!(parse(r#"{"i":1,"e":"gap"}"#), Some((1, Event::Gap)));
        assert_eq!(parse(r#"{"e":"m","n":1}"#), None);
        assert_eq!(parse(r#"{"i":1,"e":"other"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
