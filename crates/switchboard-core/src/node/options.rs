//! [`PublishOptions`]: what a publish may ask for beyond its topic and data.

use std::sync::Arc;

use super::PublishError;

/// Options of [`Node::publish_with`](super::Node::publish_with). Built with
/// [`PublishOptions::new`] and its setters; the default asks for nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions<'a> {
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) except: Option<&'a str>,
}

impl<'a> PublishOptions<'a> {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers the message once per key within the broker's idempotency
    /// window (see [`Node::publish_idempotent`](super::Node::publish_idempotent)).
    pub fn idempotency_key(mut self, key: Option<&'a str>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// Leaves the connection with this id (as the `welcome` frame's `conn`
    /// and [`Conn::id`](crate::Conn::id) give it) out of the live delivery,
    /// on whichever node it is. The message still goes into the room's
    /// history: a client that recovers after a reconnect is on a new
    /// connection and receives it, and can recognise its own message by
    /// the offset its `ack` carried.
    pub fn except(mut self, conn: Option<&'a str>) -> Self {
        self.except = conn;
        self
    }
}

/// The longest connection id accepted: a node id and a 64-bit counter with
/// room to spare.
const MAX_CONN_ID: usize = 64;

/// Checks a connection id to leave out: `<node>-<n>`, where the node id is
/// visible ASCII and `n` a decimal number.
pub(crate) fn parse_except(conn: &str) -> Result<Arc<str>, PublishError> {
    let valid = conn.len() <= MAX_CONN_ID
        && conn.bytes().all(|b| b.is_ascii_graphic())
        && split_conn_id(conn).is_some();
    if valid {
        Ok(Arc::from(conn))
    } else {
        Err(PublishError::InvalidExcept(
            conn.chars().take(MAX_CONN_ID).collect(),
        ))
    }
}

/// The node id and the node-local number of a connection id.
pub(crate) fn split_conn_id(conn: &str) -> Option<(&str, u64)> {
    let (node, n) = conn.rsplit_once('-')?;
    if node.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((node, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_checked_before_they_travel() {
        assert_eq!(split_conn_id("0a1b2c3d-17"), Some(("0a1b2c3d", 17)));
        assert_eq!(split_conn_id("a-b-3"), Some(("a-b", 3)));
        assert!(parse_except("0a1b2c3d-17").is_ok());
        for bad in ["", "-", "17", "abc-", "-17", "abc-1x", "abc 1-2", "é-1"] {
            assert!(
                matches!(parse_except(bad), Err(PublishError::InvalidExcept(_))),
                "{bad:?}"
            );
        }
        let long = format!("{}-1", "a".repeat(MAX_CONN_ID));
        assert!(parse_except(&long).is_err());
        assert!(
            parse_except("n-99999999999999999999999").is_err(),
            "over u64"
        );
    }
}
