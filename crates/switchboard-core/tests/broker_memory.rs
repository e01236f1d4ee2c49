//! The broker conformance suite against linked `MemoryBroker`s on one
//! `MemoryBus`, the in-memory broker's own bounds (age trimming and
//! eviction, with the clock paused), and how a node takes a shared broker.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_core::broker::memory::{MemoryBroker, MemoryBus, MemoryConfig};
use switchboard_core::broker::{
    Broker, Position, Presence, PresenceEntry, Publication, Recovery, Topic,
};
use switchboard_testkit::conformance::{self, Backend, Factory, Recorder};

/// Linked brokers on a fresh bus per build; the last bus is kept to restart
/// rooms on it.
struct Memory {
    config: MemoryConfig,
    bus: Mutex<Option<Arc<MemoryBus>>>,
}

impl Memory {
    fn new(history_count: usize) -> Self {
        let config = MemoryConfig {
            history_count,
            ..MemoryConfig::default()
        };
        Memory {
            config,
            bus: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Factory for Memory {
    async fn build(&self, n: usize) -> Vec<Arc<dyn Backend>> {
        let bus = MemoryBus::with_config(self.config.clone());
        *self.bus.lock() = Some(bus.clone());
        (0..n)
            .map(|_| Arc::new(MemoryBroker::linked(&bus)) as Arc<dyn Backend>)
            .collect()
    }

    fn history_count(&self) -> usize {
        self.config.history_count
    }

    async fn restart_room(&self, room: &str) -> bool {
        let bus = self.bus.lock().clone();
        bus.expect("built before").restart_room(room);
        true
    }
}

#[tokio::test]
async fn memory_broker_passes_the_conformance_suite() {
    conformance::run_all(&Memory::new(20)).await;
}

#[tokio::test]
async fn with_the_default_history_the_suite_passes_too() {
    conformance::recover_reports_gap_after_trimming(&Memory::new(1000)).await;
}

fn broker(config: MemoryConfig) -> MemoryBroker {
    let b = MemoryBroker::with_config(config);
    b.attach(Recorder::new());
    b
}

async fn publish(b: &MemoryBroker, room: &str) -> Position {
    let p = Publication {
        topic: Topic::Room(Arc::from(room)),
        data: Bytes::from_static(b"0"),
        from: None,
        idempotency_key: None,
        except: None,
    };
    let r = b.publish(p).await.expect("publish");
    Position {
        offset: r.offset.expect("offset"),
        epoch: r.epoch.expect("epoch"),
    }
}

#[tokio::test(start_paused = true)]
async fn history_is_trimmed_by_age() {
    let b = broker(MemoryConfig {
        history_count: 100,
        history_age: Duration::from_secs(60),
        ..MemoryConfig::default()
    });
    b.subscribe(&Topic::Room("r".into())).await.unwrap();
    publish(&b, "r").await;
    tokio::time::advance(Duration::from_secs(40)).await;
    let second = publish(&b, "r").await;
    let start = Position {
        offset: 0,
        epoch: second.epoch.clone(),
    };
    let r = b.recover("r", &start).await.unwrap();
    assert!(matches!(r, Recovery::Recovered { ref messages, .. } if messages.len() == 2));
    // The first message is now 61 s old, the second 21 s.
    tokio::time::advance(Duration::from_secs(21)).await;
    assert_eq!(
        b.recover("r", &start).await,
        Ok(Recovery::Gap {
            position: second.clone()
        })
    );
    let after_first = Position {
        offset: 1,
        ..second.clone()
    };
    let r = b.recover("r", &after_first).await.unwrap();
    assert!(matches!(r, Recovery::Recovered { ref messages, .. } if messages.len() == 1));
}

#[tokio::test]
async fn no_history_means_every_recovery_is_a_gap_but_the_current_one() {
    let b = broker(MemoryConfig {
        history_count: 0,
        ..MemoryConfig::default()
    });
    let pos = publish(&b, "r").await;
    let before = Position {
        offset: 0,
        ..pos.clone()
    };
    assert_eq!(
        b.recover("r", &before).await,
        Ok(Recovery::Gap {
            position: pos.clone()
        })
    );
    assert_eq!(
        b.recover("r", &pos).await,
        Ok(Recovery::Recovered {
            messages: vec![],
            position: pos.clone()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn idle_rooms_without_subscribers_are_forgotten_and_restart_with_a_new_epoch() {
    let age = Duration::from_secs(60);
    let b = broker(MemoryConfig {
        history_count: 10,
        history_age: age,
        ..MemoryConfig::default()
    });
    let watched = Topic::Room("watched".into());
    b.subscribe(&watched).await.unwrap();
    let idle = publish(&b, "idle").await;
    let kept = publish(&b, "watched").await;
    assert_eq!(b.bus().room_count(), 2);

    tokio::time::advance(age + Duration::from_secs(1)).await;
    // Any broker call may run the sweep; this one does.
    b.position("other").await.unwrap();
    assert_eq!(b.bus().room_count(), 2, "idle is gone, other is new");
    assert_eq!(b.position("watched").await.unwrap(), kept);

    let again = b.position("idle").await.unwrap();
    assert_eq!(again.offset, 0);
    assert_ne!(
        again.epoch, idle.epoch,
        "a forgotten room starts a new epoch"
    );
    assert_eq!(
        b.recover("idle", &idle).await,
        Ok(Recovery::Gap { position: again })
    );

    // Once unsubscribed and idle, the watched room goes too.
    b.unsubscribe(&watched).await.unwrap();
    tokio::time::advance(age + Duration::from_secs(1)).await;
    b.position("other").await.unwrap();
    assert_eq!(
        b.bus().room_count(),
        1,
        "only the room just touched is left"
    );
}

#[tokio::test]
async fn a_dropped_node_takes_its_presence_and_subscriptions_along() {
    let bus = MemoryBus::new();
    let (a, b) = (MemoryBroker::linked(&bus), MemoryBroker::linked(&bus));
    let rec = Recorder::new();
    a.attach(Recorder::new());
    b.attach(rec.clone());
    b.subscribe(&Topic::Broadcast).await.unwrap();
    a.add("r", "a-1", "ann").await.unwrap();
    b.add("r", "b-1", "bob").await.unwrap();
    drop(b);
    let ann = PresenceEntry {
        user: Arc::from("ann"),
        connections: 1,
    };
    assert_eq!(a.list("r").await, Ok(vec![ann]));
    let p = Publication {
        topic: Topic::Broadcast,
        data: Bytes::from_static(b"1"),
        from: None,
        idempotency_key: None,
        except: None,
    };
    a.publish(p).await.unwrap();
    assert!(rec.deliveries().is_empty(), "a dropped node got a delivery");
}

/// A publication of `size` bytes of JSON to `room`.
fn sized(room: &str, size: usize) -> Publication {
    Publication {
        topic: Topic::Room(Arc::from(room)),
        data: Bytes::from(format!("\"{}\"", "x".repeat(size - 2))),
        from: None,
        idempotency_key: None,
        except: None,
    }
}

async fn recovered(b: &MemoryBroker, room: &str, since: &Position) -> Option<usize> {
    match b.recover(room, since).await.expect("recover") {
        Recovery::Recovered { messages, .. } => Some(messages.len()),
        Recovery::Gap { .. } => None,
    }
}

/// The per-message overhead the budget counts (see `MemoryConfig`).
const OVERHEAD: usize = 160;
/// The per-room overhead the budget counts, plus a one-letter name.
const ROOM: usize = 256 + 1;

#[tokio::test]
async fn a_rooms_history_is_bounded_by_bytes_as_well_as_by_count() {
    let per = 1000 + OVERHEAD;
    let b = broker(MemoryConfig {
        history_bytes: 10 * per,
        ..MemoryConfig::default()
    });
    let mut last = None;
    for _ in 0..25 {
        let r = b.publish(sized("r", 1000)).await.unwrap();
        last = Some(Position {
            offset: r.offset.unwrap(),
            epoch: r.epoch.unwrap(),
        });
    }
    let last = last.unwrap();
    let at = |offset| Position {
        offset,
        epoch: last.epoch.clone(),
    };
    // Ten messages fit: 16..=25.
    assert_eq!(recovered(&b, "r", &at(15)).await, Some(10));
    assert_eq!(recovered(&b, "r", &at(14)).await, None);
    assert_eq!(b.bus().usage().bytes, (ROOM + 10 * per) as u64);
    // A message larger than the room's whole allowance is not retained, and
    // the history no longer leads up to the current offset.
    b.publish(sized("r", 20 * per)).await.unwrap();
    assert_eq!(recovered(&b, "r", &at(25)).await, None);
    b.publish(sized("r", 1000)).await.unwrap();
    assert_eq!(recovered(&b, "r", &at(26)).await, Some(1));
    assert_eq!(b.bus().usage().bytes, (ROOM + per) as u64);
    // A restarted room holds no history, and the count says so.
    b.bus().restart_room("r");
    assert_eq!(b.bus().usage().bytes, ROOM as u64);
}

#[tokio::test]
async fn over_the_node_budget_the_oldest_messages_of_any_room_go_first() {
    let per = 1000 + OVERHEAD;
    // Room a: 10 messages, then b: 10, then c: 10; the budget holds 25
    // messages and three rooms.
    let b = broker(MemoryConfig {
        memory_budget: 3 * ROOM + 25 * per,
        ..MemoryConfig::default()
    });
    let mut epochs = Vec::new();
    for room in ["a", "b", "c"] {
        for _ in 0..10 {
            let r = b.publish(sized(room, 1000)).await.unwrap();
            if r.offset == Some(1) {
                epochs.push(r.epoch.unwrap());
            }
        }
    }
    let usage = b.bus().usage();
    assert!(usage.bytes <= usage.budget, "{usage:?}");
    assert_eq!(usage.evicted, 5, "{usage:?}");
    let since = |i: usize, offset| Position {
        offset,
        epoch: epochs[i].clone(),
    };
    // a lost its five oldest; b and c are whole.
    assert_eq!(recovered(&b, "a", &since(0, 0)).await, None);
    assert_eq!(recovered(&b, "a", &since(0, 5)).await, Some(5));
    assert_eq!(recovered(&b, "b", &since(1, 0)).await, Some(10));
    assert_eq!(recovered(&b, "c", &since(2, 0)).await, Some(10));
    // Ten more in c push the rest of a out, then the five oldest of b; a,
    // with no history and no subscriber, is forgotten.
    for _ in 0..10 {
        b.publish(sized("c", 1000)).await.unwrap();
    }
    let usage = b.bus().usage();
    assert!(usage.bytes <= usage.budget, "{usage:?}");
    assert_eq!(usage.evicted, 15, "{usage:?}");
    assert_eq!(b.bus().room_count(), 2);
    assert_eq!(recovered(&b, "b", &since(1, 5)).await, Some(5));
    assert_eq!(recovered(&b, "b", &since(1, 4)).await, None);
    assert_eq!(recovered(&b, "c", &since(2, 0)).await, Some(20));
}

/// The attack a guest could make with the defaults: many large messages
/// into many rooms. The history stays within the budget.
#[tokio::test]
async fn a_flood_of_large_messages_stays_within_the_budget() {
    let b = broker(MemoryConfig {
        memory_budget: 4 << 20,
        ..MemoryConfig::default()
    });
    for round in 0..200 {
        for room in 0..10 {
            b.publish(sized(&format!("flood-{room}"), 60_000))
                .await
                .unwrap();
            let usage = b.bus().usage();
            assert!(usage.bytes <= usage.budget, "round {round}: {usage:?}");
        }
    }
    let usage = b.bus().usage();
    // 2,000 messages of 60 kB: about 120 MB offered, 4 MiB kept.
    assert!(usage.evicted > 1900, "{usage:?}");
}

/// A key is remembered for the idempotency window, then a publish with it
/// is new again.
#[tokio::test(start_paused = true)]
async fn an_idempotency_key_is_forgotten_after_the_window() {
    let b = broker(MemoryConfig {
        idempotency_window: Duration::from_secs(60),
        ..MemoryConfig::default()
    });
    let keyed = || Publication {
        topic: Topic::Room(Arc::from("r")),
        data: Bytes::from_static(b"0"),
        from: None,
        idempotency_key: Some(Arc::from("k")),
        except: None,
    };
    assert!(!b.publish(keyed()).await.unwrap().duplicate);
    tokio::time::advance(Duration::from_secs(59)).await;
    let again = b.publish(keyed()).await.unwrap();
    assert_eq!((again.offset, again.duplicate), (Some(1), true));
    tokio::time::advance(Duration::from_secs(2)).await;
    let later = b.publish(keyed()).await.unwrap();
    assert_eq!((later.offset, later.duplicate), (Some(2), false));
}

/// A node handed an `Arc` of a broker uses that very broker for both seams,
/// and a presence backend set apart wins over the broker's, in either
/// order.
#[tokio::test]
async fn a_node_uses_a_shared_broker_and_a_presence_backend_of_its_own() {
    let shared = Arc::new(MemoryBroker::new());
    let node = switchboard_core::Node::builder()
        .broker(shared.clone())
        .build()
        .expect("valid");
    node.presence().add("r", "n-1", "ann").await.unwrap();
    assert_eq!(shared.list("r").await.unwrap().len(), 1);
    let p = node.broker().position("r").await.unwrap();
    assert_eq!(shared.position("r").await, Ok(p));

    let apart = Arc::new(MemoryBroker::new());
    let node = switchboard_core::Node::builder()
        .presence(apart.clone())
        .broker(MemoryBroker::new())
        .build()
        .expect("valid");
    node.presence().add("r", "n-1", "bob").await.unwrap();
    let bob = PresenceEntry {
        user: Arc::from("bob"),
        connections: 1,
    };
    assert_eq!(apart.list("r").await, Ok(vec![bob]));
}
