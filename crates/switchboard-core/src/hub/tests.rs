use std::task::{Context, Poll};

use futures_util::task::noop_waker;

use super::*;
use crate::broker::memory::MemoryBroker;
use crate::broker::{Delivery, DeliveryHandler};
use crate::outbox::Drained;

fn delivery(room: &Arc<str>, offset: u64) -> Delivery {
    Delivery {
        topic: Topic::Room(room.clone()),
        offset: Some(offset),
        data: Bytes::from(offset.to_string()),
        from: None,
        except: None,
    }
}

fn drain(outbox: &Outbox) -> Vec<Bytes> {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = crate::outbox::FrameQueue::new();
    while let Poll::Ready(Drained::Frames(_)) = outbox.poll_drain(&mut cx, &mut out, 100) {}
    std::iter::from_fn(|| out.pop_front()).collect()
}

#[test]
fn push_all_reaches_every_outbox_once_whatever_the_count() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker, Arc::default(), Arc::from("n"));
    // Around and past the prefetch distance.
    for n in 0..12 {
        let outboxes: Vec<_> = (0..n).map(|_| Arc::new(Outbox::new(8, 1 << 16))).collect();
        hub.push_all(&Bytes::from_static(b"f"), outboxes.iter());
        for (i, o) in outboxes.iter().enumerate() {
            assert_eq!(
                drain(o),
                vec![Bytes::from_static(b"f")],
                "{n} outboxes, #{i}"
            );
        }
    }
}

#[tokio::test]
async fn recovery_holds_live_messages_and_releases_only_those_after_the_replay() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let outbox = Arc::new(Outbox::new(100, 1 << 20));
    hub.add_joining(&Topic::Room(room.clone()), 1, &outbox)
        .await
        .unwrap();
    // Live messages arrive while the replay is being read: held.
    hub.deliver(&delivery(&room, 5));
    hub.deliver(&delivery(&room, 6));
    assert!(drain(&outbox).is_empty());
    // The replay ends at 5: 5 must not come twice, 6 must come after.
    let prelude = vec![
        Bytes::from_static(b"replay-4"),
        Bytes::from_static(b"replay-5"),
    ];
    hub.finish_join(&Topic::Room("r".into()), 1, prelude, 5);
    hub.deliver(&delivery(&room, 7));
    let frames = drain(&outbox);
    assert_eq!(frames.len(), 4);
    assert_eq!(&frames[0][..], b"replay-4");
    assert_eq!(&frames[1][..], b"replay-5");
    assert!(
        frames[2].ends_with(b"\"offset\":6,\"data\":6}"),
        "{:?}",
        frames[2]
    );
    assert!(
        frames[3].ends_with(b"\"offset\":7,\"data\":7}"),
        "{:?}",
        frames[3]
    );
    assert_eq!(hub.count(&Topic::Room(room.clone())), 1);
}

#[tokio::test]
async fn a_joining_member_counts_and_leaves_like_any_other() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let outbox = Arc::new(Outbox::new(100, 1 << 20));
    hub.add_joining(&Topic::Room(room.clone()), 1, &outbox)
        .await
        .unwrap();
    assert_eq!(hub.count(&Topic::Room(room.clone())), 1);
    assert!(hub.remove(Topic::Room(room.clone()), 1).await);
    assert_eq!(hub.count(&Topic::Room(room)), 0);
    assert_eq!(hub.room_count(), 0);
}

/// The position read reaches further than the live stream had: copies
/// of replayed messages that arrive after the replay are dropped, the
/// first later one goes through and makes the member live.
#[tokio::test]
async fn late_copies_of_the_replay_are_dropped_at_the_seam() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let outbox = Arc::new(Outbox::new(100, 1 << 20));
    hub.add_joining(&Topic::Room(room.clone()), 1, &outbox)
        .await
        .unwrap();
    hub.deliver(&delivery(&room, 3));
    // The replay read reached 5; live had only brought 3 so far.
    let prelude = vec![
        Bytes::from_static(b"replay-4"),
        Bytes::from_static(b"replay-5"),
        Bytes::from_static(b"joined"),
    ];
    hub.finish_join(&Topic::Room("r".into()), 1, prelude, 5);
    hub.deliver(&delivery(&room, 4));
    hub.deliver(&delivery(&room, 5));
    hub.deliver(&delivery(&room, 6));
    hub.deliver(&delivery(&room, 7));
    let frames = drain(&outbox);
    let text: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(text.len(), 5, "{text:?}");
    assert_eq!(&text[..3], ["replay-4", "replay-5", "joined"]);
    assert!(text[3].ends_with("\"offset\":6,\"data\":6}"), "{text:?}");
    assert!(text[4].ends_with("\"offset\":7,\"data\":7}"), "{text:?}");
    // Live now: no longer among the joining members.
    let members = hub.rooms.get("r").unwrap();
    assert_eq!(members.live.len(), 1);
    assert!(members.joining.lock().is_empty());
}

/// A member that is still seaming receives no message twice, and one
/// that leaves then is gone like any other.
#[tokio::test]
async fn a_seaming_member_leaves_cleanly() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let outbox = Arc::new(Outbox::new(100, 1 << 20));
    hub.add_joining(&Topic::Room(room.clone()), 1, &outbox)
        .await
        .unwrap();
    hub.finish_join(
        &Topic::Room("r".into()),
        1,
        vec![Bytes::from_static(b"joined")],
        9,
    );
    hub.deliver(&delivery(&room, 8));
    hub.deliver(&delivery(&room, 9));
    assert_eq!(drain(&outbox), vec![Bytes::from_static(b"joined")]);
    assert_eq!(hub.count(&Topic::Room(room.clone())), 1);
    assert!(hub.remove(Topic::Room(room.clone()), 1).await);
    assert_eq!(hub.room_count(), 0);
}

/// The frames queued, then the close request, if one was made.
fn drain_to_close(outbox: &Outbox) -> (Vec<Bytes>, Option<(u16, String)>) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = crate::outbox::FrameQueue::new();
    let close = loop {
        match outbox.poll_drain(&mut cx, &mut out, 100) {
            Poll::Ready(Drained::Frames(_)) => continue,
            Poll::Ready(Drained::Close(req)) => break Some((req.code.0, req.reason)),
            Poll::Pending => break None,
        }
    };
    (std::iter::from_fn(|| out.pop_front()).collect(), close)
}

/// A node whose broker link was cut misses what was published meanwhile;
/// the next delivery shows the hole. Its members get what was queued
/// before the hole, then 4005 (reconnect and recover), and never the
/// message after the hole as if nothing were missing.
#[tokio::test]
async fn a_hole_in_a_rooms_stream_sends_its_members_to_recover() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let live = Arc::new(Outbox::new(100, 1 << 20));
    let joining = Arc::new(Outbox::new(100, 1 << 20));
    hub.add(Topic::Room(room.clone()), 1, &live).await.unwrap();
    hub.deliver(&delivery(&room, 3));
    hub.deliver(&delivery(&room, 4));
    hub.add_joining(&Topic::Room(room.clone()), 2, &joining)
        .await
        .unwrap();
    // 5 and 6 never reached this node.
    assert_eq!(hub.deliver(&delivery(&room, 7)), 0);
    hub.deliver(&delivery(&room, 8));
    let (frames, close) = drain_to_close(&live);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[1].ends_with(b"\"offset\":4,\"data\":4}"));
    let (code, reason) = close.expect("a close request");
    assert_eq!(code, 4005);
    assert!(reason.contains("rejoin with since"), "{reason}");
    let (frames, close) = drain_to_close(&joining);
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(close.map(|c| c.0), Some(4005));
}

/// A room whose sequence restarted (a new epoch: Redis came back empty)
/// is a hole too: offset 1 after 9.
#[tokio::test]
async fn a_new_epoch_under_live_members_sends_them_to_recover() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let room: Arc<str> = Arc::from("r");
    let live = Arc::new(Outbox::new(100, 1 << 20));
    hub.add(Topic::Room(room.clone()), 1, &live).await.unwrap();
    hub.deliver(&delivery(&room, 9));
    // A message without an offset (delivered locally during an outage) is
    // in no sequence and goes through.
    let mut local = delivery(&room, 0);
    local.offset = None;
    assert_eq!(hub.deliver(&local), 1);
    assert_eq!(hub.deliver(&delivery(&room, 1)), 0);
    let (frames, close) = drain_to_close(&live);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(close.map(|c| c.0), Some(4005));
    // Consecutive offsets never trip it.
    let other = Arc::new(Outbox::new(100, 1 << 20));
    let room2: Arc<str> = Arc::from("r2");
    hub.add(Topic::Room(room2.clone()), 2, &other)
        .await
        .unwrap();
    for offset in 1..=50 {
        assert_eq!(hub.deliver(&delivery(&room2, offset)), 1);
    }
    assert_eq!(drain_to_close(&other).1, None);
}

fn user_delivery(user: &Arc<str>, offset: u64) -> Delivery {
    Delivery {
        topic: Topic::User(user.clone()),
        ..delivery(user, offset)
    }
}

/// A user's stream is checked as a room's: a hole (or a restarted
/// sequence) sends the user's connections on this node to resume it with
/// 4005, after what was queued before the hole, and never passes the
/// message after the hole off as the next one.
#[tokio::test]
async fn a_hole_in_a_users_stream_sends_their_connections_to_resume() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let hub = Hub::new(broker.clone(), Arc::default(), Arc::from("n"));
    let user: Arc<str> = Arc::from("ana");
    let tab1 = Arc::new(Outbox::new(100, 1 << 20));
    let tab2 = Arc::new(Outbox::new(100, 1 << 20));
    hub.add(Topic::User(user.clone()), 1, &tab1).await.unwrap();
    hub.add(Topic::User(user.clone()), 2, &tab2).await.unwrap();
    for offset in 1..=3 {
        assert_eq!(hub.deliver(&user_delivery(&user, offset)), 2);
    }
    // 4 never reached this node.
    assert_eq!(hub.deliver(&user_delivery(&user, 5)), 0);
    for tab in [&tab1, &tab2] {
        let (frames, close) = drain_to_close(tab);
        assert_eq!(frames.len(), 3, "{frames:?}");
        let (code, reason) = close.expect("a close request");
        assert_eq!(code, 4005);
        assert!(reason.contains("user_stream"), "{reason}");
    }
    // Another user's consecutive offsets, and one without an offset, pass.
    let bo: Arc<str> = Arc::from("bo");
    let tab = Arc::new(Outbox::new(100, 1 << 20));
    hub.add(Topic::User(bo.clone()), 3, &tab).await.unwrap();
    for offset in 1..=20 {
        assert_eq!(hub.deliver(&user_delivery(&bo, offset)), 1);
    }
    let mut local = user_delivery(&bo, 0);
    local.offset = None;
    assert_eq!(hub.deliver(&local), 1);
    assert_eq!(hub.deliver(&user_delivery(&bo, 21)), 1);
    assert_eq!(drain_to_close(&tab).1, None);
}
