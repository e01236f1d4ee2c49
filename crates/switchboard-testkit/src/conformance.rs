//! The checks every [`Broker`] and [`Presence`] implementation must pass:
//! the guarantees documented in `switchboard_core::broker`, as tests.
//!
//! Each check is a `pub async fn` that takes a [`Factory`] building `n`
//! linked brokers (one per node, as a cluster's nodes hold them), attaches a
//! [`Recorder`] to each, drives them through the public traits only, and
//! panics with a message on the first broken guarantee. [`run_all`] runs
//! them in turn. Every check uses room and user names of its own, so the
//! factory may hand out brokers on shared state (one Redis server).
//!
//! Waits are bounded by [`DEADLINE`] and end as soon as the awaited
//! deliveries arrived. To show that something did *not* arrive, a check
//! publishes a barrier message that every node subscribes to and waits for
//! it: this assumes that a node receives the messages it subscribed to in
//! the order they were published, across topics, which holds for the
//! in-memory broker (synchronous) and for Redis (one pub/sub connection per
//! node).
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     switchboard_testkit::conformance::run_all(&MyFactory::new()).await;
//! }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use switchboard_core::broker::{Broker, BrokerError, Delivery, DeliveryHandler, Presence};
use switchboard_core::broker::{Position, PresenceEntry, Publication, Receipt, Recovery, Topic};

mod history;

pub use history::{
    position_tracks_offsets_and_epoch, recover_reports_gap_after_epoch_change,
    recover_reports_gap_after_trimming, recover_returns_exactly_what_was_missed,
    user_streams_recover_like_rooms,
};

/// The longest any check waits for a delivery.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What one node holds: a broker that is its presence backend too, as the
/// in-memory and Redis brokers are. Implemented for every such type.
pub trait Backend: Broker + Presence {}

impl<T: Broker + Presence + ?Sized> Backend for T {}

/// Builds the brokers a check runs against.
#[async_trait]
pub trait Factory: Send + Sync {
    /// `n` brokers linked to each other, none attached yet.
    async fn build(&self, n: usize) -> Vec<Arc<dyn Backend>>;

    /// The history count the brokers keep per room (at least 12 for the
    /// checks to mean something; keep it small so trimming is quick).
    fn history_count(&self) -> usize;

    /// Restarts `room`'s offset sequence with a new epoch, as a broker
    /// restart would. Returns `false` when the implementation cannot, and
    /// the epoch check is then skipped. Default: cannot.
    async fn restart_room(&self, room: &str) -> bool {
        let _ = room;
        false
    }
}

/// A [`DeliveryHandler`] that records every delivery.
#[derive(Debug)]
pub struct Recorder {
    log: Mutex<Vec<Delivery>>,
    count: watch::Sender<usize>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder {
            log: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        })
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().clone()
    }

    /// The deliveries of one topic so far, in arrival order.
    pub fn of(&self, topic: &Topic) -> Vec<Delivery> {
        let log = self.log.lock();
        log.iter().filter(|d| &d.topic == topic).cloned().collect()
    }

    /// Waits until `n` deliveries of `topic` arrived and returns them.
    /// Panics after [`DEADLINE`].
    pub async fn wait_for(&self, topic: &Topic, n: usize) -> Vec<Delivery> {
        let mut changes = self.count.subscribe();
        let wait = async {
            loop {
                let got = self.of(topic);
                if got.len() >= n {
                    return got;
                }
                // The sender lives as long as `self`.
                let _ = changes.changed().await;
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(got) => got,
            Err(_) => panic!(
                "waited {DEADLINE:?} for {n} deliveries of {topic:?}, got {:?}",
                self.of(topic)
            ),
        }
    }
}

impl DeliveryHandler for Recorder {
    fn deliver(&self, delivery: &Delivery) -> usize {
        self.log.lock().push(delivery.clone());
        self.count.send_modify(|n| *n += 1);
        1
    }
}

/// Linked brokers with a recorder attached to each.
struct Nodes {
    brokers: Vec<Arc<dyn Backend>>,
    recorders: Vec<Arc<Recorder>>,
    barrier: Topic,
}

impl Nodes {
    async fn new(factory: &dyn Factory, n: usize) -> Nodes {
        let brokers = factory.build(n).await;
        assert_eq!(brokers.len(), n, "the factory built the wrong number");
        let recorders: Vec<_> = brokers.iter().map(|_| Recorder::new()).collect();
        for (b, r) in brokers.iter().zip(&recorders) {
            b.attach(r.clone());
        }
        let barrier = Topic::User(unique("barrier"));
        for b in &brokers {
            b.subscribe(&barrier).await.expect("subscribe barrier");
        }
        Nodes {
            brokers,
            recorders,
            barrier,
        }
    }

    async fn subscribe(&self, nodes: &[usize], topic: &Topic) {
        for &i in nodes {
            let r = self.brokers[i].subscribe(topic).await;
            r.unwrap_or_else(|e| panic!("node {i}: subscribe {topic:?}: {e}"));
        }
    }

    async fn publish(&self, node: usize, topic: &Topic, data: &str, from: Option<&str>) -> Receipt {
        let p = Publication {
            topic: topic.clone(),
            data: Bytes::copy_from_slice(data.as_bytes()),
            from: from.map(Arc::from),
            idempotency_key: None,
            except: None,
        };
        let r = self.brokers[node].publish(p).await;
        r.unwrap_or_else(|e| panic!("node {node}: publish to {topic:?}: {e}"))
    }

    /// Waits until every node saw a fresh barrier message: everything
    /// published before it has then arrived wherever it was going to.
    async fn settle(&self) {
        let seen = self.recorders[0].of(&self.barrier).len();
        self.publish(0, &self.barrier.clone(), "\"barrier\"", None)
            .await;
        for r in &self.recorders {
            r.wait_for(&self.barrier, seen + 1).await;
        }
    }

    fn of(&self, node: usize, topic: &Topic) -> Vec<Delivery> {
        self.recorders[node].of(topic)
    }
}

fn unique(prefix: &str) -> Arc<str> {
    Arc::from(format!("{prefix}-{:08x}", rand::random::<u32>()))
}

fn room_topic(room: &Arc<str>) -> Topic {
    Topic::Room(room.clone())
}

fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.offset.unwrap_or(0)).collect()
}

/// Runs every check.
pub async fn run_all(factory: &dyn Factory) {
    room_delivery_reaches_each_subscribed_node_once(factory).await;
    user_broadcast_and_presence_delivery(factory).await;
    unsubscribed_nodes_get_nothing(factory).await;
    room_offsets_count_up_in_order(factory).await;
    publisher_order_is_kept(factory).await;
    position_tracks_offsets_and_epoch(factory).await;
    recover_returns_exactly_what_was_missed(factory).await;
    recover_reports_gap_after_trimming(factory).await;
    recover_reports_gap_after_epoch_change(factory).await;
    user_streams_recover_like_rooms(factory).await;
    presence_merges_nodes(factory).await;
    idempotent_publishes_deliver_once_across_nodes(factory).await;
    except_travels_with_the_message(factory).await;
}

/// A publication's `except` (the connection it is not delivered to) reaches
/// every subscribed node with the message, for each kind of topic, and a
/// room's history keeps the message: recovery replays it.
pub async fn except_travels_with_the_message(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let room = room_topic(&unique("room"));
    let user = Topic::User(unique("user"));
    for topic in [&room, &user, &Topic::Broadcast] {
        nodes.subscribe(&[0, 1], topic).await;
    }
    let except: Arc<str> = Arc::from("0a1b2c3d-42");
    for topic in [&room, &user, &Topic::Broadcast] {
        let p = Publication {
            topic: topic.clone(),
            data: Bytes::from_static(br#"{"x":1}"#),
            from: Some(Arc::from("ana")),
            idempotency_key: None,
            except: Some(except.clone()),
        };
        nodes.brokers[0].publish(p).await.expect("publish");
        for i in [0, 1] {
            let got = nodes.recorders[i].wait_for(topic, 1).await;
            assert_eq!(
                got[0].except.as_deref(),
                Some(&*except),
                "node {i}: {topic:?}"
            );
            assert_eq!(
                (&got[0].data[..], got[0].from.as_deref()),
                (&br#"{"x":1}"#[..], Some("ana"))
            );
        }
    }
    // Another message without one, in the same room: each carries its own.
    nodes.publish(1, &room, "2", None).await;
    let got = nodes.recorders[0].wait_for(&room, 2).await;
    assert_eq!(got[1].except, None);
    let Topic::Room(name) = &room else {
        unreachable!()
    };
    let position = nodes.brokers[1].position(name).await.expect("position");
    let since = Position {
        offset: 0,
        epoch: position.epoch.clone(),
    };
    match nodes.brokers[1]
        .recover(name, &since)
        .await
        .expect("recover")
    {
        Recovery::Recovered { messages, .. } => {
            assert_eq!(offsets(&messages), vec![1, 2], "history keeps both");
        }
        gap => panic!("expected the history to cover both, got {gap:?}"),
    }
}

/// A publication with an idempotency key is delivered once per topic and
/// key, whichever node it is published from: a retry gets the first
/// receipt, marked as a duplicate. Another key, or the same key on another
/// topic, is another publication.
pub async fn idempotent_publishes_deliver_once_across_nodes(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let room = room_topic(&unique("room"));
    let other = room_topic(&unique("room"));
    let user = Topic::User(unique("user"));
    for topic in [&room, &other, &user] {
        nodes.subscribe(&[0, 1], topic).await;
    }
    let keyed = |topic: &Topic, data: &'static str, key: &str| Publication {
        topic: topic.clone(),
        data: Bytes::from_static(data.as_bytes()),
        from: None,
        idempotency_key: Some(Arc::from(key)),
        except: None,
    };
    let publish = |node: usize, p: Publication| {
        let b = nodes.brokers[node].clone();
        async move { b.publish(p).await.expect("publish") }
    };
    let first = publish(0, keyed(&room, "1", "k1")).await;
    assert_eq!(first.offset, Some(1));
    assert!(!first.duplicate, "a new key is no duplicate");
    for node in [0, 1] {
        let again = publish(node, keyed(&room, "1", "k1")).await;
        assert!(again.duplicate, "node {node}: a retry is a duplicate");
        assert_eq!((again.offset, &again.epoch), (first.offset, &first.epoch));
    }
    let second = publish(1, keyed(&room, "2", "k2")).await;
    assert_eq!((second.offset, second.duplicate), (Some(2), false));
    let elsewhere = publish(1, keyed(&other, "3", "k1")).await;
    assert_eq!((elsewhere.offset, elsewhere.duplicate), (Some(1), false));
    assert!(!publish(0, keyed(&user, "4", "k1")).await.duplicate);
    assert!(publish(1, keyed(&user, "4", "k1")).await.duplicate);
    nodes.settle().await;
    for i in [0, 1] {
        assert_eq!(offsets(&nodes.of(i, &room)), vec![1, 2], "node {i}");
        assert_eq!(nodes.of(i, &other).len(), 1, "node {i}");
        assert_eq!(nodes.of(i, &user).len(), 1, "node {i}");
    }
}

/// A room message reaches each subscribed node once, with its offset,
/// payload and publisher, and no other node; the publisher needs no
/// subscription.
pub async fn room_delivery_reaches_each_subscribed_node_once(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 3).await;
    let room = room_topic(&unique("room"));
    nodes.subscribe(&[0, 1], &room).await;
    let receipt = nodes.publish(2, &room, r#"{"n":1}"#, Some("alice")).await;
    assert_eq!(receipt.offset, Some(1), "first offset of a room");
    assert!(receipt.epoch.is_some(), "a room receipt carries the epoch");
    let want = Delivery {
        topic: room.clone(),
        offset: Some(1),
        data: Bytes::from_static(br#"{"n":1}"#),
        from: Some(Arc::from("alice")),
        except: None,
    };
    for i in [0, 1] {
        assert_eq!(
            nodes.recorders[i].wait_for(&room, 1).await,
            vec![want.clone()]
        );
    }
    nodes.settle().await;
    for i in [0, 1] {
        assert_eq!(nodes.of(i, &room).len(), 1, "node {i}: delivered twice");
    }
    assert!(nodes.of(2, &room).is_empty(), "unsubscribed node got it");
}

/// User, broadcast and presence messages reach each subscribed node once;
/// user messages and broadcasts with the offset and epoch of their stream
/// (a user's own, the broadcast stream), presence events without.
pub async fn user_broadcast_and_presence_delivery(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 3).await;
    let user = Topic::User(unique("user"));
    let presence = Topic::Presence(unique("room"));
    nodes.subscribe(&[1], &user).await;
    nodes.subscribe(&[0, 2], &Topic::Broadcast).await;
    nodes.subscribe(&[0, 1], &presence).await;
    // `local_recipients` is the broker's to report or not.
    let plain = |r: Receipt| (r.offset, r.epoch, r.duplicate);
    let none = (None, None, false);
    let to_user = nodes.publish(0, &user, "1", None).await;
    assert_eq!((to_user.offset, to_user.duplicate), (Some(1), false));
    let stream = user.stream().expect("users have a stream");
    let at = nodes.brokers[2].position(&stream).await.expect("position");
    assert_eq!(
        (Some(at.offset), Some(at.epoch)),
        (to_user.offset, to_user.epoch)
    );
    let receipt = nodes.publish(1, &Topic::Broadcast, "2", None).await;
    assert!(receipt.offset.is_some() && receipt.epoch.is_some());
    let broadcast_offset = receipt.offset;
    let event = r#"{"event":"join","user":"bob"}"#;
    assert_eq!(plain(nodes.publish(2, &presence, event, None).await), none);
    nodes.settle().await;
    let counts =
        |topic: &Topic| -> Vec<usize> { (0..3).map(|i| nodes.of(i, topic).len()).collect() };
    assert_eq!(counts(&user), [0, 1, 0], "user message per node");
    assert_eq!(counts(&Topic::Broadcast), [1, 0, 1], "broadcast per node");
    assert_eq!(counts(&presence), [1, 1, 0], "presence event per node");
    let d = &nodes.of(1, &user)[0];
    assert_eq!((d.offset, &d.data[..]), (Some(1), &b"1"[..]));
    let d = &nodes.of(2, &Topic::Broadcast)[0];
    assert_eq!((d.offset, &d.data[..]), (broadcast_offset, &b"2"[..]));
    let d = &nodes.of(0, &presence)[0];
    assert_eq!((d.offset, &d.data[..]), (None, event.as_bytes()));
}

/// After `unsubscribe` a node gets nothing more; the others still do.
pub async fn unsubscribed_nodes_get_nothing(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let room = room_topic(&unique("room"));
    nodes.subscribe(&[0, 1], &room).await;
    nodes.publish(0, &room, "1", None).await;
    nodes.recorders[1].wait_for(&room, 1).await;
    nodes.brokers[1]
        .unsubscribe(&room)
        .await
        .expect("unsubscribe");
    nodes.publish(0, &room, "2", None).await;
    nodes.publish(1, &room, "3", None).await;
    nodes.settle().await;
    assert_eq!(offsets(&nodes.of(0, &room)), [1, 2, 3]);
    assert_eq!(
        offsets(&nodes.of(1, &room)),
        [1],
        "delivered after unsubscribe"
    );
}

/// Each room counts 1, 2, 3… on its own, whichever node publishes, and every
/// node receives a room's messages in offset order.
pub async fn room_offsets_count_up_in_order(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let (a, b) = (room_topic(&unique("a")), room_topic(&unique("b")));
    nodes.subscribe(&[0, 1], &a).await;
    nodes.subscribe(&[0, 1], &b).await;
    for k in 1..=20u64 {
        let r = nodes
            .publish((k % 2) as usize, &a, &k.to_string(), None)
            .await;
        assert_eq!(r.offset, Some(k), "room a, publish {k}");
        if k % 2 == 0 {
            let r = nodes.publish(0, &b, &k.to_string(), None).await;
            assert_eq!(r.offset, Some(k / 2), "room b, publish {}", k / 2);
        }
    }
    for i in 0..2 {
        let got = nodes.recorders[i].wait_for(&a, 20).await;
        assert_eq!(offsets(&got), (1..=20).collect::<Vec<_>>(), "node {i}");
        let data: Vec<_> = got.iter().map(|d| d.data.clone()).collect();
        let want: Vec<_> = (1..=20).map(|k: u64| Bytes::from(k.to_string())).collect();
        assert_eq!(data, want, "node {i}: payloads in offset order");
        let got = nodes.recorders[i].wait_for(&b, 10).await;
        assert_eq!(offsets(&got), (1..=10).collect::<Vec<_>>(), "node {i}");
    }
}

/// Three nodes publish at once, each awaiting its own publishes: every node
/// sees one gap-free offset order, and each publisher's messages in the
/// order it sent them (on rooms and on user topics).
pub async fn publisher_order_is_kept(factory: &dyn Factory) {
    const EACH: u64 = 25;
    let nodes = Arc::new(Nodes::new(factory, 3).await);
    let room = room_topic(&unique("room"));
    let user = Topic::User(unique("user"));
    nodes.subscribe(&[0, 1, 2], &room).await;
    nodes.subscribe(&[0, 1, 2], &user).await;
    let tasks: Vec<_> = (0..3)
        .map(|p| {
            let (nodes, room, user) = (nodes.clone(), room.clone(), user.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    let data = format!(r#"{{"p":{p},"n":{n}}}"#);
                    nodes.publish(p, &room, &data, None).await;
                    nodes.publish(p, &user, &data, None).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher task");
    }
    for i in 0..3 {
        let got = nodes.recorders[i].wait_for(&room, 3 * EACH as usize).await;
        assert_eq!(
            offsets(&got),
            (1..=3 * EACH).collect::<Vec<_>>(),
            "node {i}"
        );
        check_per_publisher(&got, i);
        check_per_publisher(
            &nodes.recorders[i].wait_for(&user, 3 * EACH as usize).await,
            i,
        );
    }
}

fn check_per_publisher(got: &[Delivery], node: usize) {
    let mut next: HashMap<u64, u64> = HashMap::new();
    for d in got {
        let v: serde_json::Value = serde_json::from_slice(&d.data).expect("test payload");
        let (p, n) = (v["p"].as_u64().unwrap_or(9), v["n"].as_u64().unwrap_or(0));
        let want = next.entry(p).or_default();
        assert_eq!(n, *want, "node {node}: publisher {p} out of order");
        *want += 1;
    }
}

/// Presence is the union of every node's entries, counted per user and
/// sorted; adding twice and removing what is absent are harmless.
pub async fn presence_merges_nodes(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 3).await;
    let (room, other) = (unique("room"), unique("other"));
    let b = &nodes.brokers;
    let ok = |r: Result<(), BrokerError>| r.expect("presence write");
    ok(b[0].add(&room, "n0-1", "bob").await);
    ok(b[1].add(&room, "n1-1", "bob").await);
    ok(b[1].add(&room, "n1-2", "alice").await);
    ok(b[1].add(&room, "n1-2", "alice").await);
    ok(b[2].add(&other, "n2-1", "carol").await);
    let entry = |user: &str, connections| PresenceEntry {
        user: Arc::from(user),
        connections,
    };
    for node in b {
        let got = node.list(&room).await.expect("presence");
        assert_eq!(got, vec![entry("alice", 1), entry("bob", 2)]);
    }
    ok(b[1].remove(&room, "n1-1").await);
    ok(b[2].remove(&room, "n1-1").await);
    ok(b[0].remove(&room, "absent").await);
    let got = b[2].list(&room).await.expect("presence");
    assert_eq!(got, vec![entry("alice", 1), entry("bob", 1)]);
    ok(b[0].remove(&room, "n0-1").await);
    ok(b[1].remove(&room, "n1-2").await);
    assert_eq!(b[0].list(&room).await, Ok(vec![]));
    assert_eq!(b[0].list(&other).await, Ok(vec![entry("carol", 1)]));
}
