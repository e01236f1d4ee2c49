//! The in-memory broker: the default for a single process.
//!
//! Several nodes in one process can share a [`MemoryBus`] (see
//! [`MemoryBroker::linked`]); they then behave like nodes sharing one Redis,
//! which lets multi-node behaviour be tested without any service.
//!
//! # Delivery
//!
//! Delivery is synchronous: `publish` hands the message to every subscribed
//! node's hub before it returns, under the room's lock, so offsets and
//! delivery order always agree. The receipt says how many of the
//! publishing node's connections the message was queued for
//! ([`Receipt::local_recipients`]), as the node's hub counted them.
//!
//! # History and memory
//!
//! Every stream (a room, a user, the broadcasts: see
//! [`Topic::stream`](crate::broker::Topic::stream)) is kept as a room is,
//! under its stream name; what follows says "room" for any of them.
//!
//! Each room keeps its last [`MemoryConfig::history_count`] messages (default
//! 1000) that are at most [`MemoryConfig::history_age`] old (default 10
//! minutes), in a ring buffer trimmed on every publish and every recovery.
//!
//! Memory stays bounded: a room's state (offset sequence, epoch, history) is
//! forgotten once no node subscribes to it and it was last used (published
//! to, read with `position` or `recover`) more than `history_age` ago, so
//! its newest message is older than that too. Forgetting is safe because epochs
//! are per room: the next publish starts a new epoch, and a client holding
//! an old position gets [`Recovery::Gap`], which its
//! history could not have filled anyway. The sweep piggybacks on broker calls
//! (there is no background task) and runs at most once every
//! `max(history_age / 2, 100 ms)`.
//!
//! Presence lives in the bus. Dropping a [`MemoryBroker`] removes its
//! node's subscriptions and presence entries, as a dead node's would expire.

mod budget;
mod idem;
mod room;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use self::budget::Budget;
use self::room::RoomState;
use super::{
    Broker, BrokerError, BrokerHealth, Delivery, DeliveryHandler, HistoryUsage, Position, Presence,
    PresenceEntry, Publication, Receipt, Recovery, Topic,
};

/// Settings of the in-memory broker. Every field states its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// The most messages a room retains for recovery. Default: 1000. Zero
    /// keeps no history: every recovery reports a gap.
    pub history_count: usize,
    /// How long a message is retained for recovery. Default: 10 minutes.
    pub history_age: Duration,
    /// The most bytes one room's history may hold (payloads and publisher
    /// ids, plus a fixed overhead per message); the oldest messages go
    /// first. A message larger than this on its own is not retained.
    /// Default: 1 MiB.
    pub history_bytes: usize,
    /// The most bytes the history and state of all rooms together may hold;
    /// the oldest messages, of any room, are evicted first. Default: 128 MiB.
    pub memory_budget: usize,
    /// How long a publish's idempotency key is remembered: a publish to the
    /// same topic with the same key within this time is not delivered
    /// again. At most 100,000 keys are remembered, the oldest forgotten
    /// first. Default: 5 minutes.
    pub idempotency_window: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            history_count: 1000,
            history_age: Duration::from_secs(600),
            history_bytes: 1 << 20,
            memory_budget: 128 << 20,
            idempotency_window: Duration::from_secs(300),
        }
    }
}

/// State shared by every node linked to one bus.
pub struct MemoryBus {
    config: MemoryConfig,
    /// One offset sequence and history per room. The mutex is held while a
    /// room message is delivered, which keeps delivery in offset order.
    rooms: DashMap<Arc<str>, Arc<Mutex<RoomState>>>,
    nodes: RwLock<Vec<Arc<NodeEntry>>>,
    /// Room → connection id → who and on which node.
    presence: DashMap<Arc<str>, HashMap<Arc<str>, Present>>,
    next_node: AtomicU64,
    /// When the next eviction sweep is due; `try_lock` keeps sweeps single.
    next_sweep: Mutex<Instant>,
    /// What the rooms cost, and the order in which messages are evicted.
    budget: Budget,
    /// Idempotency keys within the window. Locked before any room.
    seen: Mutex<idem::Seen>,
}

struct Present {
    user: Arc<str>,
    node: u64,
}

struct NodeEntry {
    id: u64,
    handler: OnceLock<Arc<dyn DeliveryHandler>>,
    topics: RwLock<HashSet<Topic>>,
}

impl NodeEntry {
    /// Hands `delivery` to the node if it subscribed to the topic; returns
    /// how many of its connections it was queued for.
    fn deliver_if_subscribed(&self, delivery: &Delivery) -> usize {
        if self.topics.read().contains(&delivery.topic)
            && let Some(h) = self.handler.get()
        {
            return h.deliver(delivery);
        }
        0
    }
}

impl MemoryBus {
    /// A new, empty bus with the default [`MemoryConfig`].
    pub fn new() -> Arc<Self> {
        Self::with_config(MemoryConfig::default())
    }

    /// A new, empty bus.
    pub fn with_config(config: MemoryConfig) -> Arc<Self> {
        Arc::new(MemoryBus {
            budget: Budget::new(config.memory_budget),
            seen: Mutex::default(),
            config,
            rooms: DashMap::new(),
            nodes: RwLock::new(Vec::new()),
            presence: DashMap::new(),
            next_node: AtomicU64::new(1),
            next_sweep: Mutex::new(Instant::now()),
        })
    }

    /// The bus's settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Restarts `room`'s offset sequence with a new epoch and drops its
    /// history, as a broker restart would; subscriptions stay. Meant for
    /// tests (the conformance suite's epoch check) and operators.
    pub fn restart_room(&self, room: &str) {
        let state = self.rooms.get(room).map(|r| r.clone());
        if let Some(state) = state {
            let mut state = state.lock();
            let before = state.usage();
            state.restart();
            self.budget.account(before, state.usage());
        }
    }

    /// Rooms whose state the bus holds (for tests and metrics).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// What the rooms' history and state are counted for, against
    /// [`MemoryConfig::memory_budget`], and how many messages the budget
    /// evicted so far.
    pub fn usage(&self) -> HistoryUsage {
        self.budget.usage()
    }

    fn room(&self, room: &str) -> Arc<Mutex<RoomState>> {
        if let Some(r) = self.rooms.get(room) {
            return r.clone();
        }
        self.rooms
            .entry(Arc::from(room))
            .or_insert_with(|| {
                self.budget.add_room(room);
                Arc::new(Mutex::new(RoomState::new(Instant::now())))
            })
            .clone()
    }

    /// Runs `f` on the room's state under its lock, creating the state if
    /// needed and retrying if a sweep evicted it in between. Whatever `f`
    /// retains or drops is counted in the budget.
    fn with_room<T>(&self, room: &str, f: impl FnOnce(&mut RoomState) -> T) -> T {
        loop {
            let state = self.room(room);
            let mut state = state.lock();
            if !state.evicted {
                let before = state.usage();
                let out = f(&mut state);
                self.budget.account(before, state.usage());
                return out;
            }
        }
    }

    /// Forgets `room` if nothing keeps it (no subscriber, no history).
    /// Takes the map's lock, then the room's, like the sweep.
    fn forget_if_bare(&self, room: &str) {
        self.rooms.remove_if(room, |name, state| {
            let mut state = state.lock();
            if !state.is_bare() {
                return false;
            }
            state.evicted = true;
            self.budget.remove_room(name, state.usage());
            true
        });
    }

    /// Counts a message just retained in `room` and, while the bus is over
    /// its budget, evicts the oldest retained messages of any room. Never
    /// called with a room lock held: the budget's order lock comes first.
    fn retained(&self, room: &Arc<str>, epoch: &Arc<str>, offset: u64) {
        let evict = |room: &str, epoch: &str, offset: u64| {
            let state = self.rooms.get(room).map(|r| r.clone())?;
            let mut state = state.lock();
            if state.evicted {
                return None;
            }
            let before = state.usage();
            let messages = state.evict_through(epoch, offset);
            self.budget.account(before, state.usage());
            Some(budget::Evicted {
                messages,
                bare: state.is_bare(),
            })
        };
        let bare = self
            .budget
            .retained(room, epoch, offset, evict, |room| self.first_retained(room));
        for room in bare {
            self.forget_if_bare(&room);
        }
    }

    /// A room's epoch and oldest retained offset, for the budget's order.
    fn first_retained(&self, room: &str) -> Option<(Arc<str>, u64)> {
        let state = self.rooms.get(room).map(|r| r.clone())?;
        let state = state.lock();
        Some((state.epoch.clone(), state.first_retained()?))
    }

    /// Hands `delivery` to every subscribed node; returns how many
    /// connections of node `origin` (the publisher's) it was queued for.
    fn deliver(&self, delivery: &Delivery, origin: u64) -> usize {
        let mut local = 0;
        for node in self.nodes.read().iter() {
            let queued = node.deliver_if_subscribed(delivery);
            if node.id == origin {
                local = queued;
            }
        }
        local
    }

    /// Forgets idle rooms, at most once per sweep interval. Never called
    /// with a room lock held (the sweep takes map locks, then room locks).
    fn maybe_sweep(&self, now: Instant) {
        let Some(mut next) = self.next_sweep.try_lock() else {
            return;
        };
        if now < *next {
            return;
        }
        let age = self.config.history_age;
        *next = now + (age / 2).max(Duration::from_millis(100));
        self.rooms.retain(|name, state| {
            let mut state = state.lock();
            state.evicted = state.idle(now, age);
            if state.evicted {
                self.budget.remove_room(name, state.usage());
            }
            !state.evicted
        });
    }

    fn forget_node(&self, entry: &NodeEntry) {
        self.nodes.write().retain(|n| n.id != entry.id);
        for topic in entry.topics.read().iter() {
            if let Some(stream) = topic.stream() {
                self.with_room(&stream, |s| s.subscribers = s.subscribers.saturating_sub(1));
            }
        }
        self.presence.retain(|_, conns| {
            conns.retain(|_, p| p.node != entry.id);
            !conns.is_empty()
        });
    }
}

/// One node's handle on a [`MemoryBus`].
pub struct MemoryBroker {
    bus: Arc<MemoryBus>,
    entry: Arc<NodeEntry>,
}

impl MemoryBroker {
    /// A broker on a bus of its own: a single-node deployment.
    pub fn new() -> Self {
        Self::linked(&MemoryBus::new())
    }

    /// A single-node broker with the given settings.
    pub fn with_config(config: MemoryConfig) -> Self {
        Self::linked(&MemoryBus::with_config(config))
    }

    /// A broker on a shared bus, for several nodes in one process.
    pub fn linked(bus: &Arc<MemoryBus>) -> Self {
        let entry = Arc::new(NodeEntry {
            id: bus.next_node.fetch_add(1, Ordering::Relaxed),
            handler: OnceLock::new(),
            topics: RwLock::new(HashSet::new()),
        });
        bus.nodes.write().push(entry.clone());
        MemoryBroker {
            bus: bus.clone(),
            entry,
        }
    }

    /// The bus this broker is on.
    pub fn bus(&self) -> &Arc<MemoryBus> {
        &self.bus
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        self.bus.forget_node(&self.entry);
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn attach(&self, handler: Arc<dyn DeliveryHandler>) {
        // A second attach is ignored: the first node keeps the broker.
        let _ = self.entry.handler.set(handler);
    }

    async fn publish(&self, p: Publication) -> Result<Receipt, BrokerError> {
        if self.entry.handler.get().is_none() {
            return Err(BrokerError::NotAttached);
        }
        let now = Instant::now();
        // The stream it goes into: a room's name is shared, not copied.
        let stream: Option<Arc<str>> = match &p.topic {
            Topic::Room(room) => Some(room.clone()),
            _ => p.stream().map(|s| Arc::from(&*s)),
        };
        let key = p.idempotency_key.map(|k| idem::scoped(&p.topic, &k));
        // Held across the publish: checking the key and publishing are one
        // step (see `idem`).
        let mut seen = key.as_ref().map(|_| self.bus.seen.lock());
        if let (Some(seen), Some(key)) = (seen.as_mut(), &key)
            && let Some(receipt) = seen.check(key, now, self.bus.config.idempotency_window)
        {
            return Ok(receipt);
        }
        let mut delivery = Delivery {
            topic: p.topic,
            offset: None,
            data: p.data,
            from: p.from,
            except: p.except,
        };
        let receipt = match stream {
            Some(room) => {
                let (receipt, kept) = self.bus.with_room(&room, |seq| {
                    let kept = seq.append(&mut delivery, now, &self.bus.config);
                    let local = self.bus.deliver(&delivery, self.entry.id);
                    let receipt = Receipt {
                        offset: delivery.offset,
                        epoch: Some(seq.epoch.clone()),
                        duplicate: false,
                        local_recipients: Some(local),
                    };
                    (receipt, kept)
                });
                if kept && let (Some(offset), Some(epoch)) = (receipt.offset, &receipt.epoch) {
                    self.bus.retained(&room, epoch, offset);
                }
                receipt
            }
            None => {
                let local = self.bus.deliver(&delivery, self.entry.id);
                Receipt {
                    offset: None,
                    epoch: None,
                    duplicate: false,
                    local_recipients: Some(local),
                }
            }
        };
        if let (Some(mut seen), Some(key)) = (seen, key) {
            seen.insert(key, &receipt, now);
        }
        self.bus.maybe_sweep(now);
        Ok(receipt)
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        let added = self.entry.topics.write().insert(topic.clone());
        if added && let Some(stream) = topic.stream() {
            self.bus.with_room(&stream, |s| s.subscribers += 1);
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        let removed = self.entry.topics.write().remove(topic);
        if removed && let Some(stream) = topic.stream() {
            self.bus
                .with_room(&stream, |s| s.subscribers = s.subscribers.saturating_sub(1));
        }
        Ok(())
    }

    async fn position(&self, room: &str) -> Result<Position, BrokerError> {
        let now = Instant::now();
        let position = self.bus.with_room(room, |s| {
            s.touch(now);
            s.position()
        });
        self.bus.maybe_sweep(now);
        Ok(position)
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "memory",
            connected: true,
            detail: None,
            history: Some(self.bus.usage()),
            reconnects: 0,
        }
    }

    async fn recover(&self, room: &str, since: &Position) -> Result<Recovery, BrokerError> {
        let now = Instant::now();
        let age = self.bus.config.history_age;
        let recovery = self.bus.with_room(room, |s| s.recover(since, now, age));
        self.bus.maybe_sweep(now);
        Ok(recovery)
    }
}

#[async_trait]
impl Presence for MemoryBroker {
    async fn add(&self, room: &str, conn: &str, user: &str) -> Result<(), BrokerError> {
        let present = Present {
            user: Arc::from(user),
            node: self.entry.id,
        };
        self.bus
            .presence
            .entry(Arc::from(room))
            .or_default()
            .insert(Arc::from(conn), present);
        Ok(())
    }

    async fn remove(&self, room: &str, conn: &str) -> Result<(), BrokerError> {
        if let Some(mut conns) = self.bus.presence.get_mut(room) {
            conns.remove(conn);
        }
        self.bus
            .presence
            .remove_if(room, |_, conns| conns.is_empty());
        Ok(())
    }

    async fn list(&self, room: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        let mut users: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        if let Some(conns) = self.bus.presence.get(room) {
            for p in conns.values() {
                *users.entry(p.user.clone()).or_default() += 1;
            }
        }
        Ok(users
            .into_iter()
            .map(|(user, connections)| PresenceEntry { user, connections })
            .collect())
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("node", &self.entry.id)
            .finish_non_exhaustive()
    }
}
