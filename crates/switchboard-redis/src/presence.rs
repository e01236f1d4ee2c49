//! Presence across nodes.
//!
//! Each node writes its own entries of a room into a hash of its own,
//! `members:<instance>:<room>`, and records itself in the room's index
//! `member-nodes:<room>` (score: when its entries expire, `presence_ttl`
//! after the last refresh). A read merges the hashes of every node whose
//! score is still in the future. A background task of the live node (the
//! refresher) extends the scores and TTLs every `presence_ttl / 3`, so only
//! a dead node's entries expire.
//!
//! The node keeps a mirror of its entries. It is the truth the refresher
//! writes back whenever Redis lost them (expired during an outage, or a
//! restart), and whenever a write's outcome is unknown (the room is then
//! marked dirty). Changes to one room are serialized by a striped lock, so
//! a rewrite never races an add or a remove.
//!
//! A node's entries outlive its score by one more `presence_ttl`, so that
//! a node that dies leaves them readable. Each round the refresher claims,
//! in every room this node watches or has entries in, the nodes whose score
//! passed (one atomic script: it reads, deletes and announces their entries
//! as leaves on the room's presence channel). However many nodes survive,
//! each dead connection's leave is announced once. A node whose entries
//! were claimed while it was alive (cut off from Redis past its TTL) writes
//! them back and announces them as joining again.
//!
//! The same task also keeps the offset sequences of the rooms this node
//! subscribes to alive, every `room_ttl / 3`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use parking_lot::Mutex;
use switchboard_core::broker::{BrokerError, Topic};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

use crate::{Shared, ms};

const STRIPES: usize = 64;

/// This node's entries.
pub(crate) struct Local {
    rooms: Mutex<HashMap<Arc<str>, Entries>>,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: RandomState,
    /// Rewrite everything now (after a reconnection).
    pub(crate) resync: Notify,
}

#[derive(Default)]
struct Entries {
    /// conn → user.
    conns: HashMap<String, String>,
    /// Redis may not match `conns`: rewrite it.
    dirty: bool,
}

impl Local {
    pub(crate) fn new() -> Self {
        Local {
            rooms: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
            resync: Notify::new(),
        }
    }

    async fn lock(
        &self,
        room: &str,
        sh: &Shared,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, BrokerError> {
        let stripe = &self.stripes[self.hasher.hash_one(room) as usize % STRIPES];
        timeout(sh.config.command_timeout, stripe.lock())
            .await
            .map_err(|_| BrokerError::Unavailable("presence: redis is slow".into()))
    }

    fn set(&self, room: &str, conn: &str, user: Option<&str>, dirty: bool) {
        let mut rooms = self.rooms.lock();
        let entries = rooms.entry(Arc::from(room)).or_default();
        match user {
            Some(user) => {
                entries.conns.insert(conn.to_string(), user.to_string());
            }
            None => {
                entries.conns.remove(conn);
            }
        }
        entries.dirty |= dirty;
        if entries.conns.is_empty() && !entries.dirty {
            rooms.remove(room);
        }
    }

    fn mark_dirty(&self, room: &str) {
        self.rooms.lock().entry(Arc::from(room)).or_default().dirty = true;
    }

    /// The room's entries and whether they must be rewritten.
    fn snapshot(&self, room: &str) -> Option<(Vec<(String, String)>, bool)> {
        let rooms = self.rooms.lock();
        let e = rooms.get(room)?;
        let pairs = e.conns.iter().map(|(c, u)| (c.clone(), u.clone()));
        Some((pairs.collect(), e.dirty))
    }

    fn written(&self, room: &str) {
        let mut rooms = self.rooms.lock();
        if let Some(e) = rooms.get_mut(room) {
            e.dirty = false;
            if e.conns.is_empty() {
                rooms.remove(room);
            }
        }
    }

    fn names(&self) -> Vec<Arc<str>> {
        self.rooms.lock().keys().cloned().collect()
    }
}

pub(crate) async fn add(
    sh: &Shared,
    room: &str,
    conn: &str,
    user: &str,
) -> Result<(), BrokerError> {
    let _stripe = sh.presence.lock(room, sh).await?;
    let mut c = sh.link.cmd()?;
    sh.presence.set(room, conn, Some(user), false);
    let mut inv = sh
        .scripts
        .presence_add
        .key(sh.keys.members(&sh.instance, room));
    inv.key(sh.keys.member_nodes(room));
    inv.arg(conn)
        .arg(user)
        .arg(ms(sh.config.presence_ttl))
        .arg(&sh.instance);
    let result = sh
        .link
        .run("presence", inv.invoke_async::<i64>(&mut c))
        .await;
    if result.is_err() {
        // The caller is told it failed; if Redis applied it anyway, the
        // refresher's rewrite takes it back.
        sh.presence.set(room, conn, None, true);
    }
    result.map(drop)
}

pub(crate) async fn remove(sh: &Shared, room: &str, conn: &str) -> Result<(), BrokerError> {
    let _stripe = sh.presence.lock(room, sh).await?;
    sh.presence.set(room, conn, None, false);
    let mut c = match sh.link.cmd() {
        Ok(c) => c,
        Err(e) => {
            sh.presence.mark_dirty(room);
            return Err(e);
        }
    };
    let mut inv = sh
        .scripts
        .presence_remove
        .key(sh.keys.members(&sh.instance, room));
    inv.key(sh.keys.member_nodes(room))
        .arg(conn)
        .arg(&sh.instance);
    let result = sh
        .link
        .run("presence", inv.invoke_async::<i64>(&mut c))
        .await;
    if result.is_err() {
        sh.presence.mark_dirty(room);
    }
    result.map(drop)
}

pub(crate) async fn read(sh: &Shared, room: &str) -> Result<Vec<String>, BrokerError> {
    let mut c = sh.link.cmd()?;
    let (prefix, suffix) = sh.keys.members_parts(room);
    let mut inv = sh.scripts.presence_read.key(sh.keys.member_nodes(room));
    inv.arg(prefix).arg(suffix);
    sh.link.run("presence", inv.invoke_async(&mut c)).await
}

/// Rewrites one room's entries from the mirror (all of them, or none).
async fn write(sh: &Shared, room: &str, pairs: &[(String, String)]) -> Result<(), BrokerError> {
    let mut c = sh.link.cmd()?;
    let mut inv = sh
        .scripts
        .presence_write
        .key(sh.keys.members(&sh.instance, room));
    inv.key(sh.keys.member_nodes(room));
    inv.arg(ms(sh.config.presence_ttl))
        .arg(&sh.instance)
        .arg(presence_channel(sh, room));
    for (conn, user) in pairs {
        inv.arg(conn).arg(user);
    }
    sh.link
        .run("presence", inv.invoke_async::<i64>(&mut c))
        .await
        .map(drop)
}

/// The channel of a room's presence events.
fn presence_channel(sh: &Shared, room: &str) -> String {
    sh.keys.channel(&Topic::Presence(Arc::from(room)))
}

/// Announces the leaves of the nodes whose entries in `room` expired, and
/// deletes those entries. Returns how many leaves were announced.
async fn reap(sh: &Shared, room: &str) -> Result<u64, BrokerError> {
    let mut c = sh.link.cmd()?;
    let (prefix, suffix) = sh.keys.members_parts(room);
    let mut inv = sh.scripts.presence_reap.key(sh.keys.member_nodes(room));
    inv.arg(prefix)
        .arg(suffix)
        .arg(presence_channel(sh, room))
        .arg(&sh.instance);
    sh.link.run("presence", inv.invoke_async(&mut c)).await
}

/// The rooms whose dead nodes this node announces: those it watches and
/// those it has entries in.
fn reaped_rooms(sh: &Shared) -> Vec<Arc<str>> {
    let mut rooms = sh.link.presence_rooms();
    rooms.extend(sh.presence.names());
    rooms.sort_unstable();
    rooms.dedup();
    rooms
}

/// Extends one room's TTLs; rewrites it when dirty or gone from Redis.
async fn refresh_room(sh: &Shared, room: &str) -> Result<(), BrokerError> {
    let _stripe = sh.presence.lock(room, sh).await?;
    let Some((pairs, mut dirty)) = sh.presence.snapshot(room) else {
        return Ok(());
    };
    if !dirty {
        let mut c = sh.link.cmd()?;
        let mut inv = sh
            .scripts
            .presence_touch
            .key(sh.keys.members(&sh.instance, room));
        inv.key(sh.keys.member_nodes(room));
        inv.arg(ms(sh.config.presence_ttl)).arg(&sh.instance);
        dirty = sh
            .link
            .run("presence", inv.invoke_async::<i64>(&mut c))
            .await?
            == 0;
    }
    if dirty {
        write(sh, room, &pairs).await?;
        sh.presence.written(room);
    }
    Ok(())
}

/// Keeps the sequences of subscribed rooms alive.
async fn refresh_rooms(sh: &Shared) -> Result<(), BrokerError> {
    let rooms = sh.link.streams();
    let mut c = sh.link.cmd()?;
    for chunk in rooms.chunks(500) {
        let mut pipe = redis::pipe();
        for room in chunk {
            let ttl = ms(sh.config.room_ttl);
            pipe.cmd("PEXPIRE").arg(sh.keys.seq(room)).arg(ttl).ignore();
        }
        sh.link
            .run("refresh", pipe.query_async::<()>(&mut c))
            .await?;
    }
    Ok(())
}

/// The refresher task. See the module docs.
pub(crate) async fn refresher(sh: Arc<Shared>) {
    let every = sh.config.presence_ttl / 3;
    let rooms_every = sh.config.room_ttl / 3;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rooms_due = Instant::now() + rooms_every;
    loop {
        let resync = tokio::select! {
            _ = tick.tick() => false,
            _ = sh.presence.resync.notified() => true,
        };
        if resync {
            let names = sh.presence.names();
            names.iter().for_each(|room| sh.presence.mark_dirty(room));
        }
        for room in sh.presence.names() {
            if let Err(e) = refresh_room(&sh, &room).await {
                tracing::debug!(error = %e, "presence refresh failed, retried next time");
                break;
            }
        }
        for room in reaped_rooms(&sh) {
            match reap(&sh, &room).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(room = %room, leaves = n, "announced a dead node's leaves")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "presence reap failed, retried next time");
                    break;
                }
            }
        }
        if resync || Instant::now() >= rooms_due {
            match refresh_rooms(&sh).await {
                Ok(()) => rooms_due = Instant::now() + rooms_every,
                Err(e) => tracing::debug!(error = %e, "room refresh failed"),
            }
        }
    }
}

/// Removes every entry of this node (graceful shutdown).
pub(crate) async fn clear(sh: &Shared) -> Result<(), BrokerError> {
    for room in sh.presence.names() {
        let _stripe = sh.presence.lock(&room, sh).await?;
        write(sh, &room, &[]).await?;
        sh.presence.rooms.lock().remove(&room);
    }
    Ok(())
}
