//! Where each connection attempt's token comes from, and when the server's
//! refusals of the same credentials are enough to stop.
//!
//! - **None**: no `Authorization` header (a guest, on a server without
//!   credentials).
//! - **Fixed**: the builder's [`token`](crate::ClientBuilder::token), or the
//!   last one given to [`Client::set_token`](crate::Client::set_token): the
//!   same token on every attempt.
//! - **Provider**: the builder's
//!   [`token_provider`](crate::ClientBuilder::token_provider), asked on every
//!   attempt (so also after a 4004 close). It has the connect timeout to
//!   answer; an error, a timeout or a token that cannot travel in a header
//!   fails the attempt with [`ConnectError::Token`], retried with backoff
//!   like a network error.
//!
//! An upgrade refused with 401 or 403 is retried with backoff until the same
//! credentials were refused `max_refusals` times in a row; a welcome, or a
//! different token, starts the count again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::error::ConnectError;

/// A token provider, its error reduced to its message.
pub(crate) type ProviderFn = dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync;

/// See the [module docs](self).
#[derive(Clone, Default)]
pub(crate) enum Credentials {
    #[default]
    None,
    Fixed(String),
    Provider(Arc<ProviderFn>),
}

impl fmt::Debug for Credentials {
    /// Never prints a token: settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Fixed(_) => f.write_str("Fixed(..)"),
            Credentials::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

impl Credentials {
    pub(crate) fn has_provider(&self) -> bool {
        matches!(self, Credentials::Provider(_))
    }

    /// The token for the next attempt. A provider is called now; its answer
    /// is awaited (up to `timeout`) by the returned future, which borrows
    /// nothing, so the connection task can answer commands meanwhile.
    pub(crate) fn fetch(
        &self,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<String>, ConnectError>> {
        match self {
            Credentials::None => Box::pin(std::future::ready(Ok(None))),
            Credentials::Fixed(token) => Box::pin(std::future::ready(Ok(Some(token.clone())))),
            Credentials::Provider(provider) => {
                let asked = provider();
                Box::pin(async move {
                    match tokio::time::timeout(timeout, asked).await {
                        Err(_) => Err(ConnectError::Token(format!("no token within {timeout:?}"))),
                        Ok(Err(message)) => Err(ConnectError::Token(message)),
                        Ok(Ok(token)) if !is_header_safe(&token) => Err(ConnectError::Token(
                            "the token is not a valid HTTP header value".into(),
                        )),
                        Ok(Ok(token)) => Ok(Some(token)),
                    }
                })
            }
        }
    }
}

/// Whether `token` can travel as `Authorization: Bearer <token>`.
pub(crate) fn is_header_safe(token: &str) -> bool {
    HeaderValue::from_str(&format!("Bearer {token}")).is_ok()
}

/// Consecutive refusals of the same credentials.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// The credentials last refused, and how many times in a row.
    last: Option<(Option<String>, u32)>,
}

impl Refusals {
    /// Records that the server refused `token`; returns how many times in a
    /// row it refused these same credentials (1 after a different token).
    pub(crate) fn refused(&mut self, token: Option<&str>) -> u32 {
        let count = match &self.last {
            Some((last, n)) if last.as_deref() == token => n.saturating_add(1),
            _ => 1,
        };
        self.last = Some((token.map(str::to_string), count));
        count
    }

    /// The server accepted a connection.
    pub(crate) fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_token_counts_up_and_another_starts_again() {
        let mut r = Refusals::default();
        assert_eq!(r.refused(Some("a")), 1);
        assert_eq!(r.refused(Some("a")), 2);
        assert_eq!(r.refused(Some("b")), 1);
        assert_eq!(r.refused(Some("b")), 2);
        assert_eq!(r.refused(None), 1, "no token is other credentials");
        assert_eq!(r.refused(None), 2);
        r.reset();
        assert_eq!(r.refused(None), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_is_asked_on_each_fetch_and_its_failures_are_token_errors() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let provider: Arc<ProviderFn> = Arc::new(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                match n {
                    0 => Ok("t0".to_string()),
                    1 => Err("down".to_string()),
                    2 => Ok("bad\ntoken".to_string()),
                    _ => std::future::pending().await,
                }
            })
        });
        let c = Credentials::Provider(provider);
        let timeout = Duration::from_secs(3);
        assert_eq!(c.fetch(timeout).await, Ok(Some("t0".into())));
        assert_eq!(
            c.fetch(timeout).await,
            Err(ConnectError::Token("down".into()))
        );
        assert_eq!(
            c.fetch(timeout).await,
            Err(ConnectError::Token(
                "the token is not a valid HTTP header value".into()
            ))
        );
        assert_eq!(
            c.fetch(timeout).await,
            Err(ConnectError::Token("no token within 3s".into()))
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(
            Credentials::Fixed("t".into()).fetch(timeout).await,
            Ok(Some("t".into()))
        );
        assert_eq!(Credentials::None.fetch(timeout).await, Ok(None));
        assert_eq!(
            format!("{:?}", Credentials::Fixed("secret".into())),
            "Fixed(..)"
        );
    }
}
