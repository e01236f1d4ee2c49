//! `switchboard-bench`: load scenarios against Switchboard and the baseline
//! servers (loopback only), and the reporter used by `bench/run`.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use switchboard_bench::report;
use switchboard_bench::scenario::{Output, acks, churn, echo, fanout, idle};
use switchboard_bench::target::Target;

/// Load generator for Switchboard and its baselines. Every scenario prints a
/// human summary, then one line of JSON.
#[derive(Parser, Debug)]
#[command(name = "switchboard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open N connections, hold them, report server RSS per connection.
    Idle(idle::IdleArgs),
    /// Closed-loop echo round trips: rate, latency, server CPU per message.
    Echo(echo::EchoArgs),
    /// N subscribers, one publisher at a steady rate: latency, loss, server
    /// CPU per delivery.
    Fanout(fanout::FanoutArgs),
    /// Connect and disconnect at a steady rate.
    Churn(churn::ChurnArgs),
    /// Closed-loop publishes to Switchboard's /ws/chat, each waiting for its
    /// ack: acknowledged publishes per second, server CPU per publish.
    Acks(acks::AcksArgs),
    /// Run the minimal hook application on 127.0.0.1:PORT (answers the
    /// connect hook with a user from the `sid` cookie, the publish hook with
    /// `{}`).
    HookApp {
        /// Port (0: any free port; the chosen port is logged).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Build the side-by-side table, results JSON and SVG from recorded runs.
    Report(ReportArgs),
    /// Run the raw floor server on 127.0.0.1:PORT (a bare epoll loop: one
    /// write of each published frame per WebSocket, nothing else).
    FloorServer {
        /// Port (0: any free port; the chosen port is logged).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Wait until the machine is quiet: busy time (all processes) below
    /// --max-busy-pct of one core for --quiet-for, or --timeout passes.
    /// Prints the seconds waited; exits 1 on timeout.
    WaitQuiet {
        /// Busy threshold, in % of one core.
        #[arg(long, default_value_t = 25.0)]
        max_busy_pct: f64,
        /// How long it must stay under the threshold.
        #[arg(long, default_value = "2s", value_parser = switchboard_bench::util::parse_duration)]
        quiet_for: Duration,
        /// Give up after this long.
        #[arg(long, default_value = "60s", value_parser = switchboard_bench::util::parse_duration)]
        timeout: Duration,
    },
    /// Wait until GET on a loopback URL answers 200.
    WaitReady {
        /// URL to poll, e.g. http://127.0.0.1:3000/health.
        #[arg(long)]
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "30s", value_parser = switchboard_bench::util::parse_duration)]
        timeout: Duration,
    },
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Runs file: one JSON object per line (written by bench/run).
    #[arg(long)]
    runs: std::path::PathBuf,
    /// The server the others are compared with.
    #[arg(long, default_value = "switchboard")]
    subject: String,
    /// Servers in column order (comma-separated; default: order of
    /// appearance).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Where to write the results JSON (may be given more than once).
    #[arg(long)]
    json: Vec<std::path::PathBuf>,
    /// Where to write the SVG chart.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// Extra metadata as a JSON object (date, mode, machine...).
    #[arg(long, default_value = "{}")]
    meta: String,
}

fn report_cmd(a: ReportArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&a.runs)
        .map_err(|e| format!("cannot read {}: {e}", a.runs.display()))?;
    let runs = report::parse_runs(&text)?;
    let mut servers = a.servers.clone();
    if servers.is_empty() {
        for r in &runs {
            if !servers.contains(&r.server) {
                servers.push(r.server.clone());
            }
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&a.meta).map_err(|e| format!("--meta is not JSON: {e}"))?;
    let rows = report::build_rows(&runs, &a.subject, &servers);
    println!("{}", report::markdown_table(&rows, &a.subject, &servers));
    let doc = report::results_json(&rows, &runs, &a.subject, &servers, meta.clone());
    let body = serde_json::to_string(&doc).map_err(|e| e.to_string())? + "\n";
    for p in &a.json {
        std::fs::write(p, &body).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        let sub = format!(
            "{} — median of repeats, whiskers min–max; {}",
            meta.get("date").and_then(|v| v.as_str()).unwrap_or(""),
            meta.get("machine").and_then(|v| v.as_str()).unwrap_or("")
        );
        let svg = switchboard_bench::svg::render(&rows, &servers, &sub);
        std::fs::write(p, svg).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

async fn wait_ready(url: &str, timeout: Duration) -> Result<(), String> {
    let target = Target::parse(url)?;
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut c =
            switchboard_bench::http::HttpClient::new(target.clone(), None, Duration::from_secs(2));
        match c.get().await {
            Ok(200) => return Ok(()),
            Ok(s) => last = format!("HTTP {s}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{url} not ready after {timeout:?}: {last}"))
}

/// Samples machine-wide busy time in 500 ms steps until it stays under
/// `max_pct` (of one core) for `quiet_for`; returns the seconds waited and
/// whether it got quiet.
fn wait_quiet(max_pct: f64, quiet_for: Duration, timeout: Duration) -> (f64, bool) {
    use switchboard_bench::procfs::{system_busy_ticks, ticks_to_us};
    let start = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    let step = Duration::from_millis(500);
    while start.elapsed() < timeout {
        let (t0, b0) = (Instant::now(), system_busy_ticks());
        std::thread::sleep(step);
        let (Some(b0), Some(b1)) = (b0, system_busy_ticks()) else {
            return (start.elapsed().as_secs_f64(), true);
        };
        let pct = ticks_to_us(b1.saturating_sub(b0)) / 1e6 / t0.elapsed().as_secs_f64() * 100.0;
        if pct <= max_pct {
            let since = *quiet_since.get_or_insert(t0);
            if since.elapsed() >= quiet_for {
                return (start.elapsed().as_secs_f64(), true);
            }
        } else {
            quiet_since = None;
        }
    }
    (start.elapsed().as_secs_f64(), false)
}

fn print_output(r: Result<Output, (serde_json::Value, String)>, name: &str) -> ExitCode {
    match r {
        Ok(o) => {
            for l in &o.human {
                println!("{l}");
            }
            println!("{}", o.json_line());
            ExitCode::SUCCESS
        }
        Err((params, e)) => {
            eprintln!("error: {e}");
            println!(
                "{}",
                json!({"scenario": name, "params": params, "error": e})
            );
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    switchboard_bench::clock::start();
    let nofile = switchboard_bench::net::raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let needed = match &cli.cmd {
        Cmd::Idle(a) => a.connections,
        Cmd::Fanout(a) => a.subscribers + a.http_conns + 1,
        Cmd::Echo(a) => a.connections,
        Cmd::Acks(a) => a.connections,
        _ => 0,
    };
    if needed as u64 + 64 > nofile {
        eprintln!(
            "error: {needed} connections need more open files than the limit allows ({nofile})"
        );
        return ExitCode::FAILURE;
    }
    match cli.cmd {
        Cmd::Idle(a) => print_output(local.block_on(&rt, idle::run(a)), "idle"),
        Cmd::Echo(a) => print_output(local.block_on(&rt, echo::run(a)), "echo"),
        Cmd::Fanout(a) => print_output(local.block_on(&rt, fanout::run(a)), "fanout"),
        Cmd::Churn(a) => print_output(local.block_on(&rt, churn::run(a)), "churn"),
        Cmd::Acks(a) => print_output(local.block_on(&rt, acks::run(a)), "acks"),
        Cmd::HookApp { port } => match switchboard_bench::hookapp::serve(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Report(a) => match report_cmd(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::FloorServer { port } => match switchboard_bench::floor::serve(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::FreePort => {
            match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => {
                    println!("{}", a.port());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::WaitQuiet {
            max_busy_pct,
            quiet_for,
            timeout,
        } => {
            let timeout = timeout.min(Duration::from_secs(3600));
            let (waited, quiet) = wait_quiet(max_busy_pct, quiet_for, timeout);
            println!("{waited:.1}");
            if quiet {
                ExitCode::SUCCESS
            } else {
                eprintln!("machine still busy (> {max_busy_pct}% of a core) after {waited:.0}s");
                ExitCode::FAILURE
            }
        }
        Cmd::WaitReady { url, timeout } => match local.block_on(&rt, wait_ready(&url, timeout)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_fanout_flags() {
        let cli = Cli::try_parse_from([
            "switchboard-bench",
            "fanout",
            "--url",
            "ws://127.0.0.1:1/ws/chat",
            "--subscribers",
            "10",
            "--rates",
            "5,10",
            "--duration",
            "500ms",
            "--publish",
            "ws",
            "--protocol",
            "raw",
            "--server-pid",
            "1",
        ])
        .unwrap();
        let Cmd::Fanout(a) = cli.cmd else {
            panic!("not fanout")
        };
        assert_eq!(a.rates, Some(fanout::RateList(vec![5.0, 10.0])));
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.publish, fanout::Publish::Ws);
        assert_eq!(a.protocol, switchboard_bench::scenario::Protocol::Raw);
        assert!(
            Cli::try_parse_from([
                "switchboard-bench",
                "fanout",
                "--url",
                "x",
                "--rate",
                "5",
                "--rates",
                "5",
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "switchboard-bench",
                "echo",
                "--url",
                "x",
                "--duration",
                "zz"
            ])
            .is_err()
        );
    }
}
