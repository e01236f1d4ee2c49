//! The pieces of the soak scenario ([`crate::scenario::soak`]): tokens for
//! distinct users, a client session that checks every frame it gets, the
//! long-lived clients, the churners, the backend's traffic on the HTTP
//! API, and the leak check that reads every node and Redis once the
//! clients are gone.
//!
//! - [`token`]: HS256 tokens, minted as an application's backend would.
//! - [`tally`]: what every task counts, and the problems it saw.
//! - [`session`]: one connection: opening, requests and their replies, and
//!   the offsets of every stream it receives, checked for holes.
//! - [`steady`]: clients that stay for the whole run.
//! - [`churn`]: clients that come and go, ending in every way a client
//!   ends.
//! - [`api`]: publishes to rooms, users and everyone, and presence reads.
//! - [`leaks`]: what the nodes and Redis still hold after everyone left.

pub mod api;
pub mod churn;
pub mod leaks;
pub mod session;
pub mod steady;
pub mod tally;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

/// What every client and the backend's traffic share: where to connect,
/// how to sign in, and what to count.
#[derive(Debug)]
pub struct World {
    /// `ws://<nginx>`: clients connect through the load balancer.
    pub base: String,
    /// The nodes' ports, for the HTTP API (called on loopback, as a
    /// backend next to them would).
    pub api_ports: Vec<u16>,
    /// Signs the users' tokens.
    pub minter: token::Minter,
    /// The rooms everyone picks from.
    pub rooms: Vec<String>,
    /// Users of the long-lived clients (some have two tabs).
    pub steady_users: Vec<String>,
    /// Users only churners have.
    pub churn_users: Vec<String>,
    /// The counts and problems.
    pub tally: Arc<tally::Tally>,
}

impl World {
    /// A room picked at random.
    pub fn room(&self) -> &str {
        &self.rooms[rand::random_range(0..self.rooms.len())]
    }

    /// `n` distinct rooms picked at random (fewer if there are fewer).
    pub fn some_rooms(&self, n: usize) -> Vec<String> {
        let mut picked: Vec<String> = Vec::new();
        while picked.len() < n.min(self.rooms.len()) {
            let room = self.room();
            if !picked.iter().any(|r| r == room) {
                picked.push(room.to_string());
            }
        }
        picked
    }

    /// Any user of the run, picked at random.
    pub fn any_user(&self) -> &str {
        let all = self.steady_users.len() + self.churn_users.len();
        let i = rand::random_range(0..all);
        self.steady_users
            .get(i)
            .unwrap_or_else(|| &self.churn_users[i - self.steady_users.len()])
    }

    /// A node's API port, picked at random.
    pub fn api_port(&self) -> u16 {
        self.api_ports[rand::random_range(0..self.api_ports.len())]
    }
}

/// A random duration between `range.0` and `range.1`.
pub fn between(range: (Duration, Duration)) -> Duration {
    if range.1 <= range.0 {
        return range.0;
    }
    range.0 + (range.1 - range.0).mul_f64(rand::random::<f64>())
}
