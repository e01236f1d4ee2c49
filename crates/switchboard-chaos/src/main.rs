//! `switchboard-chaos [--bin PATH] [--clients N] [--messages N] [--rate N]
//! [SCENARIO...] [soak [MINUTES]]`: runs the named scenarios (all of them
//! but the soak by default) and prints one line of figures per scenario;
//! exits 1 when a must-be-zero figure was not zero, a promise broke or a
//! measured figure missed its target.

use std::path::PathBuf;
use std::process::ExitCode;

use switchboard_chaos::scenario::soak::SoakOptions;
use switchboard_chaos::scenario::{self, Options, Outcome, node::Fault};

/// Every scenario, in the order they run by default.
const SCENARIOS: &[&str] = &[
    "kill-node",
    "drain-node",
    "redis-restart",
    "reconnect-storm",
    "slow-consumers",
    "idle-sockets",
];

const USAGE: &str = "usage: switchboard-chaos [--bin PATH] [--clients N] [--messages N] \
                     [--rate N] [SCENARIO...] [soak [MINUTES]]\nscenarios: kill-node drain-node redis-restart \
                     reconnect-storm slow-consumers idle-sockets\n(reconnect-storm drops --clients x 10 \
                     connections, slow-consumers has --clients x 5 subscribers, idle-sockets opens \
                     --clients x 5 idle connections)\n\
                     soak [MINUTES] or soak --minutes N: the soak, 30 minutes unless told \
                     (never run by default)";

/// How long the soak runs unless told.
const SOAK_MINUTES: u64 = 30;

fn parse() -> Result<(Options, Vec<String>, Option<u64>), String> {
    let mut opts = Options {
        binary: PathBuf::from("target/release/switchboard"),
        clients: 1000,
        messages: 300,
        rate: 30,
    };
    let mut names = Vec::new();
    let (mut soak, mut minutes) = (false, None);
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--bin" => opts.binary = PathBuf::from(value("--bin")?),
            "--clients" => {
                opts.clients = value("--clients")?
                    .parse()
                    .map_err(|e| format!("--clients: {e}"))?
            }
            "--messages" => {
                opts.messages = value("--messages")?
                    .parse()
                    .map_err(|e| format!("--messages: {e}"))?
            }
            "--rate" => {
                opts.rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "soak" => {
                soak = true;
                if let Some(m) = args.next_if(|a| a.parse::<u64>().is_ok()) {
                    minutes = m.parse().ok();
                }
            }
            "--minutes" => {
                minutes = Some(
                    value("--minutes")?
                        .parse()
                        .map_err(|e| format!("--minutes: {e}"))?,
                )
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            name if SCENARIOS.contains(&name) => names.push(name.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if opts.rate == 0 || opts.clients == 0 || opts.messages < 3 {
        return Err("--rate and --clients must be at least 1, --messages at least 3".into());
    }
    if minutes.is_some() && !soak {
        return Err(format!("--minutes is for the soak\n{USAGE}"));
    }
    if minutes == Some(0) {
        return Err("the soak needs at least 1 minute".into());
    }
    if names.is_empty() && !soak {
        names = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    Ok((opts, names, soak.then(|| minutes.unwrap_or(SOAK_MINUTES))))
}

fn main() -> ExitCode {
    let (opts, names, soak) = match parse() {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("{why}");
            return ExitCode::from(2);
        }
    };
    let files = switchboard_chaos::raise_open_files();
    // The most client sockets of any scenario: the storm's.
    let needed = 10 * opts.clients as u64 + 256;
    if files < needed {
        eprintln!(
            "open files limited to {files}: too few for {} clients (the reconnect storm needs {needed}); \
             raise the hard limit (ulimit -Hn) or pass a smaller --clients",
            opts.clients
        );
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut all_ok = true;
    for name in names {
        let outcome: Outcome = runtime.block_on(async {
            match name.as_str() {
                "kill-node" => scenario::node::run(&opts, Fault::Kill).await,
                "drain-node" => scenario::node::run(&opts, Fault::Drain).await,
                "redis-restart" => scenario::redis::run(&opts).await,
                "reconnect-storm" => {
                    let storm = Options {
                        clients: opts.clients * 10,
                        ..opts.clone()
                    };
                    scenario::storm::run(&storm).await
                }
                "slow-consumers" => {
                    let slow = Options {
                        clients: opts.clients * 5,
                        ..opts.clone()
                    };
                    scenario::slow::run(&slow).await
                }
                _ => {
                    let idle = Options {
                        clients: opts.clients * 5,
                        ..opts.clone()
                    };
                    scenario::idle::run(&idle).await
                }
            }
        });
        all_ok &= report(&name, &outcome);
    }
    if let Some(minutes) = soak {
        let soak = SoakOptions::full(opts.binary.clone(), minutes);
        let outcome = runtime.block_on(scenario::soak::run(&soak));
        all_ok &= report("soak", &outcome);
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints a scenario's line, and what broke or missed its target; true
/// when nothing did.
fn report(name: &str, outcome: &Outcome) -> bool {
    println!("{}", outcome.line);
    for problem in &outcome.problems {
        eprintln!("  {name}: {problem}");
    }
    for missed in &outcome.missed_targets {
        eprintln!("  {name}: target missed: {missed}");
    }
    outcome.ok && outcome.missed_targets.is_empty()
}
