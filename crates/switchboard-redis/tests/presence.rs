//! Presence entries outlive a crashed node by one TTL at most, a live
//! node's entries never expire, and the surviving nodes announce a dead
//! node's connections as leaving, once each.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::broker::{Broker, Presence, PresenceEntry, Topic};
use switchboard_redis::RedisConfig;
use switchboard_testkit::conformance::Recorder;

use common::{Inspect, RedisServer, eventually, node};

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
    a.add("r", "a-1", "ann").await.unwrap();
    a.add("r", "a-2", "bob").await.unwrap();
    b.add("r", "b-1", "bob").await.unwrap();
    let written = Instant::now();
    assert_eq!(
        b.list("r").await.unwrap(),
        [entry("ann", 1), entry("bob", 2)]
    );

    // A crash: no cleanup, and the refresher stops with the broker.
    drop(a);
    eventually("the dead node's entries to expire", || async {
        (b.list("r").await.unwrap() == [entry("bob", 1)]).then_some(())
    })
    .await;
    // b wrote its entry once; past two TTLs only its refresher kept it.
    eventually("two TTLs to pass", || async {
        (written.elapsed() > 2 * ttl).then_some(())
    })
    .await;
    assert_eq!(b.list("r").await.unwrap(), [entry("bob", 1)]);
}

#[tokio::test]
async fn close_removes_a_nodes_entries_at_once() {
    let server = RedisServer::start();
    let (a, _) = node(&server, RedisConfig::default()).await;
    let (b, _) = node(&server, RedisConfig::default()).await;
    a.add("r", "a-1", "ann").await.unwrap();
    a.add("s", "a-1", "ann").await.unwrap();
    b.add("r", "b-1", "bob").await.unwrap();
    a.close().await.unwrap();
    assert_eq!(b.list("r").await.unwrap(), [entry("bob", 1)]);
    assert_eq!(b.list("s").await.unwrap(), []);
}

/// A leave event as a node publishes it for a connection leaving a room
/// (`serde_json` writes the keys sorted).
fn leave(user: &str, conn: &str) -> String {
    format!(r#"{{"conn":"{conn}","event":"leave","user":"{user}"}}"#)
}

/// The presence events of `room` that `rec` received, as text.
fn events(rec: &Recorder, room: &str) -> Vec<String> {
    let topic = Topic::Presence(Arc::from(room));
    let events = rec.of(&topic).into_iter().map(|d| {
        assert_eq!(d.from, None, "presence events have no publisher");
        String::from_utf8(d.data.to_vec()).expect("utf-8")
    });
    events.collect()
}

/// Waits until every node had time to claim anything left (two TTLs past
/// `dead`, so several refresher rounds), then until every recorder received
/// a marker published after that: whatever was published before has
/// arrived too.
async fn settle(
    server: &RedisServer,
    recs: &[&Recorder],
    room: &str,
    dead: Instant,
    ttl: Duration,
) {
    eventually("two TTLs to pass", || async {
        (dead.elapsed() > 2 * ttl).then_some(())
    })
    .await;
    let channel = format!("sb:presence:{room}");
    let _: i64 = server
        .query(redis::cmd("PUBLISH").arg(channel).arg("1p::\"marker\""))
        .await;
    let topic = Topic::Presence(Arc::from(room));
    for rec in recs {
        eventually("the marker", || async {
            rec.of(&topic)
                .iter()
                .any(|d| &d.data[..] == b"\"marker\"")
                .then_some(())
        })
        .await;
    }
}

fn short_ttl() -> RedisConfig {
    RedisConfig {
        presence_ttl: Duration::from_millis(300),
        ..RedisConfig::default()
    }
}

/// A watcher that has no entries of its own in the room still hears the
/// leaves of a node that died, once each, even when presence reads ran
/// after the entries expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_connections_are_announced_as_leaving_once() {
    let server = RedisServer::start();
    let config = short_ttl();
    let ttl = config.presence_ttl;
    let (watcher, rec) = node(&server, config.clone()).await;
    let (member, _) = node(&server, config).await;
    watcher
        .subscribe(&Topic::Presence("r".into()))
        .await
        .unwrap();
    member.add("r", "m-1", "ann").await.unwrap();
    member.add("r", "m-2", "bob").await.unwrap();
    member.add("s", "m-1", "ann").await.unwrap();
    member.remove("r", "m-2").await.unwrap();

    drop(member);
    let dead = Instant::now();
    // A presence read after the expiry must not lose the dead node's
    // entries before they are announced.
    eventually("the dead node's entries to expire", || async {
        watcher.list("r").await.unwrap().is_empty().then_some(())
    })
    .await;
    rec.wait_for(&Topic::Presence("r".into()), 1).await;
    let after = dead.elapsed();
    eprintln!("leave after {after:?} (presence_ttl {ttl:?})");
    assert!(after < 5 * ttl, "the leave took {after:?}");
    settle(&server, &[&rec], "r", dead, ttl).await;
    assert_eq!(
        events(&rec, "r"),
        [leave("ann", "m-1"), "\"marker\"".into()]
    );
    // The room nobody watches is not announced, and its keys go away.
    assert!(events(&rec, "s").is_empty());
    eventually("every key of the dead node to go", || async {
        let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*")).await;
        keys.is_empty().then_some(())
    })
    .await;
}

/// With several survivors watching, each watcher still hears one leave per
/// dead connection: one node claims it and tells everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_announce_each_leave_once_between_them() {
    let server = RedisServer::start();
    let config = short_ttl();
    let ttl = config.presence_ttl;
    let topic = Topic::Presence("r".into());
    let (a, rec_a) = node(&server, config.clone()).await;
    let (b, rec_b) = node(&server, config.clone()).await;
    let (dying, _) = node(&server, config).await;
    for (n, conn, user) in [(&a, "a-1", "ann"), (&b, "b-1", "bob")] {
        n.subscribe(&topic).await.unwrap();
        n.add("r", conn, user).await.unwrap();
    }
    dying.add("r", "d-1", "cat").await.unwrap();
    dying.add("r", "d-2", "cat").await.unwrap();
    dying.add("r", "d-3", "\"dan\"\n").await.unwrap();

    drop(dying);
    let dead = Instant::now();
    for rec in [&rec_a, &rec_b] {
        rec.wait_for(&topic, 3).await;
    }
    let after = dead.elapsed();
    eprintln!("leaves after {after:?} (presence_ttl {ttl:?})");
    assert!(after < 5 * ttl, "the leaves took {after:?}");
    settle(&server, &[&rec_a, &rec_b], "r", dead, ttl).await;
    for rec in [&rec_a, &rec_b] {
        let mut got = events(rec, "r");
        assert_eq!(got.pop().as_deref(), Some("\"marker\""));
        got.sort();
        let escaped = r#"{"conn":"d-3","event":"leave","user":"\"dan\"\n"}"#;
        assert_eq!(
            got,
            [leave("cat", "d-1"), leave("cat", "d-2"), escaped.into()]
        );
    }
    assert_eq!(
        a.list("r").await.unwrap(),
        [entry("ann", 1), entry("bob", 1)]
    );
}

/// A node cut off from Redis past its TTL is announced as gone; when its
/// refresher writes its entries back, its connections are announced as
/// joining again, so an event-driven list ends up right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_announces_its_connections_again() {
    let server = RedisServer::start();
    let config = short_ttl();
    let topic = Topic::Presence("r".into());
    let (watcher, rec) = node(&server, config).await;
    // The member refreshes after the watcher claimed its entries.
    let slow = RedisConfig {
        presence_ttl: Duration::from_secs(3),
        ..RedisConfig::default()
    };
    let (member, _) = node(&server, slow).await;
    watcher.subscribe(&topic).await.unwrap();
    member.add("r", "m-1", "ann").await.unwrap();
    // What a survivor sees of a node that missed its refreshes.
    let () = server
        .query(
            redis::cmd("ZADD")
                .arg("sb:member-nodes:r")
                .arg(1)
                .arg(member.instance()),
        )
        .await;
    let got = rec.wait_for(&topic, 2).await;
    let join = r#"{"conn":"m-1","event":"join","user":"ann"}"#;
    let got: Vec<&[u8]> = got.iter().map(|d| &d.data[..]).collect();
    assert_eq!(got, [leave("ann", "m-1").as_bytes(), join.as_bytes()]);
    eventually("the entries to be back", || async {
        (watcher.list("r").await.unwrap() == [entry("ann", 1)]).then_some(())
    })
    .await;
}
