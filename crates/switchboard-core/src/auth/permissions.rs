//! Room permissions carried by credentials.
//!
//! A token may carry two claims, each a list of patterns:
//!
//! - `rooms`: rooms the user may join **and** publish to;
//! - `read_rooms`: rooms the user may join (receive) but not publish to.
//!
//! A pattern is an exact room name (`lobby`), a prefix ending in `*`
//! (`team:42:*` matches `team:42:general` but not `team:420`), or `*` alone
//! (every room). When a token carries neither claim, the user may use every
//! room, unless the server requires the claims, in which case such a token
//! grants no room at all.

use std::sync::Arc;

/// One room pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this room.
    Exact(Arc<str>),
    /// Every room whose name starts with this prefix (the part before `*`).
    Prefix(Arc<str>),
}

impl Pattern {
    /// Parses `name`, `prefix*` or `*`.
    pub fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(Arc::from(prefix)),
            None => Pattern::Exact(Arc::from(s)),
        }
    }

    /// Whether `room` matches.
    pub fn matches(&self, room: &str) -> bool {
        match self {
            Pattern::Exact(name) => &**name == room,
            Pattern::Prefix(prefix) => room.starts_with(&**prefix),
        }
    }
}

/// What a user may do with rooms.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Permissions {
    /// `None`: every room. Otherwise the patterns of rooms the user may join
    /// and publish to.
    publish: Option<Arc<[Pattern]>>,
    /// Patterns of rooms the user may only join.
    read: Option<Arc<[Pattern]>>,
}

impl Permissions {
    /// Every room, for joining and publishing.
    pub fn all() -> Self {
        Permissions {
            publish: None,
            read: None,
        }
    }

    /// No room at all.
    pub fn none() -> Self {
        Permissions {
            publish: Some(Arc::from([])),
            read: Some(Arc::from([])),
        }
    }

    /// Restricted to the given patterns.
    pub fn restricted(publish: &[&str], read: &[&str]) -> Self {
        Permissions {
            publish: Some(publish.iter().map(|p| Pattern::parse(p)).collect()),
            read: Some(read.iter().map(|p| Pattern::parse(p)).collect()),
        }
    }

    /// Whether the permissions are unrestricted.
    pub fn is_unrestricted(&self) -> bool {
        self.publish.is_none() && self.read.is_none()
    }

    /// Whether the user may join `room`.
    pub fn can_join(&self, room: &str) -> bool {
        self.is_unrestricted() || any(&self.publish, room) || any(&self.read, room)
    }

    /// Whether the user may publish to `room`.
    pub fn can_publish(&self, room: &str) -> bool {
        self.is_unrestricted() || any(&self.publish, room)
    }
}

fn any(patterns: &Option<Arc<[Pattern]>>, room: &str) -> bool {
    patterns
        .as_deref()
        .is_some_and(|ps| ps.iter().any(|p| p.matches(room)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes_only() {
        let p = Permissions::restricted(&["lobby", "team:42:*"], &["news:*"]);
        assert!(p.can_join("lobby") && p.can_publish("lobby"));
        assert!(p.can_join("team:42:general") && p.can_publish("team:42:general"));
        assert!(
            !p.can_join("team:420"),
            "a prefix ends at the colon the pattern names"
        );
        assert!(!p.can_join("lobby2"));
        assert!(p.can_join("news:today") && !p.can_publish("news:today"));
        assert!(!p.can_join("other"));
    }

    #[test]
    fn star_alone_is_everything_and_none_is_nothing() {
        let p = Permissions::restricted(&["*"], &[]);
        assert!(p.can_publish("anything"));
        assert!(!Permissions::none().can_join("lobby"));
        assert!(Permissions::all().can_publish("lobby"));
    }
}
