//! [`RedisConfig`] and the names of every Redis key and channel.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::broker::Topic;

/// Settings of the Redis broker. Every field states its default; the
/// defaults suit a production cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Prefix of every key and channel name. Default: `"sb:"`. Clusters that
    /// share one Redis need different prefixes.
    pub key_prefix: String,
    /// The most messages a room retains for recovery. Default: 1000. Zero
    /// keeps no history.
    pub history_count: usize,
    /// How long a message is retained for recovery. Default: 10 minutes.
    pub history_age: Duration,
    /// The most bytes one room's history may hold in Redis (each entry
    /// counts its payload, publisher id and about 30 bytes of framing); the
    /// oldest entries go first. A message larger than this on its own is
    /// not retained. Default: 1 MiB. Redis's own `maxmemory` bounds all
    /// rooms together (see `docs/scaling.md`).
    pub history_bytes: usize,
    /// How long a publish's idempotency key is remembered in Redis: a
    /// publish to the same topic with the same key within this time, from
    /// any node, is not delivered again. Default: 5 minutes.
    pub idempotency_window: Duration,
    /// How long a room's offset sequence and epoch outlive its last use
    /// (publish, position, recovery) while no node subscribes to it; nodes
    /// that subscribe keep it alive. Default: 10 minutes. At least
    /// `history_age`.
    pub room_ttl: Duration,
    /// How long a node's presence entries outlive the node: a node refreshes
    /// them every `presence_ttl / 3`, so a node that dies without cleaning
    /// up disappears from presence within this time, and the nodes watching
    /// its rooms announce its connections as leaving within `4/3` of it.
    /// Its keys stay in Redis for twice this time at most. Default: 30
    /// seconds.
    pub presence_ttl: Duration,
    /// The longest wait for a TCP connection to Redis. Default: 2 seconds.
    pub connect_timeout: Duration,
    /// The longest wait for one command's reply; past it the operation
    /// fails with `Unavailable`. Default: 2 seconds.
    pub command_timeout: Duration,
    /// How often an idle node checks its connections with `PING`, which
    /// detects a Redis that hangs rather than closes. Default: 5 seconds.
    pub ping_interval: Duration,
    /// The first reconnection delay after losing Redis; each failed attempt
    /// doubles it. Default: 100 ms.
    pub reconnect_min: Duration,
    /// The longest reconnection delay. Default: 5 seconds.
    pub reconnect_max: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            key_prefix: "sb:".to_string(),
            history_count: 1000,
            history_age: Duration::from_secs(600),
            history_bytes: 1 << 20,
            idempotency_window: Duration::from_secs(300),
            room_ttl: Duration::from_secs(600),
            presence_ttl: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// Checks the settings; [`RedisBroker::connect`](crate::RedisBroker::connect)
    /// calls it.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("presence_ttl", self.presence_ttl),
            ("room_ttl", self.room_ttl),
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
            ("ping_interval", self.ping_interval),
            ("reconnect_min", self.reconnect_min),
            ("idempotency_window", self.idempotency_window),
        ];
        for (name, value) in positive {
            if value < Duration::from_millis(3) {
                return Err(format!("{name} must be at least 3 ms"));
            }
        }
        if self.room_ttl < self.history_age {
            return Err("room_ttl must be at least history_age".into());
        }
        if self.reconnect_max < self.reconnect_min {
            return Err("reconnect_max must be at least reconnect_min".into());
        }
        if self.history_bytes == 0 {
            return Err("history_bytes must be at least 1".into());
        }
        if self.key_prefix.is_empty() {
            return Err("key_prefix must not be empty".into());
        }
        Ok(())
    }
}

/// Key and channel names. See `docs/scaling.md` for the table.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The pub/sub channel of a topic.
    pub(crate) fn channel(&self, topic: &Topic) -> String {
        let p = &self.prefix;
        match topic {
            Topic::Room(room) => format!("{p}room:{room}"),
            Topic::User(user) => format!("{p}user:{user}"),
            Topic::Broadcast => format!("{p}broadcast"),
            Topic::Presence(room) => format!("{p}presence:{room}"),
        }
    }

    /// The topic of a channel name, for the kind letter of its payload.
    pub(crate) fn topic(&self, channel: &[u8], kind: u8) -> Option<Topic> {
        let rest = std::str::from_utf8(channel.strip_prefix(self.prefix.as_bytes())?).ok()?;
        let name = |word: &str| rest.strip_prefix(word).map(Arc::from);
        match kind {
            b'r' => name("room:").map(Topic::Room),
            b'u' => name("user:").map(Topic::User),
            b'p' => name("presence:").map(Topic::Presence),
            b'b' if rest == "broadcast" => Some(Topic::Broadcast),
            _ => None,
        }
    }

    /// STRING, expiring after the idempotency window: a publish's
    /// idempotency key on one topic (`<offset> <epoch>` for a room, `1`
    /// otherwise). The topic's name is length-prefixed, so no room, user
    /// and key can make another's.
    pub(crate) fn idem(&self, topic: &Topic, key: &str) -> String {
        let p = &self.prefix;
        match topic {
            Topic::Room(r) => format!("{p}idem:room:{}:{r}:{key}", r.len()),
            Topic::User(u) => format!("{p}idem:user:{}:{u}:{key}", u.len()),
            Topic::Broadcast => format!("{p}idem:broadcast:{key}"),
            Topic::Presence(r) => format!("{p}idem:presence:{}:{r}:{key}", r.len()),
        }
    }

    /// HASH `{epoch, seq, hbytes}`: a room's offset sequence, and the bytes
    /// of its history.
    pub(crate) fn seq(&self, room: &str) -> String {
        format!("{}seq:{room}", self.prefix)
    }

    /// LIST of `<ms> <payload>`: a room's history, oldest first.
    pub(crate) fn hist(&self, room: &str) -> String {
        format!("{}hist:{room}", self.prefix)
    }

    /// HASH conn → user: one node's presence entries in a room.
    pub(crate) fn members(&self, instance: &str, room: &str) -> String {
        format!("{}members:{instance}:{room}", self.prefix)
    }

    /// The prefix and suffix around the instance id in [`Keys::members`].
    pub(crate) fn members_parts(&self, room: &str) -> (String, String) {
        (format!("{}members:", self.prefix), format!(":{room}"))
    }

    /// ZSET instance → expiry (ms): the nodes with entries in a room.
    pub(crate) fn member_nodes(&self, room: &str) -> String {
        format!("{}member-nodes:{room}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_back_to_their_topics() {
        let keys = Keys::new("sb:");
        let topics = [
            (Topic::Room("team:42".into()), b'r'),
            (Topic::User("ana:x".into()), b'u'),
            (Topic::Broadcast, b'b'),
            (Topic::Presence("lobby".into()), b'p'),
        ];
        for (topic, kind) in topics {
            let channel = keys.channel(&topic);
            assert_eq!(keys.topic(channel.as_bytes(), kind), Some(topic));
        }
        assert_eq!(keys.topic(b"sb:room:x", b'u'), None);
        assert_eq!(keys.topic(b"other:room:x", b'r'), None);
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(RedisConfig::default().validate(), Ok(()));
        let c = RedisConfig {
            room_ttl: Duration::from_secs(1),
            ..RedisConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("room_ttl"));
    }
}
