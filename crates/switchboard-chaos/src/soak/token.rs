//! HS256 tokens for the soak's users, signed with the secret the nodes run
//! with (`--jwt-secret`), as an application's backend signs them
//! (`docs/security.md`): `sub` is the user id, `exp` outlasts the run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};

/// Mints tokens with one shared secret.
pub struct Minter {
    secret: String,
    key: EncodingKey,
    lifetime: Duration,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter with a new random secret (32 hex digits), whose tokens
    /// are valid for `lifetime`.
    pub fn new(lifetime: Duration) -> Minter {
        let secret = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            secret,
            lifetime,
        }
    }

    /// The secret, for the nodes' `--jwt-secret`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A token for `user`, valid from now for the minter's lifetime.
    pub fn token(&self, user: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "sub": user,
            "iat": now,
            "exp": now + self.lifetime.as_secs(),
        });
        jsonwebtoken::encode(&Header::default(), &claims, &self.key)
            .expect("an HS256 token from a JSON object")
    }
}
