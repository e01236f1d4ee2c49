//! What Redis sees of a node: its channels, its keys, its scripts; and
//! history trimmed by age.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::broker::{Broker, Position, Presence, Publication, Recovery, Topic};
use switchboard_redis::RedisConfig;

use common::{Inspect, RedisServer, eventually, node};

fn publication(topic: &Topic, data: &'static str) -> Publication {
    Publication {
        topic: topic.clone(),
        data: Bytes::from_static(data.as_bytes()),
        from: Some(Arc::from("ana")),
        idempotency_key: None,
        except: None,
    }
}

async fn channels(server: &RedisServer) -> Vec<String> {
    let mut c: Vec<String> = server
        .query(redis::cmd("PUBSUB").arg("CHANNELS").arg("sb:*"))
        .await;
    c.sort();
    c
}

#[tokio::test]
async fn a_node_holds_a_channel_only_while_it_subscribes() {
    let server = RedisServer::start();
    let (a, _) = node(&server, RedisConfig::default()).await;
    let room = Topic::Room("team:42".into());
    assert!(channels(&server).await.is_empty());
    a.subscribe(&room).await.unwrap();
    a.subscribe(&Topic::User("ana".into())).await.unwrap();
    a.subscribe(&Topic::Broadcast).await.unwrap();
    a.subscribe(&Topic::Presence("team:42".into()))
        .await
        .unwrap();
    // `subscribe` returned, so Redis has confirmed: no waiting needed.
    assert_eq!(
        channels(&server).await,
        [
            "sb:broadcast",
            "sb:presence:team:42",
            "sb:room:team:42",
            "sb:user:ana"
        ]
    );
    a.unsubscribe(&room).await.unwrap();
    a.unsubscribe(&Topic::Broadcast).await.unwrap();
    assert_eq!(
        channels(&server).await,
        ["sb:presence:team:42", "sb:user:ana"]
    );
}

#[tokio::test]
async fn keys_are_the_documented_ones_and_all_expire() {
    let server = RedisServer::start();
    let (a, _) = node(&server, RedisConfig::default()).await;
    let room = Topic::Room("r".into());
    let receipt = a.publish(publication(&room, "{}")).await.unwrap();
    a.add("r", "n-1", "ana").await.unwrap();

    let seq: Vec<String> = server.query(redis::cmd("HGETALL").arg("sb:seq:r")).await;
    let epoch = receipt.epoch.unwrap();
    let hist: Vec<Vec<u8>> = server
        .query(redis::cmd("LRANGE").arg("sb:hist:r").arg(0).arg(-1))
        .await;
    let hbytes = hist[0].len().to_string();
    assert_eq!(seq, ["epoch", &*epoch, "seq", "1", "hbytes", &hbytes]);
    assert_eq!(hist.len(), 1);
    assert!(hist[0].ends_with(b" 1r1:3:ana{}"), "entry: <ms> <payload>");
    let members = format!("sb:members:{}:r", a.instance());
    let users: Vec<String> = server.query(redis::cmd("HGETALL").arg(&members)).await;
    assert_eq!(users, ["n-1", "ana"]);
    let nodes: Vec<String> = server
        .query(redis::cmd("ZRANGE").arg("sb:member-nodes:r").arg(0).arg(-1))
        .await;
    assert_eq!(nodes, [a.instance()]);

    let mut keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*")).await;
    keys.sort();
    let mut want = vec![
        "sb:hist:r".to_string(),
        "sb:member-nodes:r".into(),
        members,
        "sb:seq:r".into(),
    ];
    want.sort();
    assert_eq!(keys, want);
    for key in keys {
        let ttl: i64 = server.query(redis::cmd("PTTL").arg(&key)).await;
        assert!(ttl > 0, "{key} has no TTL");
    }
}

#[tokio::test]
async fn publishing_survives_a_script_cache_flush() {
    let server = RedisServer::start();
    let (a, rec) = node(&server, RedisConfig::default()).await;
    let room = Topic::Room("r".into());
    a.subscribe(&room).await.unwrap();
    a.publish(publication(&room, "1")).await.unwrap();
    let () = server.query(redis::cmd("SCRIPT").arg("FLUSH")).await;
    let receipt = a.publish(publication(&room, "2")).await.unwrap();
    assert_eq!(receipt.offset, Some(2));
    let got = rec.wait_for(&room, 2).await;
    assert_eq!(got[1].data, Bytes::from_static(b"2"));
}

#[tokio::test]
async fn history_is_trimmed_by_age_but_the_sequence_goes_on() {
    let server = RedisServer::start();
    let config = RedisConfig {
        history_age: Duration::from_millis(300),
        ..RedisConfig::default()
    };
    let (a, _) = node(&server, config).await;
    let room = Topic::Room("r".into());
    a.publish(publication(&room, "1")).await.unwrap();
    let last = a.publish(publication(&room, "2")).await.unwrap();
    let now = Position {
        offset: 2,
        epoch: last.epoch.unwrap(),
    };
    let start = Position {
        offset: 0,
        epoch: now.epoch.clone(),
    };
    let r = a.recover("r", &start).await.unwrap();
    assert!(matches!(r, Recovery::Recovered { ref messages, .. } if messages.len() == 2));
    let gap = Recovery::Gap {
        position: now.clone(),
    };
    eventually("history to age out", || async {
        (a.recover("r", &start).await.unwrap() == gap).then_some(())
    })
    .await;
    // Nothing published since: the current position still recovers (empty).
    let r = a.recover("r", &now).await.unwrap();
    assert_eq!(
        r,
        Recovery::Recovered {
            messages: vec![],
            position: now
        }
    );
    let next = a.publish(publication(&room, "3")).await.unwrap();
    assert_eq!(next.offset, Some(3), "the sequence outlives its history");
}
