//! The history checks: positions, epochs, and recovery (exact replay,
//! gaps after trimming and after an epoch change).

use bytes::Bytes;
use std::sync::Arc;
use switchboard_core::broker::Recovery;
use switchboard_core::broker::{Broker, Delivery, Position, Topic};

use super::{Factory, Nodes, offsets, room_topic, unique};

/// `position` starts at 0 with the epoch the first message will carry, and
/// follows the offsets; every node sees the same.
pub async fn position_tracks_offsets_and_epoch(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let room = unique("room");
    let p0 = nodes.brokers[0].position(&room).await.expect("position");
    assert_eq!(p0.offset, 0, "a fresh room is at 0");
    assert_eq!(
        nodes.brokers[1].position(&room).await.expect("position"),
        p0
    );
    let mut last = None;
    for _ in 0..3 {
        last = Some(nodes.publish(1, &room_topic(&room), "0", None).await);
    }
    let last = last.expect("published");
    assert_eq!(
        last.epoch.as_ref(),
        Some(&p0.epoch),
        "the epoch of position"
    );
    for b in &nodes.brokers {
        let p = b.position(&room).await.expect("position");
        assert_eq!(
            p,
            Position {
                offset: 3,
                epoch: p0.epoch.clone()
            }
        );
    }
}

/// `recover` returns exactly the messages after the given offset, in order,
/// from any node, with the position they reach.
pub async fn recover_returns_exactly_what_was_missed(factory: &dyn Factory) {
    assert!(factory.history_count() >= 12, "history_count must be >= 12");
    let nodes = Nodes::new(factory, 2).await;
    let room = unique("room");
    let topic = room_topic(&room);
    let mut epoch = None;
    for k in 1..=10 {
        let from = format!("u{k}");
        epoch = nodes
            .publish(0, &topic, &k.to_string(), Some(&from))
            .await
            .epoch;
    }
    let epoch = epoch.expect("room epoch");
    let at = |offset| Position {
        offset,
        epoch: epoch.clone(),
    };
    let Recovery::Recovered { messages, position } = nodes.brokers[1]
        .recover(&room, &at(4))
        .await
        .expect("recover")
    else {
        panic!("recover since 4 reported a gap");
    };
    assert_eq!(position, at(10));
    let want: Vec<_> = (5..=10u64)
        .map(|k| Delivery {
            topic: topic.clone(),
            offset: Some(k),
            data: Bytes::from(k.to_string()),
            from: Some(Arc::from(format!("u{k}"))),
            except: None,
        })
        .collect();
    assert_eq!(messages, want, "recovered messages");
    let r = nodes.brokers[0]
        .recover(&room, &at(10))
        .await
        .expect("recover");
    assert_eq!(
        r,
        Recovery::Recovered {
            messages: vec![],
            position: at(10)
        }
    );
    let r = nodes.brokers[0]
        .recover(&room, &at(0))
        .await
        .expect("recover");
    let Recovery::Recovered { messages, .. } = r else {
        panic!("recover since 0 of a short history reported a gap");
    };
    assert_eq!(offsets(&messages), (1..=10).collect::<Vec<_>>());
}

/// Once the history was trimmed by count past a position, `recover` says
/// `Gap`; the same for a foreign epoch or an offset ahead of the room.
pub async fn recover_reports_gap_after_trimming(factory: &dyn Factory) {
    let count = factory.history_count() as u64;
    let nodes = Nodes::new(factory, 2).await;
    let room = unique("room");
    let mut epoch = None;
    for k in 1..=count + 3 {
        epoch = nodes
            .publish((k % 2) as usize, &room_topic(&room), "0", None)
            .await
            .epoch;
    }
    let epoch = epoch.expect("room epoch");
    let at = |offset| Position {
        offset,
        epoch: epoch.clone(),
    };
    let now = at(count + 3);
    let b = &nodes.brokers[1];
    assert_eq!(
        b.recover(&room, &at(2)).await,
        Ok(Recovery::Gap {
            position: now.clone()
        })
    );
    assert_eq!(
        b.recover(&room, &at(0)).await,
        Ok(Recovery::Gap {
            position: now.clone()
        })
    );
    let Ok(Recovery::Recovered { messages, position }) = b.recover(&room, &at(3)).await else {
        panic!("the oldest retained offset is {}: recovery must succeed", 4);
    };
    assert_eq!(position, now);
    assert_eq!(offsets(&messages), (4..=count + 3).collect::<Vec<_>>());
    let foreign = Position {
        offset: 5,
        epoch: Arc::from("not-an-epoch"),
    };
    assert_eq!(
        b.recover(&room, &foreign).await,
        Ok(Recovery::Gap {
            position: now.clone()
        })
    );
    let ahead = at(count + 10);
    assert_eq!(
        b.recover(&room, &ahead).await,
        Ok(Recovery::Gap { position: now })
    );
}

/// After a room's sequence restarted, a position of the old epoch gets
/// `Gap` with the new epoch. Skipped when the factory cannot restart rooms.
pub async fn recover_reports_gap_after_epoch_change(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let room = unique("room");
    let topic = room_topic(&room);
    let mut old = None;
    for _ in 0..3 {
        old = nodes.publish(0, &topic, "0", None).await.epoch;
    }
    let old = Position {
        offset: 3,
        epoch: old.expect("room epoch"),
    };
    if !factory.restart_room(&room).await {
        eprintln!("conformance: epoch change not simulated, check skipped");
        return;
    }
    let receipt = nodes.publish(1, &topic, "\"new\"", None).await;
    assert_eq!(receipt.offset, Some(1), "a new epoch starts at 1");
    let epoch = receipt.epoch.expect("room epoch");
    assert_ne!(epoch, old.epoch, "the epoch must change");
    let now = Position {
        offset: 1,
        epoch: epoch.clone(),
    };
    let r = nodes.brokers[1].recover(&room, &old).await;
    assert_eq!(
        r,
        Ok(Recovery::Gap {
            position: now.clone()
        })
    );
    let r = nodes.brokers[0]
        .recover(&room, &Position { offset: 0, epoch })
        .await;
    let Ok(Recovery::Recovered { messages, position }) = r else {
        panic!("recovery within the new epoch failed: {r:?}");
    };
    assert_eq!((offsets(&messages), position), (vec![1], now));
}

/// A user's messages are a stream of their own: offsets from 1, and
/// `recover` under the user's stream name returns exactly what came after
/// a position, as user deliveries, from any node.
pub async fn user_streams_recover_like_rooms(factory: &dyn Factory) {
    let nodes = Nodes::new(factory, 2).await;
    let user = Topic::User(unique("user"));
    let other = Topic::User(unique("user"));
    let stream = user.stream().expect("users have a stream").into_owned();
    assert_eq!(Topic::from_stream(&stream), user);
    let mut epoch = None;
    for k in 1..=4u64 {
        let r = nodes
            .publish((k % 2) as usize, &user, &k.to_string(), None)
            .await;
        assert_eq!(r.offset, Some(k), "user message {k}");
        epoch = r.epoch;
    }
    let r = nodes.publish(0, &other, "x", None).await;
    assert_eq!(r.offset, Some(1), "another user counts on its own");
    let epoch = epoch.expect("user stream epoch");
    let since = Position {
        offset: 2,
        epoch: epoch.clone(),
    };
    let Recovery::Recovered { messages, position } = nodes.brokers[1]
        .recover(&stream, &since)
        .await
        .expect("recover")
    else {
        panic!("recover of a user stream since 2 reported a gap");
    };
    assert_eq!(position, Position { offset: 4, epoch });
    assert_eq!(offsets(&messages), [3, 4]);
    assert!(messages.iter().all(|d| d.topic == user), "{messages:?}");
    let old = Position {
        offset: 2,
        epoch: Arc::from("0000000000000000"),
    };
    let gap = nodes.brokers[0]
        .recover(&stream, &old)
        .await
        .expect("recover");
    assert!(matches!(gap, Recovery::Gap { .. }), "{gap:?}");
}
