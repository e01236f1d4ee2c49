//! The backend's traffic on the HTTP API of the nodes (on loopback, a node
//! picked at random each time): messages to rooms and to users,
//! broadcasts, and presence reads of rooms and users. Every answer must be
//! a 200; anything else is counted as a problem.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::watch;

use super::World;
use super::tally::{Tally, kind};
use crate::http;

/// How much the backend sends.
#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// Room messages per second.
    pub room_rate: f64,
    /// User messages per second.
    pub user_rate: f64,
    /// Time between two broadcasts.
    pub broadcast_every: Duration,
    /// Time between two presence reads.
    pub presence_every: Duration,
}

/// Runs the backend's traffic until `stop` turns true.
pub async fn run(world: Arc<World>, config: ApiConfig, stop: watch::Receiver<bool>) {
    let rooms = every(
        Duration::from_secs_f64(1.0 / config.room_rate),
        &stop,
        || publish_room(&world, world.room()),
    );
    let users = every(
        Duration::from_secs_f64(1.0 / config.user_rate),
        &stop,
        || publish_user(&world, world.any_user()),
    );
    let broadcasts = every(config.broadcast_every, &stop, || broadcast(&world));
    let presence = every(config.presence_every, &stop, || read_presence(&world));
    tokio::join!(rooms, users, broadcasts, presence);
}

/// Calls `f` every `period`, one call at a time, until `stop` turns true.
async fn every<F, Fut>(period: Duration, stop: &watch::Receiver<bool>, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stop = stop.clone();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            _ = tick.tick() => f().await,
        }
    }
}

async fn post(world: &World, path: &str, counter: &AtomicU64) {
    let body = format!(
        r#"{{"data":{{"from":"backend","n":{}}}}}"#,
        Tally::get(counter) + 1
    );
    match http::post(world.api_port(), path, &body).await {
        Ok((200, reply)) if reply.contains("\"published\"") => Tally::inc(counter),
        Ok((status, reply)) => world.tally.problem(
            kind::FAILED_PUBLISH,
            format!("POST {path}: {status} {reply}"),
        ),
        Err(e) => world
            .tally
            .problem(kind::FAILED_PUBLISH, format!("POST {path}: {e}")),
    }
}

/// Publishes one message to `room` through the API.
pub async fn publish_room(world: &World, room: &str) {
    let path = format!("/api/rooms/{room}/messages");
    post(world, &path, &world.tally.api_rooms).await;
}

/// Sends one message to `user` through the API.
pub async fn publish_user(world: &World, user: &str) {
    let path = format!("/api/users/{user}/messages");
    post(world, &path, &world.tally.api_users).await;
}

async fn broadcast(world: &World) {
    post(world, "/api/broadcast", &world.tally.api_broadcasts).await;
}

/// Reads a room's presence or a user's online status, alternately.
async fn read_presence(world: &World) {
    let path = if rand::random_bool(0.5) {
        format!("/api/rooms/{}/presence", world.room())
    } else {
        format!("/api/users/{}/presence", world.any_user())
    };
    match http::get(world.api_port(), &path).await {
        Ok((200, _)) => Tally::inc(&world.tally.api_presence),
        Ok((status, reply)) => world
            .tally
            .problem(kind::FAILED_READ, format!("GET {path}: {status} {reply}")),
        Err(e) => world
            .tally
            .problem(kind::FAILED_READ, format!("GET {path}: {e}")),
    }
}
