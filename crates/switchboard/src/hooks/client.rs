//! The calls themselves: a signed JSON `POST` to the application over
//! HTTP/1.1 keep-alive, bounded in time and in how many run at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

/// The header with the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "switchboard-timestamp";
/// The header with the signature: `v1=` and the lowercase hex
/// HMAC-SHA256, keyed with the hooks' secret, of the timestamp, a `.`, and
/// the request body.
pub const SIGNATURE_HEADER: &str = "switchboard-signature";

/// What the application answered, when it answered at all.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Why a call got no answer: the application is down, slow, or busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure(pub(crate) String);

/// One application's hook client: a connection pool, a signing key and a
/// bound on calls in flight, shared by every hook that calls it.
#[derive(Clone)]
pub(crate) struct Caller {
    http: reqwest::Client,
    secret: Arc<[u8]>,
    in_flight: Arc<Semaphore>,
}

impl Caller {
    pub(crate) fn new(secret: &[u8], max_in_flight: usize, idle_per_host: usize) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            // Building fails only for TLS back-ends, which are not enabled.
            .unwrap_or_default();
        Caller {
            http,
            secret: Arc::from(secret),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Posts `body` to `url`, signed, waiting at most `timeout` in all (for
    /// a free slot, the connection, and the answer).
    pub(crate) async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let call = async {
            let _slot = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| Failure("the hook client is closed".into()))?;
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let signature = sign(&self.secret, &timestamp, &body);
            let response = self
                .http
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp)
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| Failure(format!("cannot reach the application: {e}")))?;
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|e| Failure(format!("the application's answer broke off: {e}")))?;
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Failure(format!(
                "the application did not answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("free_slots", &self.in_flight.available_permits())
            .finish_non_exhaustive()
    }
}

/// The `switchboard-signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + digest.len() * 2);
    out.push_str("v1=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // From OpenSSL: printf '1700000000.{"a":1}' |
        //   openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign(b"secret", "1700000000", br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
