//! The scenarios. Each starts its own processes, runs, tears them down
//! and returns an [`Outcome`]: one line of figures, whether every
//! must-be-zero figure was zero and every promise held, and whether the
//! measured figures met their targets (a latency ratio, a memory growth).
//! `scripts/chaos` fails on either; the test suite, which runs the
//! scenarios at a reduced size on a machine it shares, asserts only the
//! first and prints a missed target, since speed and memory are measured,
//! not asserted, in tests.

pub mod idle;
pub mod node;
pub mod redis;
pub mod slow;
pub mod soak;
pub mod storm;

use std::path::PathBuf;

/// What every scenario is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `switchboard` binary to run.
    pub binary: PathBuf,
    /// Subscribers in the stream scenarios.
    pub clients: usize,
    /// Messages published in the stream scenarios.
    pub messages: u64,
    /// Publishes per second.
    pub rate: u32,
}

/// A scenario's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `name: figure=value ...`.
    pub line: String,
    /// False when a must-be-zero figure was not zero, or a promise broke.
    pub ok: bool,
    /// What broke, for the failure's report; empty when `ok`.
    pub problems: Vec<String>,
    /// The measured figures that missed their target; empty when all met it.
    pub missed_targets: Vec<String>,
}

impl Outcome {
    /// An outcome from its line and the checks that must hold.
    pub fn new(line: String, checks: &[(bool, String)]) -> Outcome {
        let problems: Vec<String> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, what)| what.clone())
            .collect();
        Outcome {
            line,
            ok: problems.is_empty(),
            problems,
            missed_targets: Vec::new(),
        }
    }

    /// The same, with the measured figures' targets (`(met, what)`).
    pub fn with_targets(mut self, targets: &[(bool, String)]) -> Outcome {
        self.missed_targets = targets
            .iter()
            .filter(|(met, _)| !met)
            .map(|(_, what)| what.clone())
            .collect();
        self
    }

    /// A scenario that could not run at all.
    pub fn failed(name: &str, why: String) -> Outcome {
        Outcome {
            line: format!(
                "{name}: FAILED TO RUN: {}",
                why.lines().next().unwrap_or("")
            ),
            ok: false,
            problems: vec![why],
            missed_targets: Vec::new(),
        }
    }
}
