//! The log line of each refused upgrade: one per refusal, at `info`, with
//! its status, reason, path and client address, at most
//! [`LINES_PER_SECOND`] a second for the whole process, so that a flood of
//! bad upgrades cannot become a flood of log lines. The first line after
//! some were held back says how many (`suppressed`). Nothing from the
//! request beyond its path is logged: no query (it may hold a token), no
//! header value (cookies, `Authorization`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;

/// Refusal lines written per second at most, process-wide.
pub(crate) const LINES_PER_SECOND: u32 = 20;

/// The current one-second window: when it began, lines written in it, and
/// lines held back since the last line written.
struct Budget {
    window: Option<Instant>,
    written: u32,
    suppressed: u64,
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget {
    window: None,
    written: 0,
    suppressed: 0,
});

/// Whether a line may be written at `now`; `Some(n)` with the number of
/// lines held back before it.
fn admit(budget: &mut Budget, now: Instant) -> Option<u64> {
    let fresh = budget
        .window
        .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
    if fresh {
        budget.window = Some(now);
        budget.written = 0;
    }
    if budget.written >= LINES_PER_SECOND {
        budget.suppressed += 1;
        return None;
    }
    budget.written += 1;
    Some(std::mem::take(&mut budget.suppressed))
}

/// Logs one refused upgrade, within the budget.
pub(crate) fn log(
    status: StatusCode,
    reason: &str,
    path: &str,
    client: Option<IpAddr>,
    peer: Option<SocketAddr>,
) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let admitted = {
        let mut budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        admit(&mut budget, Instant::now())
    };
    let Some(suppressed) = admitted else {
        return;
    };
    let client = client.map(tracing::field::display);
    let peer = peer.map(tracing::field::display);
    if suppressed > 0 {
        tracing::info!(
            status = status.as_u16(),
            path,
            client,
            peer,
            suppressed,
            "upgrade refused: {reason} ({suppressed} earlier refusals not logged)"
        );
    } else {
        tracing::info!(
            status = status.as_u16(),
            path,
            client,
            peer,
            "upgrade refused: {reason}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_budget_per_second_and_the_next_line_counts_the_rest() {
        let mut budget = Budget {
            window: None,
            written: 0,
            suppressed: 0,
        };
        let start = Instant::now();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(admit(&mut budget, start), Some(0));
        }
        for _ in 0..100 {
            assert_eq!(admit(&mut budget, start + Duration::from_millis(999)), None);
        }
        let next = start + Duration::from_secs(1);
        assert_eq!(admit(&mut budget, next), Some(100));
        assert_eq!(admit(&mut budget, next), Some(0));
    }
}
