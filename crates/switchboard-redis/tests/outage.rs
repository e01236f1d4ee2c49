//! Losing Redis: operations fail at once with `Unavailable`, health says
//! so, and the broker reconnects and re-subscribes on its own.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_core::broker::{
    Broker, BrokerError, Position, Presence, PresenceEntry, Publication, Topic,
};
use switchboard_redis::RedisConfig;

use common::{RedisServer, eventually, node};

fn config() -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..RedisConfig::default()
    }
}

fn publication(topic: &Topic, data: &'static str) -> Publication {
    Publication {
        topic: topic.clone(),
        data: Bytes::from_static(data.as_bytes()),
        from: None,
        idempotency_key: None,
        except: None,
    }
}

fn unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, BrokerError>) {
    assert!(
        matches!(r, Err(BrokerError::Unavailable(_))),
        "{what}: expected Unavailable, got {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_fails_fast_and_the_broker_heals_on_its_own() {
    let mut server = RedisServer::start();
    let (a, _) = node(&server, config()).await;
    let (b, rec) = node(&server, config()).await;
    let room = Topic::Room("r".into());
    let user = Topic::User("bob".into());
    b.subscribe(&room).await.unwrap();
    b.subscribe(&user).await.unwrap();
    b.add("r", "b-1", "bob").await.unwrap();
    let before = a.publish(publication(&room, "1")).await.unwrap();
    rec.wait_for(&room, 1).await;
    assert_eq!(a.health().reconnects, 0);

    server.kill();
    let health = eventually("health to report the outage", || async {
        let h = a.health();
        (!h.connected).then_some(h)
    })
    .await;
    assert!(health.detail.is_some(), "a degraded health explains itself");
    let start = Instant::now();
    unavailable("publish", a.publish(publication(&room, "lost")).await);
    unavailable("publish", a.publish(publication(&user, "lost")).await);
    unavailable("subscribe", a.subscribe(&Topic::Room("s".into())).await);
    unavailable("position", a.position("r").await);
    let pos = Position {
        offset: 0,
        epoch: Arc::from("e"),
    };
    unavailable("recover", a.recover("r", &pos).await);
    unavailable("presence", a.list("r").await);
    unavailable("presence_add", a.add("r", "a-1", "ann").await);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    server.restart();
    eventually("both brokers to reconnect", || async {
        (a.health().connected && b.health().connected).then_some(())
    })
    .await;
    assert_eq!(b.health().detail, None);
    // Each counted the loss once (`switchboard_broker_reconnects_total`).
    assert_eq!(a.health().reconnects, 1);
    assert_eq!(b.health().reconnects, 1);
    // b subscribed again by itself: what a publishes now reaches it.
    let after = a.publish(publication(&room, "2")).await.unwrap();
    assert_eq!(after.offset, Some(1), "the new redis-server starts empty");
    assert_ne!(after.epoch, before.epoch, "so the room's epoch changed");
    let got = rec.wait_for(&room, 2).await;
    assert_eq!(got[1].data, Bytes::from_static(b"2"));
    a.publish(publication(&user, "3")).await.unwrap();
    rec.wait_for(&user, 1).await;
    // b wrote its presence entries again.
    let bob = PresenceEntry {
        user: Arc::from("bob"),
        connections: 1,
    };
    eventually("b's presence to be written again", || async {
        (a.list("r").await.ok()? == [bob.clone()]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    let (a, rec) = node(&server, config()).await;
    let room = Topic::Room("r".into());
    a.subscribe(&room).await.unwrap();

    server.pause();
    let start = Instant::now();
    unavailable("publish", a.publish(publication(&room, "lost?")).await);
    let waited = start.elapsed();
    assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
    eventually("health to report the hang", || async {
        (!a.health().connected).then_some(())
    })
    .await;
    unavailable("publish", a.publish(publication(&room, "lost")).await);

    server.resume();
    eventually("the broker to reconnect", || async {
        a.health().connected.then_some(())
    })
    .await;
    let r = a.publish(publication(&room, "ok")).await.unwrap();
    let got = rec.wait_for(&room, 1).await;
    // The publish that timed out may or may not have gone through, like
    // any operation whose answer was lost.
    assert_eq!(got.last().unwrap().offset, r.offset);
}
