//! Opening: the connection's shared pieces, made before the handshake
//! completes (and so before its transport exists).

use std::sync::Arc;

use crate::conn::Conn;
use crate::endpoint::Endpoint;

/// The shared pieces a session needs besides its transport.
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
