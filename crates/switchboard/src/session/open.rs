//! Opening: the connection's shared pieces, made before the handshake
//! completes, and its transport, made from the upgraded socket.

use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_util::either::Either;

use super::transport::Transport;
use crate::conn::Conn;
use crate::endpoint::Endpoint;
use crate::write::SharedTcp;

/// The transport of an upgraded connection. The TCP stream is taken back
/// from hyper when it can be (the bytes hyper read ahead share its 8-16 KiB
/// read buffer, which would otherwise stay allocated for the life of the
/// connection) and shared with the node's flushers for direct writes.
pub(crate) fn upgraded_transport(upgraded: Upgraded, conn: &Conn) -> Transport<SessionIo> {
    match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            let stream = Arc::new(parts.io.into_inner());
            let shard = conn.node.flusher().shard_for(conn.id);
            conn.outbox.attach_tcp(stream.clone(), shard);
            Transport::new(Either::Left(SharedTcp::new(stream)), &parts.read_buf, conn)
        }
        // Only when a layer wrapped the connection.
        Err(upgraded) => {
            let io = Either::Right(Box::new(TokioIo::new(upgraded)));
            Transport::new(io, &[], conn)
        }
    }
}

/// A session's socket: the TCP stream, or (rarely) whatever a layer wrapped
/// it in. One type, so that the session's code exists once.
pub(crate) type SessionIo = Either<SharedTcp, Box<TokioIo<Upgraded>>>;

/// The shared pieces a session needs besides its I/O.
pub(crate) fn new_conn(
    node: &crate::node::Node,
    identity: crate::auth::Identity,
    endpoint: &Arc<Endpoint>,
    remote: Option<std::net::SocketAddr>,
    subprotocol: Option<u8>,
    extensions: http::Extensions,
) -> Conn {
    let config = node.config();
    Conn {
        id: node.next_conn_id(),
        identity,
        endpoint: endpoint.clone(),
        remote,
        subprotocol,
        outbox: Arc::new(crate::outbox::Outbox::new(
            config.outbound_queue_frames,
            config.outbound_queue_bytes,
        )),
        node: node.clone(),
        rooms: Default::default(),
        extensions,
    }
}
