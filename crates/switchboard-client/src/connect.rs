//! One connection attempt's handshake: the upgrade request (subprotocol
//! `switchboard.v1`, `Authorization: Bearer`), and what a failure means for
//! the next attempt.

use std::time::Duration;

use switchboard_protocol::{ReconnectPolicy, SUBPROTOCOL};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response, header};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::ConnectError;

/// The socket type of a live connection.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A failed handshake: the error, what to do next, and how long the server
/// asked to wait (`Retry-After`, on 429 and 503).
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: ConnectError,
    pub policy: ReconnectPolicy,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn backoff(error: ConnectError) -> Self {
        Failure {
            error,
            policy: ReconnectPolicy::Backoff,
            retry_after: None,
        }
    }
}

/// Opens the WebSocket (TCP connect and upgrade), within `timeout`.
pub(crate) async fn open(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Socket, Failure> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Failure::backoff(ConnectError::Transport(e.to_string())))?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(token) = token {
        // Tokens are checked when they are given; a bad one here is a bug.
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Failure {
            error: ConnectError::Transport("the token is not a valid header value".into()),
            policy: ReconnectPolicy::Never,
            retry_after: None,
        })?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let config = WebSocketConfig::default();
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(Failure::backoff(ConnectError::Timeout(timeout))),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => Err(http_failure(&response)),
        Ok(Err(e)) => Err(Failure::backoff(ConnectError::Transport(e.to_string()))),
    }
}

/// An upgrade refused with an HTTP status. 408, 429 and 5xx are transient
/// (backoff, honouring `Retry-After`); 401 and 403 refuse the credentials
/// (backoff, until the driver's refusal limit); every other status (404,
/// 400, a redirect, ...) would be answered the same way again: stop.
fn http_failure(response: &Response<Option<Vec<u8>>>) -> Failure {
    let status = response.status().as_u16();
    let body = response
        .body()
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Failure {
        error: ConnectError::Http { status, body },
        policy: http_policy(status),
        retry_after,
    }
}

/// What an HTTP status at the upgrade asks of the client.
pub(crate) fn http_policy(status: u16) -> ReconnectPolicy {
    match status {
        408 | 429 | 500..=599 => ReconnectPolicy::Backoff,
        _ if refuses_credentials(status) => ReconnectPolicy::Backoff,
        _ => ReconnectPolicy::Never,
    }
}

/// Whether an HTTP status at the upgrade refuses the credentials: retried
/// (another token may come, or the server may accept the same one again)
/// until the same credentials were refused `max_refusals` times in a row.
pub(crate) fn refuses_credentials(status: u16) -> bool {
    matches!(status, 401 | 403)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_and_refused_credentials_back_off_and_the_rest_stop() {
        for status in [401, 403, 408, 429, 500, 502, 503] {
            assert_eq!(http_policy(status), ReconnectPolicy::Backoff, "{status}");
        }
        assert!(refuses_credentials(401) && refuses_credentials(403));
        assert!(!refuses_credentials(404) && !refuses_credentials(429));
        for status in [301, 400, 404, 405, 426] {
            assert_eq!(http_policy(status), ReconnectPolicy::Never, "{status}");
        }
    }

    #[test]
    fn retry_after_and_body_are_read() {
        let response = Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(Some(br#"{"error":{"code":"rate_limited"}}"#.to_vec()))
            .expect("response");
        let f = http_failure(&response);
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(f.policy, ReconnectPolicy::Backoff);
        assert!(
            matches!(&f.error, ConnectError::Http { status: 429, body } if body.contains("rate_limited"))
        );
    }
}
