//! [`Node`]: the composition root. It owns the configuration, the hub, the
//! broker, the endpoints and the authenticator, and is the handle that
//! library code keeps to publish and to shut down.
//!
//! A `Node` is cheap to clone (one `Arc`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::value::RawValue;
use switchboard_protocol::{CloseCode, validate_room, validate_user};
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Guests};
use crate::broker::memory::MemoryBroker;
use crate::broker::{Broker, BrokerError, BrokerHealth, Delivery, Presence, Receipt, Topic};
use crate::config::{Config, ConfigError};
use crate::endpoint::Endpoint;
use crate::events::{Event, Events};
use crate::flush::Flusher;
use crate::gate::caps::CapCounter;
use crate::gate::rate::IpRateLimiter;
use crate::hub::{ConnId, Hub};
use crate::json::Json;
use crate::outbox::Outbox;
use crate::stats::{Stats, StatsSnapshot};

mod error;
mod metrics;
mod options;
mod presence;
mod shutdown;

pub use error::PublishError;
pub use options::PublishOptions;
use options::parse_except;
pub(crate) use options::split_conn_id;
pub use presence::{ONLINE_PREFIX, PresenceError, UserPresence};

/// The `/health` document.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// `"ok"`, or `"degraded"` when the broker is not connected.
    pub status: &'static str,
    /// This node's id.
    pub node: String,
    /// The crate version.
    pub version: &'static str,
    /// The broker's state.
    pub broker: BrokerHealth,
    /// Counters.
    pub stats: StatsSnapshot,
    /// Rooms with local members.
    pub rooms: usize,
}

pub(crate) struct Inner {
    id: Arc<str>,
    config: Config,
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn Presence>,
    stats: Arc<Stats>,
    endpoints: Vec<Arc<Endpoint>>,
    authenticator: Arc<dyn Authenticator>,
    sessions: TaskTracker,
    conns: DashMap<ConnId, Arc<Outbox>>,
    next_conn: AtomicU64,
    flusher: Flusher,
    draining: AtomicBool,
    upgrade_limiter: Option<IpRateLimiter>,
    caps: Arc<CapCounter>,
    events: Option<Arc<dyn Events>>,
    /// Open connections per user on this node, kept when there are events
    /// to tell (a user's first and last connection).
    users: DashMap<Arc<str>, u32>,
}

/// A Switchboard node. See the module docs.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Node`].
pub struct NodeBuilder {
    config: Config,
    /// The broker, and the presence backend it brings along.
    broker: Option<(Arc<dyn Broker>, Arc<dyn Presence>)>,
    /// A presence backend set apart from the broker; wins over the broker's.
    presence: Option<Arc<dyn Presence>>,
    authenticator: Arc<dyn Authenticator>,
    endpoints: Vec<Endpoint>,
    events: Option<Arc<dyn Events>>,
}

impl NodeBuilder {
    /// Sets the configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the broker, which is the presence backend too (default: a
    /// [`MemoryBroker`] of its own). The in-memory and Redis brokers
    /// implement both [`Broker`] and [`Presence`], and so does an `Arc` of
    /// either: pass `Arc<RedisBroker>` to keep a handle of your own.
    pub fn broker<B: Broker + Presence>(mut self, broker: B) -> Self {
        let broker = Arc::new(broker);
        self.broker = Some((broker.clone(), broker));
        self
    }

    /// Keeps presence somewhere other than in the broker: this backend
    /// records and lists who is in each room, whether it is set before or
    /// after [`broker`](Self::broker) (default: the broker).
    pub fn presence(mut self, presence: impl Presence) -> Self {
        self.presence = Some(Arc::new(presence));
        self
    }

    /// Sets the authenticator (default: [`Guests`], everyone is a guest).
    /// The `switchboard` crate's `JwtAuthenticator` checks JSON Web Tokens,
    /// and its `ConnectHook` asks the application.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Arc::new(authenticator);
        self
    }

    /// Tells `events` what happens to this node's connections (see
    /// [`Events`]).
    pub fn events(mut self, events: impl Events) -> Self {
        self.events = Some(Arc::new(events));
        self
    }

    /// Adds an endpoint. A later endpoint with the same path replaces an
    /// earlier one.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.retain(|e| e.path != endpoint.path);
        self.endpoints.push(endpoint);
        self
    }

    /// Adds the three standard endpoints: `/ws/echo`, `/ws/chat` and
    /// `/ws/notifications`.
    pub fn default_endpoints(self) -> Self {
        self.endpoint(Endpoint::echo("/ws/echo"))
            .endpoint(Endpoint::chat("/ws/chat"))
            .endpoint(Endpoint::notifications("/ws/notifications"))
    }

    /// Validates the configuration and builds the node.
    pub fn build(self) -> Result<Node, ConfigError> {
        self.config.validate()?;
        for e in &self.endpoints {
            if !e.path.starts_with('/') {
                return Err(ConfigError {
                    field: "endpoint",
                    reason: format!("path {:?} must start with '/'", e.path),
                });
            }
        }
        let (broker, brought) = self.broker.unwrap_or_else(|| {
            let memory = Arc::new(MemoryBroker::new());
            (memory.clone(), memory)
        });
        let presence = self.presence.unwrap_or(brought);
        let endpoints: Vec<Arc<Endpoint>> = self.endpoints.into_iter().map(Arc::new).collect();
        let stats = Arc::new(Stats::new(&endpoints));
        let flusher = Flusher::new(stats.clone());
        let id: Arc<str> = Arc::from(format!("{:08x}", rand::random::<u32>()));
        let hub = Arc::new(Hub::new(broker.clone(), stats.clone(), id.clone()));
        broker.attach(hub.clone());
        Ok(Node {
            inner: Arc::new(Inner {
                id,
                hub,
                broker,
                presence,
                stats,
                endpoints,
                authenticator: self.authenticator,
                sessions: TaskTracker::new(),
                conns: DashMap::new(),
                next_conn: AtomicU64::new(1),
                flusher,
                draining: AtomicBool::new(false),
                upgrade_limiter: self.config.upgrade_rate.map(IpRateLimiter::new),
                caps: CapCounter::new(self.config.caps),
                events: self.events,
                users: DashMap::new(),
                config: self.config,
            }),
        })
    }
}

impl Node {
    /// Starts a builder with the defaults and no endpoints.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            config: Config::default(),
            broker: None,
            presence: None,
            authenticator: Arc::new(Guests),
            endpoints: Vec::new(),
            events: None,
        }
    }

    /// This node's random id (8 hex digits).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The local hub.
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// How many of this node's connections receive `topic` (a room's
    /// members, a user's connections, every connection on an endpoint that
    /// takes broadcasts).
    pub fn local_members(&self, topic: &Topic) -> usize {
        self.inner.hub.count(topic)
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The presence backend: who is in each room, on every node.
    pub fn presence(&self) -> &Arc<dyn Presence> {
        &self.inner.presence
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The authenticator the gate consults.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.inner.authenticator
    }

    /// The registered endpoints.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.inner.endpoints
    }

    /// The per-address upgrade rate limiter (`upgrade_rate`), which the
    /// gate consults before a handshake.
    pub fn upgrade_limiter(&self) -> Option<&IpRateLimiter> {
        self.inner.upgrade_limiter.as_ref()
    }

    /// The connection caps (`caps`): the gate reserves a slot before a
    /// handshake, and the session holds it until it ends.
    pub fn caps(&self) -> &Arc<CapCounter> {
        &self.inner.caps
    }

    /// Makes the connection a transport will carry, once a request for
    /// `endpoint` has passed the gate as `identity`. Run it with
    /// [`transport::run`](crate::transport::run) inside
    /// [`spawn_session`](Self::spawn_session). `subprotocol` is the index,
    /// in the endpoint's list, of the one negotiated.
    pub fn admit(
        &self,
        identity: crate::auth::Identity,
        endpoint: &Arc<Endpoint>,
        remote: Option<std::net::SocketAddr>,
        subprotocol: Option<u8>,
    ) -> crate::Conn {
        crate::session::new_conn(
            self,
            identity,
            endpoint,
            remote,
            subprotocol,
            Default::default(),
        )
    }

    /// Spawns a connection's task where [`shutdown`](Self::shutdown) waits
    /// for it.
    pub fn spawn_session<F>(&self, session: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.sessions.spawn(session);
    }

    /// The health document.
    pub fn health(&self) -> Health {
        let broker = self.inner.broker.health();
        Health {
            status: if broker.connected { "ok" } else { "degraded" },
            node: self.inner.id.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            broker,
            stats: self.inner.stats.snapshot(),
            rooms: self.inner.hub.room_count(),
        }
    }

    /// Publishes `data` to a room, on every node. Returns once the broker
    /// accepted it, with the offset assigned.
    pub async fn publish_room(&self, room: &str, data: &RawValue) -> Result<Receipt, PublishError> {
        self.publish(Topic::Room(Arc::from(room)), Json::from_raw(data), None)
            .await
    }

    /// Sends `data` to every connection of `user`, on every node, on every
    /// endpoint that takes user messages.
    pub async fn send_to_user(&self, user: &str, data: &RawValue) -> Result<Receipt, PublishError> {
        self.publish(Topic::User(Arc::from(user)), Json::from_raw(data), None)
            .await
    }

    /// Sends `data` to every connection, on every node, on every endpoint
    /// that takes broadcasts.
    pub async fn broadcast(&self, data: &RawValue) -> Result<Receipt, PublishError> {
        self.publish(Topic::Broadcast, Json::from_raw(data), None)
            .await
    }

    /// Ends every connection of `user`, on every node, with close code
    /// 4401 and `reason` (a client does not reconnect after it by itself):
    /// what an application calls when the user signs out. Reaches the
    /// connections on endpoints that take user messages. Returns once the
    /// broker took the request.
    pub async fn disconnect_user(&self, user: &str, reason: &str) -> Result<(), PublishError> {
        let data = serde_json::json!({ "reason": reason }).to_string();
        let topic = Topic::User(Arc::from(user));
        let from = Some(Arc::from(crate::hub::DISCONNECT_USER));
        self.publish_json(topic, Bytes::from(data), from, None, None)
            .await
            .map(drop)
    }

    /// Publishes `data` to `topic` (a room, a user or everyone) once per
    /// idempotency `key`: a publish to the same topic with the same key
    /// within the broker's idempotency window (5 minutes by default), from
    /// this node or any other, delivers nothing and returns the first one's
    /// receipt with [`Receipt::duplicate`] set. The HTTP API's
    /// `Idempotency-Key` shares these keys. A publish that failed may be
    /// retried with the same key: it is delivered once.
    pub async fn publish_idempotent(
        &self,
        topic: Topic,
        data: &RawValue,
        key: &str,
    ) -> Result<Receipt, PublishError> {
        self.publish(topic, Json::from_raw(data), Some(key)).await
    }

    /// Publishes `data` to `topic`, on every node, once per idempotency
    /// `key` if there is one (see [`publish_idempotent`](Self::publish_idempotent)).
    /// The key is checked first, then the topic's name and the size.
    pub async fn publish(
        &self,
        topic: Topic,
        data: Json,
        key: Option<&str>,
    ) -> Result<Receipt, PublishError> {
        self.publish_with(topic, data, PublishOptions::new().idempotency_key(key))
            .await
    }

    /// Publishes `data` to `topic`, on every node, with the given
    /// [`PublishOptions`]: an idempotency key (as for
    /// [`publish_idempotent`](Self::publish_idempotent)) and a connection
    /// that is left out of the live delivery (for example the one whose
    /// client asked the application to publish). The options are checked
    /// first, then the topic's name and the size.
    pub async fn publish_with(
        &self,
        topic: Topic,
        data: Json,
        options: PublishOptions<'_>,
    ) -> Result<Receipt, PublishError> {
        let key = options.idempotency_key.map(api_key_scope).transpose()?;
        let except = options.except.map(parse_except).transpose()?;
        self.publish_json(topic, data.into_bytes(), None, key, except)
            .await
    }

    /// Publishes JSON text that was already validated. `idempotency_key`
    /// is already scoped to its publisher (see [`api_key_scope`]).
    pub(crate) async fn publish_json(
        &self,
        topic: Topic,
        data: Bytes,
        from: Option<Arc<str>>,
        idempotency_key: Option<Arc<str>>,
        except: Option<Arc<str>>,
    ) -> Result<Receipt, PublishError> {
        match &topic {
            Topic::Room(room) | Topic::Presence(room) => {
                validate_room(room, self.inner.config.max_room_name_len)
                    .map_err(PublishError::InvalidRoom)?
            }
            Topic::User(user) => validate_user(user).map_err(PublishError::InvalidUser)?,
            Topic::Broadcast => {}
        }
        if data.len() > self.inner.config.max_message_size {
            return Err(PublishError::TooLarge(
                data.len(),
                self.inner.config.max_message_size,
            ));
        }
        // A keyed publish is never delivered locally during an outage: its
        // retry must be safe.
        let local = (self.inner.config.local_delivery_during_outage && idempotency_key.is_none())
            .then(|| (topic.clone(), data.clone(), from.clone(), except.clone()));
        let publication = crate::broker::Publication {
            topic,
            data,
            from,
            idempotency_key,
            except,
        };
        match self.publish_measured(publication).await {
            Ok(receipt) => {
                if !receipt.duplicate {
                    self.inner.stats.published.inc();
                }
                Ok(receipt)
            }
            Err(BrokerError::Unavailable(reason)) if local.is_some() => {
                // The broker cannot be reached: this node's members still get
                // the message (without an offset: it is in no history), and
                // the caller is told it reached this node only.
                if let Some((topic, data, from, except)) = local {
                    use crate::broker::DeliveryHandler;
                    let delivery = Delivery {
                        topic,
                        offset: None,
                        data,
                        from,
                        except,
                    };
                    let _ = self.inner.hub.deliver(&delivery);
                }
                Err(PublishError::LocalOnly(reason))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The flush lists of this node's connections.
    pub(crate) fn flusher(&self) -> &Flusher {
        &self.inner.flusher
    }

    /// Tells the events sink, if there is one; `make` builds the event only
    /// then.
    pub(crate) fn record(&self, make: impl FnOnce() -> Event) {
        if let Some(events) = &self.inner.events {
            events.record(make());
        }
    }

    /// Whether there is an events sink to tell.
    pub(crate) fn has_events(&self) -> bool {
        self.inner.events.is_some()
    }

    /// Counts a connection of `user` opening or ending and records
    /// `online` / `offline` when it is the user's first or last on this
    /// node. The event is recorded under the user's entry lock (recording
    /// only queues), so a user's `online` and `offline` are recorded in the
    /// order they happened.
    pub(crate) fn count_user(&self, user: &Arc<str>, opened: bool) {
        let Some(events) = &self.inner.events else {
            return;
        };
        let node = || self.inner.id.clone();
        if opened {
            let mut n = self.inner.users.entry(user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                events.record(Event::Online {
                    user: user.clone(),
                    node: node(),
                });
            }
        } else {
            self.inner.users.remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    events.record(Event::Offline {
                        user: user.clone(),
                        node: node(),
                    });
                }
                *n == 0
            });
        }
    }

    pub(crate) fn register_conn(&self, id: ConnId, outbox: &Arc<Outbox>) {
        self.inner.conns.insert(id, outbox.clone());
        // A connection that slipped in while the node started draining is
        // told to go away like every other.
        if self.is_draining() {
            outbox.close(CloseCode::GOING_AWAY, "server shutting down");
        }
    }

    pub(crate) fn unregister_conn(&self, id: ConnId) {
        self.inner.conns.remove(&id);
    }
}

#[cfg(test)]
impl Node {
    /// The outboxes of open connections (tests only).
    pub(crate) fn inner_conn_outboxes(&self) -> Vec<Arc<Outbox>> {
        self.inner.conns.iter().map(|e| e.value().clone()).collect()
    }
}

/// An idempotency key of the application's (the HTTP API or
/// [`Node::publish_idempotent`]), checked and scoped apart from the keys of
/// client publishes.
fn api_key_scope(key: &str) -> Result<Arc<str>, PublishError> {
    switchboard_protocol::validate_idempotency_key(key).map_err(PublishError::InvalidKey)?;
    Ok(Arc::from(format!("api:{key}")))
}

/// An idempotency key of a client's publish, scoped to its user: one user's
/// keys never suppress another's publishes.
pub(crate) fn user_key_scope(user: &str, key: &str) -> Arc<str> {
    Arc::from(format!("user:{}:{user}:{key}", user.len()))
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_node_frees_its_broker_and_hub() {
        let node = Node::builder().default_endpoints().build().unwrap();
        let broker = Arc::downgrade(node.broker());
        drop(node);
        assert!(
            broker.upgrade().is_none(),
            "no reference cycle keeps the broker alive"
        );
    }
}
