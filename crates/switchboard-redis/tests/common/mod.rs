//! A `redis-server` of the test's own on a free loopback port, killed on
//! drop, and helpers to wait on conditions with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::broker::Broker;
use switchboard_redis::{RedisBroker, RedisConfig};
use switchboard_testkit::conformance::Recorder;

/// The longest a test waits for anything.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) use switchboard_testkit::RedisServer;

/// Inspecting the test's server with plain Redis commands.
pub(crate) trait Inspect {
    /// A plain connection to the server.
    async fn conn(&self) -> redis::aio::MultiplexedConnection;
    /// Runs one command.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T;
}

impl Inspect for RedisServer {
    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("url");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.conn().await)
            .await
            .expect("query")
    }
}

/// A connected broker with a recorder attached.
pub(crate) async fn node(
    server: &RedisServer,
    config: RedisConfig,
) -> (RedisBroker, Arc<Recorder>) {
    let broker = RedisBroker::connect(&server.url(), config)
        .await
        .expect("connect");
    let recorder = Recorder::new();
    broker.attach(recorder.clone());
    (broker, recorder)
}

/// Waits until `check` returns `Some`, polling; panics after [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    switchboard_testkit::ws::eventually(what, DEADLINE, check).await
}
