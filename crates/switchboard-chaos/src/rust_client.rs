//! A room subscriber on the Rust client (`crates/switchboard-client`): it
//! reconnects, rejoins and recovers on its own; this records what it
//! delivers to the application, in the same [`Report`] as the raw
//! subscribers, so that the same tally applies to it.

use std::sync::Arc;
use std::time::Instant;

use switchboard_client::{ClientBuilder, Event};
use tokio::sync::watch;

use crate::subscriber::{Command, Mark, Progress, Report, Tracker};

/// Runs one Rust-client subscriber of `room` at `url` until told to stop.
/// [`Command::Disconnect`] is ignored: the client decides when it
/// reconnects.
pub async fn run(
    url: String,
    room: String,
    progress: Arc<Progress>,
    mark: Arc<Mark>,
    mut commands: watch::Receiver<Command>,
) -> Report {
    let mut report = Report::default();
    let mut tracker = Tracker::new(mark, progress);
    let (client, mut events) = loop {
        match ClientBuilder::new(url.clone()).connect().await {
            Ok(pair) => break pair,
            Err(_) => report.failed_connects += 1,
        }
        if *commands.borrow() == Command::Stop {
            return report;
        }
    };
    while client.join(room.clone()).await.is_err() {
        report.errors.push("join failed".into());
        if *commands.borrow() == Command::Stop {
            return report;
        }
    }
    tracker.joined(&mut report);
    loop {
        let event = tokio::select! {
            changed = commands.changed() => {
                if changed.is_err() || *commands.borrow_and_update() == Command::Stop {
                    client.close().await;
                    return report;
                }
                continue;
            }
            event = events.recv() => event,
        };
        let Some(event) = event else {
            return report;
        };
        match event {
            Event::Message(m) if m.room() == Some(room.as_str()) => {
                let n = serde_json::from_str::<serde_json::Value>(m.data.get())
                    .ok()
                    .and_then(|v| v["n"].as_u64())
                    .unwrap_or(0);
                tracker.received(&mut report, n);
            }
            Event::Connected { conn, .. } => {
                // At `welcome`; the client rejoins its rooms right after,
                // which this counts as the rejoin.
                report.conns.push(conn);
                report.welcomed_at.push(Instant::now());
                if report.conns.len() > 1 {
                    tracker.joined(&mut report);
                }
            }
            Event::Disconnected { code, .. } => {
                tracker.lost();
                if code.0 == 1006 {
                    report.dropped += 1;
                } else {
                    report.close_codes.push(code.0);
                }
            }
            Event::RecoveryFailed { .. } => report.gaps += 1,
            Event::ServerError(e) => report.errors.push(format!("{e:?}")),
            Event::JoinFailed { .. } => report.errors.push("rejoin failed".into()),
            _ => {}
        }
    }
}
