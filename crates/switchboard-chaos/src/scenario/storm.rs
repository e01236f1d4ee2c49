//! A reconnect storm: every client connection dropped at once. The
//! subscribers of three nodes all reach them through one nginx; nginx is
//! restarted (its fast shutdown ends every connection through it without a
//! WebSocket close, as a proxy or load balancer restart does) and comes
//! back on the same port at once. Every subscriber comes back on its own
//! with the clients' reconnect policy (full-jitter exponential backoff,
//! 500 ms base, 30 s cap) and rejoins its room with its last offset, while
//! a publisher on one node keeps a stream going. Figures: how long until
//! every client is back, the peak upgrade rate, the nodes' CPU and memory
//! peak, and upgrades refused (must be 0: the nodes run with their default
//! caps, the per-address upgrade rate limit off because every client here
//! shares one address), with the stream's lost, duplicated and reordered
//! messages (each must be 0).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Options, Outcome};
use crate::cluster::Cluster;
use crate::sampler::Sampler;
use crate::stream::{self, Subscribers, Tally, quantile, secs};
use crate::subscriber::{Policy, now_ms};

/// The longest the storm may take to settle before the scenario gives up.
const BACK_DEADLINE: Duration = Duration::from_secs(180);

/// Runs the scenario with `opts.clients` connections.
pub async fn run(opts: &Options) -> Outcome {
    match run_inner(opts).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed("reconnect-storm", why),
    }
}

/// The most instants of `times` that fall within any one second.
pub fn peak_per_second(times: &mut [Instant]) -> usize {
    times.sort();
    let mut best = 0;
    let mut first = 0;
    for last in 0..times.len() {
        while times[last] - times[first] >= Duration::from_secs(1) {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

async fn run_inner(opts: &Options) -> Result<Outcome, String> {
    let count = opts.clients;
    let mut cluster = Cluster::start(&opts.binary, 3, &[], count).await?;
    let room = "chaos-storm";
    let subs = Subscribers::start_with(&cluster.chat_url(), room, count, Policy::CLIENTS).await?;
    let pids: Vec<u32> = cluster.nodes().map(|n| n.pid()).collect();
    // Let the joins settle, then measure the nodes at rest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rest = Sampler::start(pids.clone(), Duration::from_millis(250));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rest = rest.stop().await;
    let publisher = stream::publish(cluster.node(0).port, room, opts.rate, opts.messages);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sampler = Sampler::start(pids.clone(), Duration::from_millis(250));
    let start = Instant::now();
    let start_ms = now_ms();
    let mut nginx = cluster.nginx.take().ok_or("no nginx")?;
    let nginx = tokio::task::spawn_blocking(move || {
        nginx.restart();
        nginx
    })
    .await
    .map_err(|e| e.to_string())?;
    let proxy_down = start.elapsed();
    cluster.nginx = Some(nginx);
    loop {
        let back = subs
            .marks()
            .iter()
            .filter(|m| m.joined_ms.load(Ordering::Relaxed) > start_ms)
            .count();
        if back == count || start.elapsed() > BACK_DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let storm = sampler.stop().await;

    let published = publisher.await.map_err(|e| e.to_string())?;
    let acked: Vec<u64> = published.iter().filter(|p| p.acked).map(|p| p.n).collect();
    let attempted: HashSet<u64> = published.iter().map(|p| p.n).collect();
    let last = acked.iter().copied().max().unwrap_or(0);
    let reports = subs.finish(last).await;
    let rss_after: u64 = cluster.nodes().map(|n| n.rss_kib()).sum();
    let mut refused_by_nodes = 0;
    for node in cluster.nodes() {
        let health = node.health().await?;
        refused_by_nodes += health["stats"]["rejected_upgrades"].as_u64().unwrap_or(0);
    }

    let mut total = Tally::default();
    let mut back_after = Vec::new();
    let mut upgrades = Vec::new();
    let mut not_back = 0;
    let mut refused = Vec::new();
    let mut failed_connects = 0;
    let mut gaps = 0;
    for r in &reports {
        total += stream::tally(&acked, &attempted, &r.received);
        match r.joined_at.iter().find(|&&t| t > start) {
            Some(&t) => back_after.push(t - start),
            None => not_back += 1,
        }
        upgrades.extend(r.welcomed_at.iter().copied().filter(|&t| t > start));
        refused.extend(r.refused.iter().copied());
        failed_connects += r.failed_connects;
        gaps += r.gaps;
    }
    let all_back = back_after.iter().max().copied().unwrap_or_default();
    let p50 = quantile(&mut back_after, 0.5);
    let p99 = quantile(&mut back_after, 0.99);
    let peak_rate = peak_per_second(&mut upgrades);
    let failed_publishes = published.len() - acked.len();
    let line = format!(
        "reconnect-storm: clients={count} (rust_client={} js_client={}) proxy_down={} back={} all_back_after={} \
         back_p50={} p99={} upgrades={} peak_upgrades_per_s={peak_rate} failed_connects={failed_connects} \
         refused={} refused_by_nodes={refused_by_nodes} cpu_peak={:.0}% (rest {:.0}%) cpu_storm={:.1}s tool_cpu_storm={:.1}s machine_busy={:.0}% \
         rss_rest={}KiB peak={}KiB after={}KiB published={} failed_publishes={failed_publishes} \
         lost={} dup={} reordered={} unexpected={} recovery_gaps={gaps}",
        stream::rust_clients(count),
        stream::js_clients(count),
        secs(proxy_down),
        count - not_back,
        secs(all_back),
        secs(p50),
        secs(p99),
        upgrades.len(),
        refused.len(),
        storm.cpu_peak_pct,
        rest.cpu_peak_pct,
        storm.cpu_total.as_secs_f64(),
        storm.tool_cpu.as_secs_f64(),
        storm.machine_pct,
        rest.rss_peak_kib,
        storm.rss_peak_kib,
        rss_after,
        published.len(),
        total.lost,
        total.dup,
        total.reordered,
        total.unexpected,
    );
    let checks = vec![
        (
            not_back == 0,
            format!("{not_back} clients not back within {BACK_DEADLINE:?}"),
        ),
        (
            refused.is_empty() && refused_by_nodes == 0,
            format!(
                "upgrades refused: statuses {:?}, {refused_by_nodes} counted by the nodes",
                &refused[..refused.len().min(20)]
            ),
        ),
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
            format!("{failed_publishes} publishes failed"),
        ),
        (gaps == 0, format!("{gaps} rejoins could not recover")),
    ];
    let outcome = Outcome::new(line, &checks);
    if !outcome.ok {
        eprintln!("reconnect-storm: cluster logs:\n{}", cluster.logs());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_the_busiest_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut times = vec![
            at(0),
            at(100),
            at(999),
            at(1000),
            at(1500),
            at(1999),
            at(3000),
        ];
        // 1000, 1500, 1999 and 100, 999... : at most three fall in [x, x+1s).
        assert_eq!(peak_per_second(&mut times), 3);
        assert_eq!(peak_per_second(&mut []), 0);
        assert_eq!(peak_per_second(&mut [t0]), 1);
    }
}
