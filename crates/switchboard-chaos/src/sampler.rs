//! CPU and memory of the server processes while a scenario runs: every
//! interval, the CPU time and resident memory of each process, summed over
//! them, read from `/proc`.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::{proc_cpu_time, proc_rss_kib};

/// What the processes used while sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// The highest CPU use over one interval, in percent of one core,
    /// summed over the processes (200 is both cores of a 2-core machine).
    pub cpu_peak_pct: f64,
    /// CPU time used in all, summed over the processes.
    pub cpu_total: Duration,
    /// The highest resident memory seen, summed over the processes, in KiB.
    pub rss_peak_kib: u64,
    /// How long the sampling ran.
    pub wall: Duration,
    /// The whole machine's busy share over the sampling, in percent of
    /// one core (every process, this tool, nginx and Redis included).
    pub machine_pct: f64,
    /// CPU time this process (the scenario tool and its clients) used.
    pub tool_cpu: Duration,
}

/// Busy and total jiffies of all cores, from the `cpu` line of
/// `/proc/stat` (busy: everything but idle and iowait).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A running sampler; [`Sampler::stop`] ends it and returns the figures.
#[derive(Debug)]
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Usage>,
}

fn cpu(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| proc_cpu_time(p)).sum()
}

fn rss(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| proc_rss_kib(p)).sum()
}

impl Sampler {
    /// Samples `pids` every `interval` until stopped.
    pub fn start(pids: Vec<u32>, interval: Duration) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let first_cpu = cpu(&pids);
            let first_machine = machine_jiffies();
            let first_tool = proc_cpu_time(std::process::id());
            let mut usage = Usage {
                rss_peak_kib: rss(&pids),
                ..Usage::default()
            };
            let (mut last_at, mut last_cpu) = (start, first_cpu);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let (now, used) = (Instant::now(), cpu(&pids));
                let span = now - last_at;
                if !span.is_zero() {
                    let pct = used.saturating_sub(last_cpu).as_secs_f64() / span.as_secs_f64();
                    usage.cpu_peak_pct = usage.cpu_peak_pct.max(pct * 100.0);
                }
                (last_at, last_cpu) = (now, used);
                usage.rss_peak_kib = usage.rss_peak_kib.max(rss(&pids));
            }
            usage.cpu_total = cpu(&pids).saturating_sub(first_cpu);
            usage.wall = start.elapsed();
            let (busy, total) = machine_jiffies();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let (busy, total) = (busy - first_machine.0, total - first_machine.1);
            if total > 0 {
                usage.machine_pct = busy as f64 / total as f64 * 100.0 * cores;
            }
            usage.tool_cpu = proc_cpu_time(std::process::id()).saturating_sub(first_tool);
            usage
        });
        Sampler { stop, task }
    }

    /// Stops sampling; what was seen.
    pub async fn stop(self) -> Usage {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
