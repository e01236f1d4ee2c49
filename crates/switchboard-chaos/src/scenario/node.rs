//! A node taken away under a steady stream: killed (`kill-node`, SIGKILL)
//! or drained (`drain-node`, SIGTERM with `--shutdown-spread`). One of
//! three nodes behind nginx goes; its subscribers reconnect through nginx
//! to the others and rejoin with their last offset; the publisher, on
//! another node, never stops.

use std::collections::HashSet;
use std::time::Duration;

use super::{Options, Outcome};
use crate::cluster::Cluster;
use crate::stream::{self, Subscribers, Tally, quantile, secs};

/// How a node is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL: no close frames, connections just end.
    Kill,
    /// SIGTERM: 1001 closes spread over `--shutdown-spread`.
    Drain,
}

/// The shutdown spread a drained node uses.
const SPREAD_SECS: &str = "2";

/// Runs the scenario.
pub async fn run(opts: &Options, fault: Fault) -> Outcome {
    let name = match fault {
        Fault::Kill => "kill-node",
        Fault::Drain => "drain-node",
    };
    match run_inner(opts, fault, name).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed(name, why),
    }
}

async fn run_inner(opts: &Options, fault: Fault, name: &str) -> Result<Outcome, String> {
    let extra = ["--shutdown-spread", SPREAD_SECS, "--shutdown-timeout", "10"];
    let mut cluster = Cluster::start(&opts.binary, 3, &extra, opts.clients).await?;
    let room = format!("chaos-{name}");
    let subs = Subscribers::start(&cluster.chat_url(), &room, opts.clients).await?;
    let victim = cluster.node(2).id.clone();
    let publisher = stream::publish(cluster.node(0).port, &room, opts.rate, opts.messages);
    // A third of the stream first, then the fault.
    let before = Duration::from_secs_f64(opts.messages as f64 / 3.0 / f64::from(opts.rate));
    tokio::time::sleep(before).await;
    let mut exit = None;
    match fault {
        Fault::Kill => {
            if let Some(node) = cluster.nodes[2].as_mut() {
                node.kill9();
            }
        }
        Fault::Drain => {
            let mut node = cluster.nodes[2].take().ok_or("node 2 is gone")?;
            node.sigterm();
            exit = tokio::task::spawn_blocking(move || node.wait_exit(Duration::from_secs(20)))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let published = publisher.await.map_err(|e| e.to_string())?;
    let acked: Vec<u64> = published.iter().filter(|p| p.acked).map(|p| p.n).collect();
    let attempted: HashSet<u64> = published.iter().map(|p| p.n).collect();
    let last = acked.iter().copied().max().unwrap_or(0);
    let reports = subs.finish(last).await;

    let mut total = Tally::default();
    let mut reconnects = Vec::new();
    let mut errors = 0;
    let mut other_closes = 0;
    let mut sample_error = String::new();
    // Subscribers of the stopped node, and those that moved, by kind:
    // raw, JavaScript, Rust.
    let mut by_kind = [(0, 0); 3];
    for (i, r) in reports.iter().enumerate() {
        total += stream::tally(&acked, &attempted, &r.received);
        if r.conns
            .first()
            .is_some_and(|c| c.starts_with(&format!("{victim}-")))
        {
            let k = &mut by_kind[stream::kind(i, reports.len()) as usize];
            k.0 += 1;
            if r.conns.len() > 1 {
                k.1 += 1;
            }
        }
        reconnects.extend(r.reconnects.iter().copied());
        errors += r.errors.len();
        if let Some(e) = r.errors.first() {
            sample_error.clone_from(e);
        }
        other_closes += r.close_codes.iter().filter(|&&c| c != 1001).count();
    }
    let on_victim: usize = by_kind.iter().map(|k| k.0).sum();
    let moved: usize = by_kind.iter().map(|k| k.1).sum();
    let failed_publishes = published.len() - acked.len();
    let p50 = quantile(&mut reconnects, 0.5);
    let p99 = quantile(&mut reconnects, 0.99);
    let mut line = format!(
        "{name}: clients={} (rust_client={} js_client={}) on_stopped_node={on_victim} reconnected={moved} \
         (raw={}/{} js={}/{} rust={}/{}) published={} \
         failed_publishes={failed_publishes} lost={} dup={} reordered={} unexpected={} \
         reconnect_p50={} p99={}",
        reports.len(),
        stream::rust_clients(reports.len()),
        stream::js_clients(reports.len()),
        by_kind[0].1,
        by_kind[0].0,
        by_kind[1].1,
        by_kind[1].0,
        by_kind[2].1,
        by_kind[2].0,
        published.len(),
        total.lost,
        total.dup,
        total.reordered,
        total.unexpected,
        secs(p50),
        secs(p99),
    );
    let mut checks = vec![
        (total.lost == 0, format!("{} messages lost", total.lost)),
        (total.dup == 0, format!("{} duplicates", total.dup)),
        (
            total.reordered == 0,
            format!("{} reordered", total.reordered),
        ),
        (
            total.unexpected == 0,
            format!("{} unexpected", total.unexpected),
        ),
        (
            failed_publishes == 0,
            format!("{failed_publishes} publishes failed on a node that stayed up"),
        ),
        (
            on_victim > 0,
            "no subscriber was on the stopped node".into(),
        ),
        (
            moved == on_victim,
            format!(
                "{} of {on_victim} subscribers did not reconnect",
                on_victim - moved
            ),
        ),
    ];
    if fault == Fault::Drain {
        let code = exit.and_then(|s| s.code());
        line.push_str(&format!(
            " error_frames={errors} non_1001_closes={other_closes} exit={}",
            code.map_or("none".to_string(), |c| c.to_string())
        ));
        checks.push((
            errors == 0,
            format!("{errors} error frames, e.g. {sample_error}"),
        ));
        checks.push((
            other_closes == 0,
            format!("{other_closes} closes other than 1001"),
        ));
        checks.push((
            code == Some(0),
            format!("the drained node exited with {exit:?}"),
        ));
    }
    let outcome = Outcome::new(line, &checks);
    if !outcome.ok {
        eprintln!("{name}: cluster logs:\n{}", cluster.logs());
    }
    Ok(outcome)
}
