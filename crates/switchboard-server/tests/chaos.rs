//! The fast fault scenarios of `scripts/chaos`, at a reduced size: a node
//! killed, a node drained and Redis restarted under a steady stream to 100
//! subscribers behind nginx, and idle and slow-header sockets on one node;
//! and a 20-second soak with churn that must leave nothing behind.
//! The streams must lose, duplicate and reorder nothing
//! (`crates/switchboard-chaos` counts it; `docs/reliability.md` has the
//! full-size figures).

use switchboard_chaos::scenario::soak::SoakOptions;
use switchboard_chaos::scenario::{self, Options, Outcome, node::Fault};

fn options() -> Options {
    Options {
        binary: env!("CARGO_BIN_EXE_switchboard").into(),
        clients: 100,
        messages: 60,
        rate: 30,
    }
}

fn check(outcome: Outcome) {
    println!("{}", outcome.line);
    assert!(
        outcome.ok,
        "{}\n{}",
        outcome.line,
        outcome.problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_message_of_its_clients() {
    check(scenario::node::run(&options(), Fault::Kill).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_clients_over_without_loss_or_error() {
    check(scenario::node::run(&options(), Fault::Drain).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_fails_publishes_loudly_and_loses_nothing_acknowledged() {
    check(scenario::redis::run(&options()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_sockets_are_closed_by_the_head_timeout() {
    check(
        scenario::idle::run(&Options {
            clients: 200,
            ..options()
        })
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_churn_leaves_no_session_room_user_or_presence_behind() {
    let binary = env!("CARGO_BIN_EXE_switchboard").into();
    check(scenario::soak::run(&SoakOptions::reduced(binary)).await);
}
