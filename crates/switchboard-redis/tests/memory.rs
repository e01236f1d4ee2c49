//! What a room's history may take in Redis, and what a node does when Redis
//! refuses writes at its `maxmemory`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::broker::{Broker, BrokerError, Position, Publication, Recovery, Topic};
use switchboard_redis::RedisConfig;

use common::{Inspect, RedisServer, node};

/// A publication of `size` bytes of JSON to `room`.
fn sized(room: &str, size: usize) -> Publication {
    Publication {
        topic: Topic::Room(Arc::from(room)),
        data: Bytes::from(format!("\"{}\"", "x".repeat(size - 2))),
        from: Some(Arc::from("ana")),
        idempotency_key: None,
        except: None,
    }
}

async fn recovered(b: &impl Broker, room: &str, since: &Position) -> Option<usize> {
    match b.recover(room, since).await.expect("recover") {
        Recovery::Recovered { messages, .. } => Some(messages.len()),
        Recovery::Gap { .. } => None,
    }
}

/// The history's entries and the byte count the scripts keep of them.
async fn hist(server: &RedisServer, room: &str) -> (Vec<Vec<u8>>, usize) {
    let entries: Vec<Vec<u8>> = server
        .query(
            redis::cmd("LRANGE")
                .arg(format!("sb:hist:{room}"))
                .arg(0)
                .arg(-1),
        )
        .await;
    let counted: Option<usize> = server
        .query(
            redis::cmd("HGET")
                .arg(format!("sb:seq:{room}"))
                .arg("hbytes"),
        )
        .await;
    (entries, counted.unwrap_or(0))
}

#[tokio::test]
async fn a_rooms_history_is_bounded_by_bytes_as_well_as_by_count() {
    let server = RedisServer::start();
    // An entry of a 1000-byte payload is a little over 1 kB: ten fit.
    let (a, _) = node(
        &server,
        RedisConfig {
            history_bytes: 10_500,
            ..RedisConfig::default()
        },
    )
    .await;
    let mut epoch = None;
    for _ in 0..25 {
        epoch = a.publish(sized("r", 1000)).await.unwrap().epoch;
    }
    let at = |offset| Position {
        offset,
        epoch: epoch.clone().unwrap(),
    };
    assert_eq!(recovered(&a, "r", &at(15)).await, Some(10));
    assert_eq!(recovered(&a, "r", &at(14)).await, None);
    let (entries, counted) = hist(&server, "r").await;
    assert_eq!(entries.len(), 10);
    assert_eq!(counted, entries.iter().map(Vec::len).sum::<usize>());
    assert!(counted <= 10_500);

    // Larger than the room's whole allowance: not kept, and the history no
    // longer leads up to the current offset.
    a.publish(sized("r", 20_000)).await.unwrap();
    assert_eq!(recovered(&a, "r", &at(25)).await, None);
    a.publish(sized("r", 1000)).await.unwrap();
    assert_eq!(recovered(&a, "r", &at(26)).await, Some(1));
    let (entries, counted) = hist(&server, "r").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(counted, entries[0].len());
}

/// With `maxmemory` and the `noeviction` policy, Redis refuses writes once
/// full: a publish then fails with `Refused` (reported as `publish_failed`),
/// nothing of it is delivered anywhere, and publishing works again once
/// Redis has room.
#[tokio::test]
async fn at_maxmemory_publishes_are_refused_and_nothing_is_delivered() {
    let server = RedisServer::start();
    let (a, rec) = node(&server, RedisConfig::default()).await;
    let (b, rec_b) = node(&server, RedisConfig::default()).await;
    let info: String = server.query(redis::cmd("INFO").arg("memory")).await;
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO");
    let () = server
        .query(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(used + (2 << 20))
                .arg("maxmemory-policy")
                .arg("noeviction"),
        )
        .await;
    let rooms: Vec<Topic> = (0..8)
        .map(|i| Topic::Room(format!("big-{i}").into()))
        .collect();
    for room in &rooms {
        a.subscribe(room).await.unwrap();
        b.subscribe(room).await.unwrap();
    }
    let mut accepted = 0;
    let refusal = loop {
        let room = format!("big-{}", accepted % 8);
        match a.publish(sized(&room, 60_000)).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "redis never refused a write");
    };
    match &refusal {
        BrokerError::Refused(reason) => assert!(reason.contains("OOM"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Every accepted message reaches both nodes; the refused one neither.
    let total = |r: &switchboard_testkit::conformance::Recorder| {
        rooms.iter().map(|t| r.of(t).len()).sum::<usize>()
    };
    common::eventually("the accepted messages on both nodes", || async {
        (total(&rec) == accepted && total(&rec_b) == accepted).then_some(())
    })
    .await;
    let marker = Topic::Room("big-0".into());
    // Room again: publishing works.
    let () = server
        .query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0))
        .await;
    a.publish(sized("big-0", 100)).await.expect("publish after");
    common::eventually("the next message", || async {
        (total(&rec) == accepted + 1).then_some(())
    })
    .await;
    assert_eq!(rec.of(&marker).len(), accepted.div_ceil(8) + 1);
}

/// An idempotency key lives in Redis for the window and no longer.
#[tokio::test]
async fn an_idempotency_key_expires_with_its_window() {
    let server = RedisServer::start();
    let config = RedisConfig {
        idempotency_window: std::time::Duration::from_millis(300),
        ..RedisConfig::default()
    };
    let (a, _) = node(&server, config.clone()).await;
    let (b, _) = node(&server, config).await;
    let keyed = || Publication {
        idempotency_key: Some(Arc::from("api:k")),
        except: None,
        ..sized("r", 10)
    };
    assert!(!a.publish(keyed()).await.unwrap().duplicate);
    let again = b.publish(keyed()).await.unwrap();
    assert_eq!((again.offset, again.duplicate), (Some(1), true));
    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("sb:idem:*")).await;
    assert_eq!(keys, ["sb:idem:room:1:r:api:k"]);
    let ttl: i64 = server.query(redis::cmd("PTTL").arg(&keys[0])).await;
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    let later = common::eventually("the key to expire", || async {
        let r = a.publish(keyed()).await.unwrap();
        (!r.duplicate).then_some(r)
    })
    .await;
    assert_eq!(later.offset, Some(2));
}
