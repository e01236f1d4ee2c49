//! The long-lived clients: each connects once on `/ws/chat` with its user
//! stream, joins one to three rooms (half of them watching presence), and
//! stays for the whole run, reading everything and now and then publishing
//! with an acknowledgement or asking who is in a room. At the end it waits
//! for its replies and ends with a close (seven in ten), a dropped socket
//! (two) or a reset (one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::session::{Ending, Endpoint, Next, Session, UserStream};
use super::{World, between};

/// How a long-lived client behaves.
#[derive(Debug, Clone, Copy)]
pub struct SteadyConfig {
    /// The shortest and longest wait between two of its requests.
    pub every: (Duration, Duration),
}

/// Runs long-lived client `index` as `user` until `stop` turns true.
/// `ready` counts the clients that joined their rooms (or gave up), so
/// the scenario knows when the population is in place.
pub async fn run(
    world: Arc<World>,
    index: usize,
    user: String,
    config: SteadyConfig,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let opened = Session::open(
        &world,
        Endpoint::Chat,
        &user,
        UserStream::New,
        index % 2 == 1,
    )
    .await;
    let Ok(mut session) = opened else {
        ready.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let rooms = world.some_rooms(rand::random_range(1..=3));
    for room in &rooms {
        if !session.join(room, rand::random_bool(0.5), None).await {
            ready.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let mut next_request = tokio::time::Instant::now() + between(config.every);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            () = tokio::time::sleep_until(next_request) => {
                let room = &rooms[rand::random_range(0..rooms.len())];
                if rand::random_bool(0.25) {
                    session.presence(room).await;
                } else {
                    session.publish(room).await;
                }
                next_request = tokio::time::Instant::now() + between(config.every);
            }
            next = session.next() => {
                if next == Next::Ended {
                    return;
                }
            }
        }
    }
    if !session.settle().await {
        return;
    }
    let ending = match rand::random_range(0..10) {
        0..7 => Ending::Close,
        7..9 => Ending::Drop,
        _ => Ending::Reset,
    };
    session.end(ending).await;
}
