//! What the boxed future of `Broker::publish` costs, next to what a publish
//! costs end to end. docs/performance.md ("Boxed broker futures") has the
//! figures and the decision.
//!
//! ```sh
//! cargo build --release -p switchboard-core --example broker_publish_cost
//! taskset -c 1 target/release/examples/broker_publish_cost
//! ```
//!
//! A publish here is `Node::publish_room` of a 100-byte JSON object to a
//! room nobody is in, on the default in-memory broker: the publish path
//! without the fan-out. The box is one allocation and one free of a future
//! the size of the in-memory broker's, awaited through `dyn Future`. Each
//! figure is the median of several runs (min–max in brackets), in ns.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;

use switchboard_core::Node;
use switchboard_core::broker::memory::MemoryBroker;
use switchboard_core::broker::{Broker, Publication, Topic};

/// The allocator of the `switchboard` binary.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const RUNS: usize = 9;
const PUBLISHES: u32 = 200_000;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn report(what: &str, (median, min, max): (f64, f64, f64)) {
    println!("{what:<60} {median:>7.1} ns  [{min:.1}–{max:.1}]");
}

type BoxFuture = Pin<Box<dyn Future<Output = [u8; 8]> + Send>>;

/// Allocates, awaits through `dyn` and frees a ready future of `N` bytes.
async fn boxed_ready<const N: usize>(n: u32) -> f64 {
    let t = std::time::Instant::now();
    for _ in 0..n {
        let state = black_box([0u8; N]);
        let fut: BoxFuture = Box::pin(async move {
            let state = black_box(state);
            [state[0]; 8]
        });
        black_box(black_box(fut).await);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

async fn report_boxed<F: Future<Output = f64>>(bytes: usize, mut run: impl FnMut() -> F) {
    run().await; // warm-up
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(run().await);
    }
    report(
        &format!("box + await + free of a {bytes}-byte ready future"),
        median(runs),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The size of the future the in-memory broker's publish boxes.
        let broker = MemoryBroker::new();
        let fut = broker.publish(Publication {
            topic: Topic::Room(Arc::from("r")),
            data: bytes::Bytes::from_static(b"1"),
            from: None,
            idempotency_key: None,
            except: None,
        });
        let size = std::mem::size_of_val(&*fut);
        drop(fut);
        println!("in-memory broker's publish future: {size} bytes (boxed on every publish)\n");

        let node = Node::builder().build().unwrap();
        let payload = format!(r#"{{"seq":1,"ts":2,"pad":"{}"}}"#, "x".repeat(71));
        let raw = serde_json::value::RawValue::from_string(payload).unwrap();
        let mut runs = Vec::new();
        for run in 0..=RUNS {
            let t = std::time::Instant::now();
            for _ in 0..PUBLISHES {
                black_box(node.publish_room("r", &raw).await.unwrap());
            }
            let ns = t.elapsed().as_nanos() as f64 / f64::from(PUBLISHES);
            if run > 0 {
                runs.push(ns); // the first run warms up
            }
        }
        report(
            "Node::publish_room, memory broker, no subscribers",
            median(runs),
        );

        report_boxed(104, || boxed_ready::<104>(PUBLISHES)).await;
        report_boxed(256, || boxed_ready::<256>(PUBLISHES)).await;
    });
}
