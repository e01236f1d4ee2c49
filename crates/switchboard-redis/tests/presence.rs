//! Presence entries outlive a crashed node by one TTL at most, and a live
//! node's entries never expire.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::broker::{Broker, PresenceEntry};
use switchboard_redis::RedisConfig;

use common::{RedisServer, eventually, node};

fn entry(user: &str, connections: u32) -> PresenceEntry {
    PresenceEntry {
        user: Arc::from(user),
        connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_entries_expire_and_a_live_nodes_do_not() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(600);
    let config = RedisConfig {
        presence_ttl: ttl,
        ..RedisConfig::default()
    };
    let (a, _) = node(&server, config.clone()).await;
    let (b, _) = node(&server, config).await;
    a.presence_add("r", "a-1", "ann").await.unwrap();
    a.presence_add("r", "a-2", "bob").await.unwrap();
    b.presence_add("r", "b-1", "bob").await.unwrap();
    let written = Instant::now();
    assert_eq!(
        b.presence("r").await.unwrap(),
        [entry("ann", 1), entry("bob", 2)]
    );

    // A crash: no cleanup, and the refresher stops with the broker.
    drop(a);
    eventually("the dead node's entries to expire", || async {
        (b.presence("r").await.unwrap() == [entry("bob", 1)]).then_some(())
    })
    .await;
    // b wrote its entry once; past two TTLs only its refresher kept it.
    eventually("two TTLs to pass", || async {
        (written.elapsed() > 2 * ttl).then_some(())
    })
    .await;
    assert_eq!(b.presence("r").await.unwrap(), [entry("bob", 1)]);
}

#[tokio::test]
async fn close_removes_a_nodes_entries_at_once() {
    let server = RedisServer::start();
    let (a, _) = node(&server, RedisConfig::default()).await;
    let (b, _) = node(&server, RedisConfig::default()).await;
    a.presence_add("r", "a-1", "ann").await.unwrap();
    a.presence_add("s", "a-1", "ann").await.unwrap();
    b.presence_add("r", "b-1", "bob").await.unwrap();
    a.close().await.unwrap();
    assert_eq!(b.presence("r").await.unwrap(), [entry("bob", 1)]);
    assert_eq!(b.presence("s").await.unwrap(), []);
}
