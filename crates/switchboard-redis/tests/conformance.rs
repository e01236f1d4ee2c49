//! The broker conformance suite against linked `RedisBroker`s on one
//! `redis-server` of the test's own.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_redis::{RedisBroker, RedisConfig};
use switchboard_testkit::conformance::{self, Backend, Factory};

use common::{Inspect, RedisServer};

struct Redis {
    server: RedisServer,
    config: RedisConfig,
}

#[async_trait]
impl Factory for Redis {
    async fn build(&self, n: usize) -> Vec<Arc<dyn Backend>> {
        let mut brokers: Vec<Arc<dyn Backend>> = Vec::new();
        for _ in 0..n {
            let b = RedisBroker::connect(&self.server.url(), self.config.clone()).await;
            brokers.push(Arc::new(b.expect("connect")));
        }
        brokers
    }

    fn history_count(&self) -> usize {
        self.config.history_count
    }

    /// Deleting the sequence is what a Redis restart or an expired room
    /// amounts to: the next publish creates a new epoch.
    async fn restart_room(&self, room: &str) -> bool {
        let key = format!("{}seq:{room}", self.config.key_prefix);
        let deleted: i64 = self.server.query(redis::cmd("DEL").arg(key)).await;
        deleted == 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker_passes_the_conformance_suite() {
    let factory = Redis {
        server: RedisServer::start(),
        config: RedisConfig {
            history_count: 20,
            ..RedisConfig::default()
        },
    };
    conformance::run_all(&factory).await;
}
