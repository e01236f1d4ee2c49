//! The write path: everything that puts bytes on a connection's socket.
//!
//! - [`outbox`]: the bounded outbound queue of one connection, and who owns
//!   the socket's write side at each moment (idle, a flusher, the
//!   connection's own task), recorded under its lock;
//! - [`flush`]: the flusher tasks, which write fan-out frames straight to
//!   idle connections' sockets, one task wake-up per fan-out;
//! - `session`: [`SessionWrites`], the write queue of the connection's own
//!   task, the only way to claim the socket from outside this module;
//! - `socket`: the socket as both writers see it ([`SharedTcp`] for the
//!   connection's task, a direct handle for the flushers, which borrows the
//!   socket's descriptor through `crate::sys`).
//!
//! A frame for a connection takes one of two ways to the socket:
//!
//! 1. pushed to an idle connection's [`Outbox`](outbox::Outbox): the
//!    connection is put on a flush list, and a flusher writes it with
//!    `send`, without waking the connection's task; what the socket does not
//!    take is handed to the connection's task;
//! 2. pushed while the connection's task owns the socket, or queued by that
//!    task itself: the task moves it into its [`SessionWrites`] and writes it
//!    with one vectored write for as many frames as are ready.
//!
//! # Locking
//!
//! Every lock a fan-out or a flush takes, outermost first. A thread holding
//! one of them only ever waits for one further down the list, never for one
//! above it or for a second lock of the same level, so no cycle of waits,
//! and no deadlock, can form.
//!
//! 1. **The broker's own locks**, if it holds any while it calls
//!    [`DeliveryHandler::deliver`](crate::broker::DeliveryHandler::deliver).
//!    The in-memory broker does: the idempotency table (for a keyed
//!    publish), the room's state (so that offsets are delivered in order),
//!    its list of nodes and the node's subscribed topics (read locks). The
//!    hub calls a broker only from membership changes, holding nothing but
//!    the topic's stripe (an async mutex that a delivery never takes), so it
//!    never waits for a broker lock while holding a lock below.
//! 2. **One shard of a hub index** (`DashMap`): the room map's entry for a
//!    room delivery (a read lock), the user, presence or broadcast map's for
//!    the others; the node's connection map when shutting down. A delivery
//!    holds one shard at a time. `Hub::deliver` drops the room's read lock
//!    before `Hub::promote` takes the same entry for writing: a write lock
//!    taken under a read lock of the same shard would wait for itself.
//!    Joining (`Hub::add_joining`, `Hub::finish_join`) takes the entry for
//!    writing, in the same place in this order.
//! 3. **The room's joining members** (`RoomMembers::joining`, a mutex), in
//!    `Hub::deliver_joining` and `Hub::add_joining`, always under the room's
//!    entry. Where the entry is held for writing, the members are reached
//!    through `get_mut`, without locking.
//! 4. **One outbox's state** ([`Outbox`](outbox::Outbox)'s mutex), in
//!    `push`, `close`, and the connection's own calls (`poll_drain`,
//!    `claim`, ...). Outboxes are locked one at a time, never two together:
//!    a fan-out pushes to its recipients in turn, a flusher flushes its
//!    connections in turn, holding the lock during the non-blocking `send`
//!    so that no other writer can come between. While it holds this lock,
//!    the outbox takes no other lock: a push releases it before it puts the connection on a
//!    flush list (4 → released → 5), and the flusher takes each outbox's
//!    lock only after it has released its list's.
//! 5. **A flush list** ([`FlushShard`](flush::FlushShard)'s mutex), taken
//!    alone: by a push to put a connection on it, by the flusher to take it
//!    whole, and when the flusher ends, to hand what is left back.
//!
//! The connection's own task takes only its outbox's lock, for a moment per
//! call, and never holds it across an `.await`: the guards are `!Send`, and
//! the session's future must be `Send`.
//!
//! Wakers are not locks, but they run code: a push wakes the connection's
//! task or the flusher after releasing the outbox's lock; a flusher that
//! hands frames back wakes the connection's task with the outbox's lock
//! still held. Waking a Tokio task only schedules it (it takes the runtime's
//! internal locks, none of the above, and never polls the task in place), so
//! neither can wait for a lock in this list.
//!
//! # Who may call what
//!
//! - Anyone, from any thread: [`Outbox::push`](outbox::Outbox::push),
//!   `close`, `max_frames`, and `prefetch` (a cache hint). None of them
//!   waits for more than the outbox's lock.
//! - Only the connection's own task: `poll_drain` and
//!   `poll_slow_consumer_close` (they register its waker, and `poll_drain`
//!   makes it the socket's writer), through its [`SessionWrites`]; and, once
//!   each, `attach_tcp` (when the transport is built, before the session
//!   runs) and `detach_direct` (when its loop has ended).
//! - Only [`SessionWrites`]: `Outbox::claim`, which makes the connection's
//!   task the writer. The task must claim before it queues a frame of its
//!   own, or a flusher could write a fan-out frame in the middle of it; the
//!   only way to queue one is [`SessionWrites::queue`], which claims first,
//!   and `claim` is not visible outside this module.
//! - Only flusher tasks: `flush_direct` and `abandon_direct` (also not
//!   visible outside this module).

mod session;
mod socket;

pub(crate) mod flush;
pub(crate) mod outbox;
#[cfg(test)]
mod tests;

pub(crate) use session::SessionWrites;
pub use socket::SharedTcp;
