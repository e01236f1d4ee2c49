//! The churners: clients that come and go at a steady rate. Each signs in
//! as a user of its own or as another tab of a long-lived client's user;
//! four in five go to `/ws/chat`, join one to three rooms (some watching
//! presence), publish with acknowledgements, sometimes leave a room, and
//! sometimes leave one they are not in (the `not_joined` error is asked
//! for); one in five only listens on `/ws/notifications`. Then it ends in
//! one of the ways a real client ends: a close, a dropped socket, a reset,
//! or a drop followed by a resume from where it was (`user_stream` and
//! `since`), after the backend sent it and its rooms messages meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::session::{Ending, Endpoint, Session, Snapshot, UserStream};
use super::tally::Tally;
use super::{World, api, between};

/// How the churners come and go.
#[derive(Debug, Clone, Copy)]
pub struct ChurnConfig {
    /// New churners per second.
    pub rate: f64,
    /// The shortest and longest time a churner stays connected.
    pub life: (Duration, Duration),
    /// The shortest and longest time a resumed churner stays.
    pub resumed_life: (Duration, Duration),
}

/// Starts churners at `config.rate` until `stop` turns true; returns them,
/// still running (they end on their own, sooner once `stop` is true).
pub async fn spawn(
    world: Arc<World>,
    config: ChurnConfig,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut churners = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return churners;
                }
            }
            _ = tick.tick() => {
                churners.spawn(churn(world.clone(), config, stop.clone()));
                // Reap the finished ones as we go: a 30-minute run starts
                // thousands.
                while churners.try_join_next().is_some() {}
            }
        }
    }
}

/// One churner, from connect to its end.
async fn churn(world: Arc<World>, config: ChurnConfig, stop: watch::Receiver<bool>) {
    Tally::inc(&world.tally.churners);
    let user = if rand::random_bool(0.4) {
        world.steady_users[rand::random_range(0..world.steady_users.len())].clone()
    } else {
        world.churn_users[rand::random_range(0..world.churn_users.len())].clone()
    };
    let endpoint = if rand::random_bool(0.8) {
        Endpoint::Chat
    } else {
        Endpoint::Notifications
    };
    let stream = if rand::random_bool(0.8) {
        UserStream::New
    } else {
        UserStream::None
    };
    let resumable = stream == UserStream::New;
    let Ok(mut session) =
        Session::open(&world, endpoint, &user, stream, rand::random_bool(0.5)).await
    else {
        return;
    };
    if endpoint == Endpoint::Chat && !chat(&world, &mut session).await {
        return;
    }
    if !live(&mut session, between(config.life), &stop).await {
        return;
    }
    let ending = match rand::random_range(0..10) {
        0..4 => Ending::Close,
        4..6 => Ending::Drop,
        6 => Ending::Reset,
        _ if resumable => {
            let snapshot = session.snapshot();
            let gone = if rand::random_bool(0.5) {
                Ending::Drop
            } else {
                Ending::Reset
            };
            session.end(gone).await;
            resume(&world, &user, snapshot, config, &stop).await;
            return;
        }
        _ => Ending::Drop,
    };
    session.end(ending).await;
}

/// Rooms, publishes and leaves on `/ws/chat`; false when the session
/// ended (counted).
async fn chat(world: &World, session: &mut Session) -> bool {
    let rooms = world.some_rooms(rand::random_range(1..=3));
    for room in &rooms {
        if !session.join(room, rand::random_bool(0.3), None).await {
            return false;
        }
    }
    for _ in 0..rand::random_range(0..=3) {
        let room = &rooms[rand::random_range(0..rooms.len())];
        session.publish(room).await;
    }
    if rand::random_bool(0.25) {
        let elsewhere = world.rooms.iter().find(|r| !rooms.contains(r));
        if let Some(room) = elsewhere
            && !session.leave_not_joined(room).await
        {
            return false;
        }
    }
    if rooms.len() > 1 && rand::random_bool(0.3) && !session.leave(&rooms[0]).await {
        return false;
    }
    true
}

/// Reads for `time` (less once `stop` is true), then waits for the
/// replies; false when the session ended (counted).
async fn live(session: &mut Session, time: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if !*stop.borrow() {
        tokio::select! {
            alive = session.pump(time) => {
                if !alive {
                    return false;
                }
            }
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
    session.settle().await
}

/// Comes back after a drop: the backend sends the user a message and
/// publishes to one of its rooms while it is away, then it reconnects
/// with its user stream position and rejoins every room with `since`,
/// each of which must be recovered whole.
async fn resume(
    world: &Arc<World>,
    user: &str,
    snapshot: Snapshot,
    config: ChurnConfig,
    stop: &watch::Receiver<bool>,
) {
    api::publish_user(world, user).await;
    if let Some((room, _, _)) = snapshot.rooms.first() {
        api::publish_room(world, room).await;
    }
    tokio::time::sleep(Duration::from_millis(rand::random_range(50..500))).await;
    let Some(position) = snapshot.user_stream.clone() else {
        return;
    };
    let endpoint = if snapshot.chat {
        Endpoint::Chat
    } else {
        Endpoint::Notifications
    };
    let stream = UserStream::Since(position);
    let Ok(mut session) =
        Session::open(world, endpoint, user, stream, rand::random_bool(0.5)).await
    else {
        return;
    };
    Tally::inc(&world.tally.resumed);
    for (room, since, presence) in snapshot.rooms {
        if !session.join(&room, presence, Some(since)).await {
            return;
        }
    }
    if !live(&mut session, between(config.resumed_life), stop).await {
        return;
    }
    let ending = if rand::random_bool(0.5) {
        Ending::Close
    } else {
        Ending::Drop
    };
    session.end(ending).await;
}
