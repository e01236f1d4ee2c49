//! Reading a process's resident memory and CPU time from `/proc`.
//!
//! CPU time comes from `/proc/PID/stat` (`utime` + `stime`, all threads), in
//! clock ticks; [`clock_ticks_per_sec`] converts (it asks `getconf CLK_TCK`
//! once and falls back to 100, the value on Linux).

use std::sync::OnceLock;
use std::time::Instant;

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix("VmRSS:")?;
        let mut it = rest.split_whitespace();
        let v: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => Some(v),
            _ => None,
        }
    })
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = after.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// Resident set size of `pid` (or this process) in KiB.
pub fn rss_kib(pid: Option<u32>) -> Result<u64, String> {
    let path = proc_path(pid, "status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_vmrss_kib(&text).ok_or_else(|| format!("no VmRSS in {path}"))
}

/// CPU time (user + system, all threads) of `pid` (or this process) in
/// clock ticks.
pub fn cpu_ticks(pid: Option<u32>) -> Result<u64, String> {
    let path = proc_path(pid, "stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat_cpu_ticks(&text).ok_or_else(|| format!("cannot parse {path}"))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
pub fn clock_ticks_per_sec() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(100)
    })
}

/// Converts clock ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> f64 {
    ticks as f64 * 1e6 / clock_ticks_per_sec() as f64
}

/// A CPU-time sample of one process, to take deltas over a window.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// When it was taken.
    pub at: Instant,
    /// CPU ticks at that moment (`None` when the process is not watched).
    pub ticks: Option<u64>,
}

impl CpuSample {
    /// Samples `pid` (or this process with `Some(None)`); `None` means no
    /// process is watched.
    pub fn take(pid: Option<Option<u32>>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            ticks: pid.and_then(|p| cpu_ticks(p).ok()),
        }
    }

    /// CPU microseconds used between `self` and the later sample `end`.
    pub fn cpu_us_until(&self, end: &CpuSample) -> Option<f64> {
        Some(ticks_to_us(end.ticks?.saturating_sub(self.ticks?)))
    }

    /// CPU use between `self` and `end` as a percentage of one core.
    pub fn cpu_pct_until(&self, end: &CpuSample) -> Option<f64> {
        let wall = end.at.duration_since(self.at).as_secs_f64();
        (wall > 0.0).then(|| self.cpu_us_until(end).map(|us| us / 1e6 / wall * 100.0))?
    }
}

/// Busy and total CPU ticks of the whole machine from the text of
/// `/proc/stat` (first line; busy excludes idle and iowait).
pub fn parse_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// Busy ticks of the whole machine (all cores).
pub fn system_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_system_ticks(&text).map(|(busy, _)| busy)
}

/// CPU use over a measured window: the server's, the tool's own, and what
/// the rest of the machine used (other processes, and kernel work not
/// charged to either), so a disturbed run can be recognised.
#[derive(Clone, Debug)]
pub struct Meter {
    server: CpuSample,
    /// Further server processes (the other nodes of a cluster), summed into
    /// the server's figures.
    others: Vec<(u32, CpuSample)>,
    /// Processes measured apart (the hook application): neither the
    /// server's CPU nor the rest of the machine's.
    aside: Vec<(u32, CpuSample)>,
    tool: CpuSample,
    system: Option<u64>,
}

/// What a [`Meter`] measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Server CPU microseconds (`None` without a server pid).
    pub server_cpu_us: Option<f64>,
    /// Server CPU as % of one core.
    pub server_pct: Option<f64>,
    /// This tool's CPU as % of one core.
    pub tool_pct: Option<f64>,
    /// Everything else on the machine, as % of one core (up to 100 × cores).
    pub other_pct: Option<f64>,
    /// CPU microseconds of the processes measured apart (`None` without
    /// any).
    pub aside_cpu_us: Option<f64>,
}

impl Meter {
    /// Starts measuring (`pid`: the server, if watched).
    pub fn start(pid: Option<u32>) -> Meter {
        Self::start_nodes(pid, &[])
    }

    /// Starts measuring a server made of several processes: `pid` and
    /// `others` (their CPU is added up).
    pub fn start_nodes(pid: Option<u32>, others: &[u32]) -> Meter {
        Meter {
            server: CpuSample::take(pid.map(Some)),
            others: others
                .iter()
                .map(|&p| (p, CpuSample::take(Some(Some(p)))))
                .collect(),
            aside: Vec::new(),
            tool: CpuSample::take(Some(None)),
            system: system_busy_ticks(),
        }
    }

    /// Also measures `pids` apart: their CPU is reported as
    /// [`Usage::aside_cpu_us`] and not counted in the rest of the machine.
    pub fn with_aside(mut self, pids: &[u32]) -> Meter {
        self.aside = pids
            .iter()
            .map(|&p| (p, CpuSample::take(Some(Some(p)))))
            .collect();
        self
    }

    /// Ends the window.
    pub fn stop(&self, pid: Option<u32>) -> Usage {
        let server = CpuSample::take(pid.map(Some));
        let others_us: Option<f64> = self
            .others
            .iter()
            .map(|(p, start)| start.cpu_us_until(&CpuSample::take(Some(Some(*p)))))
            .sum();
        let aside_us: Option<f64> = (!self.aside.is_empty())
            .then(|| {
                self.aside
                    .iter()
                    .map(|(p, start)| start.cpu_us_until(&CpuSample::take(Some(Some(*p)))))
                    .sum::<Option<f64>>()
            })
            .flatten();
        let tool = CpuSample::take(Some(None));
        let system = system_busy_ticks();
        let wall_s = tool.at.duration_since(self.tool.at).as_secs_f64();
        let tool_us = self.tool.cpu_us_until(&tool);
        let server_us = match (self.server.cpu_us_until(&server), others_us) {
            (Some(a), Some(b)) => Some(a + b),
            (a, _) => a,
        };
        let other_pct = match (self.system, system, tool_us) {
            (Some(a), Some(b), Some(t)) if wall_s > 0.0 => {
                let busy_us = ticks_to_us(b.saturating_sub(a));
                let other =
                    (busy_us - t - server_us.unwrap_or(0.0) - aside_us.unwrap_or(0.0)).max(0.0);
                Some(other / 1e6 / wall_s * 100.0)
            }
            _ => None,
        };
        Usage {
            wall_s,
            server_cpu_us: server_us,
            server_pct: server_us
                .filter(|_| wall_s > 0.0)
                .map(|us| us / 1e6 / wall_s * 100.0),
            tool_pct: self.tool.cpu_pct_until(&tool),
            other_pct,
            aside_cpu_us: aside_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss() {
        let s = "Name:\tswitchboard\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vmrss_kib(s), Some(12345));
        assert_eq!(parse_vmrss_kib("Name: x\n"), None);
        assert_eq!(parse_vmrss_kib("VmRSS:\t 12 MB\n"), None);
    }

    #[test]
    fn stat_ticks_with_awkward_names() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let s = "4242 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 3 0 100";
        assert_eq!(parse_stat_cpu_ticks(s), Some(175));
        let s = "1 (node) R 0 1 1 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 11 0";
        assert_eq!(parse_stat_cpu_ticks(s), Some(10));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn system_ticks() {
        let s = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        // busy = user+nice+system+irq+softirq+steal = 160; total 1180.
        assert_eq!(parse_system_ticks(s), Some((160, 1180)));
        assert_eq!(parse_system_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(parse_system_ticks("cpu  1 2\n"), None);
        assert!(system_busy_ticks().is_some());
        let m = Meter::start(None);
        let u = m.stop(None);
        assert!(u.server_cpu_us.is_none());
        assert!(u.tool_pct.is_some());
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kib(None).unwrap() > 0);
        cpu_ticks(None).unwrap();
        assert!(clock_ticks_per_sec() > 0);
        let a = CpuSample::take(Some(None));
        let b = CpuSample::take(Some(None));
        assert!(a.cpu_us_until(&b).is_some());
        assert!(CpuSample::take(None).ticks.is_none());
    }
}
