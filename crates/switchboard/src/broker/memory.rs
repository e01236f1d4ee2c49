//! The in-memory broker: the default for a single process.
//!
//! Several nodes in one process can share a [`MemoryBus`] (see
//! [`MemoryBroker::linked`]); they then behave like nodes sharing one Redis,
//! which lets multi-node behaviour be tested without any service.
//!
//! Delivery is synchronous: `publish` hands the message to every subscribed
//! node's hub before it returns, under the room's lock, so offsets and
//! delivery order always agree.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use super::{
    Broker, BrokerError, BrokerHealth, Delivery, DeliveryHandler, Position, Publication, Receipt,
    Topic,
};

/// State shared by every node linked to one bus.
#[derive(Default)]
pub struct MemoryBus {
    /// One offset sequence per room. The mutex is held while a room message
    /// is delivered, which keeps delivery in offset order.
    rooms: DashMap<Arc<str>, Arc<Mutex<RoomSeq>>>,
    nodes: RwLock<Vec<Arc<NodeEntry>>>,
}

struct RoomSeq {
    last: u64,
    epoch: Arc<str>,
}

struct NodeEntry {
    handler: OnceLock<Arc<dyn DeliveryHandler>>,
    topics: RwLock<HashSet<Topic>>,
}

impl NodeEntry {
    fn deliver_if_subscribed(&self, delivery: &Delivery) {
        if self.topics.read().contains(&delivery.topic)
            && let Some(h) = self.handler.get()
        {
            h.deliver(delivery);
        }
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryBus::default())
    }

    fn room(&self, room: &str) -> Arc<Mutex<RoomSeq>> {
        if let Some(r) = self.rooms.get(room) {
            return r.clone();
        }
        self.rooms
            .entry(Arc::from(room))
            .or_insert_with(|| {
                Arc::new(Mutex::new(RoomSeq {
                    last: 0,
                    epoch: new_epoch(),
                }))
            })
            .clone()
    }

    fn deliver(&self, delivery: &Delivery) {
        for node in self.nodes.read().iter() {
            node.deliver_if_subscribed(delivery);
        }
    }
}

fn new_epoch() -> Arc<str> {
    Arc::from(format!("{:016x}", rand::random::<u64>()))
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

    /// A broker on a shared bus, for several nodes in one process.
    pub fn linked(bus: &Arc<MemoryBus>) -> Self {
        let entry = Arc::new(NodeEntry {
            handler: OnceLock::new(),
            topics: RwLock::new(HashSet::new()),
        });
        bus.nodes.write().push(entry.clone());
        MemoryBroker {
            bus: bus.clone(),
            entry,
        }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        self.bus
            .nodes
            .write()
            .retain(|n| !Arc::ptr_eq(n, &self.entry));
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
        match &p.topic {
            Topic::Room(room) => {
                let seq = self.bus.room(room);
                let mut seq = seq.lock();
                seq.last += 1;
                let delivery = Delivery {
                    topic: p.topic,
                    offset: Some(seq.last),
                    data: p.data,
                    from: p.from,
                };
                self.bus.deliver(&delivery);
                Ok(Receipt {
                    offset: Some(seq.last),
                    epoch: Some(seq.epoch.clone()),
                })
            }
            Topic::User(_) | Topic::Broadcast => {
                let delivery = Delivery {
                    topic: p.topic,
                    offset: None,
                    data: p.data,
                    from: p.from,
                };
                self.bus.deliver(&delivery);
                Ok(Receipt {
                    offset: None,
                    epoch: None,
                })
            }
        }
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.entry.topics.write().insert(topic.clone());
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BrokerError> {
        self.entry.topics.write().remove(topic);
        Ok(())
    }

    async fn position(&self, room: &str) -> Result<Position, BrokerError> {
        let seq = self.bus.room(room);
        let seq = seq.lock();
        Ok(Position {
            offset: seq.last,
            epoch: seq.epoch.clone(),
        })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "memory",
            connected: true,
            detail: None,
        }
    }
}
