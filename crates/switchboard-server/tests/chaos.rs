//! The fault scenarios of `scripts/chaos`, at a reduced size: a node
//! killed, a node drained and Redis restarted under a steady stream to 100
//! subscribers behind nginx, a reconnect storm of 1,000 connections, slow
//! consumers among 200 subscribers, and idle and slow-header sockets on one
//! node; and a 20-second soak with churn that must leave nothing behind.
//! The streams must lose, duplicate and reorder nothing
//! (`crates/switchboard-chaos` counts it; `docs/reliability.md` has the
//! full-size figures). Raw-protocol clients, the Rust client and the
//! JavaScript client (on Node) subscribe alike. The measured figures with a
//! target (the slow-consumer latency ratio, the soak's memory growth) are
//! printed, not asserted: `scripts/chaos` holds them to their targets at
//! full size. They run one at a time, so that each has the machine's
//! cores to itself.

use switchboard_chaos::scenario::soak::SoakOptions;
use switchboard_chaos::scenario::{self, Options, Outcome, node::Fault};

fn options() -> Options {
    // The storm's thousand client sockets, beside the default of 1,024.
    switchboard_chaos::raise_open_files();
    Options {
        binary: env!("CARGO_BIN_EXE_switchboard").into(),
        clients: 100,
        messages: 60,
        rate: 30,
    }
}

/// Held by each test for its whole run.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn check(outcome: Outcome) {
    println!("{}", outcome.line);
    for missed in &outcome.missed_targets {
        println!("target missed (measured, not asserted here): {missed}");
    }
    assert!(
        outcome.ok,
        "{}\n{}",
        outcome.line,
        outcome.problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_message_of_its_clients() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(scenario::node::run(&options(), Fault::Kill).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_clients_over_without_loss_or_error() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(scenario::node::run(&options(), Fault::Drain).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_fails_publishes_loudly_and_loses_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(scenario::redis::run(&options()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_sockets_are_closed_by_the_head_timeout() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(
        scenario::idle::run(&Options {
            clients: 200,
            ..options()
        })
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_brings_every_client_back_unrefused_and_without_loss() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(
        scenario::storm::run(&Options {
            clients: 1000,
            ..options()
        })
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_are_closed_with_4000_and_do_not_slow_the_others() {
    let _alone = ONE_AT_A_TIME.lock().await;
    check(
        scenario::slow::run(&Options {
            clients: 200,
            ..options()
        })
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_churn_leaves_no_session_room_user_or_presence_behind() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let binary = env!("CARGO_BIN_EXE_switchboard").into();
    check(scenario::soak::run(&SoakOptions::reduced(binary)).await);
}
