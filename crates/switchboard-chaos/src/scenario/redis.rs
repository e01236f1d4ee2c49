//! Redis restarted (killed, then started empty on the same port: no
//! persistence) under a steady stream. Publishes during the outage must
//! fail loudly; nothing acknowledged may be lost; every node resubscribes;
//! a client that reconnects across the restart is told the epoch changed
//! (a `reset`) and gets the new epoch's messages. Two groups of
//! subscribers reconnect on purpose: one during the outage (back after
//! the restart), one after the new epoch has messages.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Options, Outcome};
use crate::cluster::Cluster;
use crate::stream::{self, Subscribers, Tally, secs};
use crate::subscriber::Command;

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(3);

/// Runs the scenario.
pub async fn run(opts: &Options) -> Outcome {
    match run_inner(opts).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed("redis-restart", why),
    }
}

async fn run_inner(opts: &Options) -> Result<Outcome, String> {
    let mut cluster = Cluster::start(&opts.binary, 3, &[], opts.clients).await?;
    let room = "chaos-redis-restart";
    let subs = Subscribers::start(&cluster.chat_url(), room, opts.clients).await?;
    let tenth = (subs.len() / 10).max(1);
    let during: Vec<usize> = (0..tenth).collect();
    let after: Vec<usize> = (tenth..2 * tenth).filter(|&i| i < subs.len()).collect();
    // The stream outlasts the outage threefold: a third before, the
    // outage, and enough after for both groups to come back.
    let messages = opts
        .messages
        .max((3.0 * OUTAGE.as_secs_f64() * f64::from(opts.rate)) as u64);
    let publisher = stream::publish(cluster.node(0).port, room, opts.rate, messages);
    let third = Duration::from_secs_f64(messages as f64 / 3.0 / f64::from(opts.rate));
    tokio::time::sleep(third).await;

    let down_at = Instant::now();
    cluster.redis.kill();
    tokio::time::sleep(OUTAGE / 3).await;
    for &i in &during {
        subs.command(i, Command::Disconnect);
    }
    tokio::time::sleep(OUTAGE - OUTAGE / 3).await;
    cluster.redis.restart();
    let up_at = Instant::now();
    // Every node subscribes again and says so on /health.
    let mut resubscribed = Duration::ZERO;
    for node in cluster.nodes() {
        loop {
            let ok = node.health().await.is_ok_and(|h| h["status"] == "ok");
            if ok {
                break;
            }
            if up_at.elapsed() > Duration::from_secs(30) {
                return Err(format!("node {} did not report ok again", node.id));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        resubscribed = resubscribed.max(up_at.elapsed());
    }
    for &i in &during {
        subs.command(i, Command::Run);
    }
    // The second group leaves and comes back once the new epoch has
    // messages.
    tokio::time::sleep(third / 2).await;
    for &i in &after {
        subs.command(i, Command::Disconnect);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for &i in &after {
        subs.command(i, Command::Run);
    }

    let published = publisher.await.map_err(|e| e.to_string())?;
    let acked: Vec<u64> = published.iter().filter(|p| p.acked).map(|p| p.n).collect();
    let attempted: HashSet<u64> = published.iter().map(|p| p.n).collect();
    let last = acked.iter().copied().max().unwrap_or(0);
    let failed = published.len() - acked.len();
    let silent_failures = published
        .iter()
        .filter(|p| !p.acked && p.status == 200)
        .count();
    let resumed = published
        .iter()
        .find(|p| p.acked && p.at > up_at)
        .map(|p| p.at - up_at);
    let failed_outside = published
        .iter()
        .filter(|p| !p.acked && (p.at < down_at || resumed.is_some_and(|r| p.at > up_at + r)))
        .count();
    let reports = subs.finish(last).await;

    let mut total = Tally::default();
    let mut resyncs = 0;
    for r in &reports {
        total += stream::tally(&acked, &attempted, &r.received);
        resyncs += r.close_codes.iter().filter(|&&c| c == 4005).count();
    }
    let told = |group: &[usize]| {
        group
            .iter()
            .filter(|&&i| reports[i].resets > 0 || reports[i].gaps > 0)
            .count()
    };
    let (told_during, told_after) = (told(&during), told(&after));
    let line = format!(
        "redis-restart: clients={} (rust_client={} js_client={}) published={} failed_publishes={failed} \
         silently_lost={} dup={} reordered={} unexpected={} closed_4005={resyncs} resubscribed={} \
         resume={} epoch_change_told={}/{} (reconnected during the outage) {}/{} (after)",
        reports.len(),
        stream::rust_clients(reports.len()),
        stream::js_clients(reports.len()),
        published.len(),
        total.lost,
        total.dup,
        total.reordered,
        total.unexpected,
        secs(resubscribed),
        resumed.map_or("never".to_string(), secs),
        told_during,
        during.len(),
        told_after,
        after.len(),
    );
    let checks = vec![
        (
            total.lost == 0,
            format!("{} acknowledged messages lost", total.lost),
        ),
        (total.dup == 0, format!("{} duplicates", total.dup)),
        (
            total.reordered == 0,
            format!("{} reordered", total.reordered),
        ),
        (
            total.unexpected == 0,
            format!("{} unexpected", total.unexpected),
        ),
        (failed > 0, "no publish failed during the outage".into()),
        (
            silent_failures == 0,
            format!("{silent_failures} publishes answered 200 without an offset"),
        ),
        (
            failed_outside == 0,
            format!("{failed_outside} publishes failed while Redis was up"),
        ),
        (resumed.is_some(), "publishing never resumed".into()),
        (
            told_during == during.len(),
            format!(
                "{} of {} subscribers that reconnected during the outage were not told the epoch changed",
                during.len() - told_during,
                during.len()
            ),
        ),
        (
            told_after == after.len(),
            format!(
                "{} of {} subscribers that reconnected after the restart were not told the epoch changed",
                after.len() - told_after,
                after.len()
            ),
        ),
    ];
    let outcome = Outcome::new(line, &checks);
    if !outcome.ok {
        eprintln!("redis-restart: cluster logs:\n{}", cluster.logs());
    }
    Ok(outcome)
}
