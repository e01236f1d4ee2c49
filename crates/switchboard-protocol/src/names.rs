//! Naming rules for rooms, users and idempotency keys.
//!
//! Room names are short ASCII identifiers so they are safe in URLs, log
//! lines, Redis keys and permission patterns: 1 to [`MAX_ROOM_LEN`] bytes of
//! `A-Z a-z 0-9 _ - . : @`. The colon is the conventional namespace separator
//! (`team:42`); `*` is reserved for permission patterns and `/` for URLs.
//!
//! User ids come from credentials, so they are more liberal: 1 to
//! [`MAX_USER_LEN`] bytes of any characters except control characters.

/// The longest room name the protocol allows. A server may set a lower limit.
pub const MAX_ROOM_LEN: usize = 128;
/// The longest user id the protocol allows.
pub const MAX_USER_LEN: usize = 256;
/// The longest idempotency key the protocol allows.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is the empty string.
    Empty,
    /// The name is longer than the limit (in bytes).
    TooLong {
        /// The limit that applied.
        max: usize,
    },
    /// The name contains a character outside the allowed set.
    ForbiddenChar {
        /// The first offending character.
        ch: char,
    },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => f.write_str("must not be empty"),
            NameError::TooLong { max } => write!(f, "must be at most {max} bytes"),
            NameError::ForbiddenChar { ch } => write!(f, "contains forbidden character {ch:?}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Whether `b` may appear in a room name.
pub fn is_room_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
}

/// Checks a room name against the protocol rules and a server limit
/// `max_len` (which is clamped to [`MAX_ROOM_LEN`]).
pub fn validate_room(name: &str, max_len: usize) -> Result<(), NameError> {
    let max = max_len.min(MAX_ROOM_LEN);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong { max });
    }
    match name
        .chars()
        .find(|c| !c.is_ascii() || !is_room_byte(*c as u8))
    {
        Some(ch) => Err(NameError::ForbiddenChar { ch }),
        None => Ok(()),
    }
}

/// Checks an idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes of
/// visible ASCII (`!` to `~`), so that a UUID, a ULID or a database id fits
/// and the key is safe in headers, logs and Redis keys.
pub fn validate_idempotency_key(key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(NameError::Empty);
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(NameError::TooLong {
            max: MAX_IDEMPOTENCY_KEY_LEN,
        });
    }
    match key.chars().find(|c| !c.is_ascii_graphic()) {
        Some(ch) => Err(NameError::ForbiddenChar { ch }),
        None => Ok(()),
    }
}

/// Checks a user id.
pub fn validate_user(id: &str) -> Result<(), NameError> {
    if id.is_empty() {
        return Err(NameError::Empty);
    }
    if id.len() > MAX_USER_LEN {
        return Err(NameError::TooLong { max: MAX_USER_LEN });
    }
    match id.chars().find(|c| c.is_control()) {
        Some(ch) => Err(NameError::ForbiddenChar { ch }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert_eq!(validate_room("lobby", 128), Ok(()));
        assert_eq!(validate_room("team:42.dev@eu_1-a", 128), Ok(()));
        assert_eq!(validate_room("", 128), Err(NameError::Empty));
        assert_eq!(
            validate_room(&"a".repeat(129), 500),
            Err(NameError::TooLong { max: 128 })
        );
        assert_eq!(validate_room("abcd", 3), Err(NameError::TooLong { max: 3 }));
        assert_eq!(
            validate_room("a b", 128),
            Err(NameError::ForbiddenChar { ch: ' ' })
        );
        assert_eq!(
            validate_room("a/b", 128),
            Err(NameError::ForbiddenChar { ch: '/' })
        );
        assert_eq!(
            validate_room("news:*", 128),
            Err(NameError::ForbiddenChar { ch: '*' })
        );
        assert_eq!(
            validate_room("café", 128),
            Err(NameError::ForbiddenChar { ch: 'é' })
        );
    }

    #[test]
    fn user_ids() {
        assert_eq!(validate_user("auth0|123"), Ok(()));
        assert_eq!(validate_user("ana@example.com"), Ok(()));
        assert_eq!(validate_user(""), Err(NameError::Empty));
        assert_eq!(
            validate_user("a\nb"),
            Err(NameError::ForbiddenChar { ch: '\n' })
        );
        assert!(validate_user(&"x".repeat(257)).is_err());
    }
}
