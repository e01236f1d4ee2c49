//! The broker conformance suite against linked `MemoryBroker`s on one
//! `MemoryBus`, and the in-memory broker's own bounds (age trimming and
//! eviction, with the clock paused). Needs `--features conformance`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use switchboard::broker::conformance::{self, Factory, Recorder};
use switchboard::broker::memory::{MemoryBroker, MemoryBus, MemoryConfig};
use switchboard::broker::{Broker, Position, PresenceEntry, Publication, Recovery, Topic};

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
    async fn build(&self, n: usize) -> Vec<Arc<dyn Broker>> {
        let bus = MemoryBus::with_config(self.config.clone());
        *self.bus.lock() = Some(bus.clone());
        (0..n)
            .map(|_| Arc::new(MemoryBroker::linked(&bus)) as Arc<dyn Broker>)
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
    a.presence_add("r", "a-1", "ann").await.unwrap();
    b.presence_add("r", "b-1", "bob").await.unwrap();
    drop(b);
    let ann = PresenceEntry {
        user: Arc::from("ann"),
        connections: 1,
    };
    assert_eq!(a.presence("r").await, Ok(vec![ann]));
    let p = Publication {
        topic: Topic::Broadcast,
        data: Bytes::from_static(b"1"),
        from: None,
    };
    a.publish(p).await.unwrap();
    assert!(rec.deliveries().is_empty(), "a dropped node got a delivery");
}
