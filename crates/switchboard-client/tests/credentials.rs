//! Credentials that change while the client runs: a token provider asked on
//! every attempt and after 4004, refusals of the same credentials that stop
//! the client after the limit, and a provider that fails. Against the real
//! server, whose gate refuses expired tokens with HTTP 401 and whose sessions
//! close with 4004 when the credentials expire, on a paused clock.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use common::*;
use switchboard::Node;
use switchboard::auth::{Authenticator, Identity, Rejection, bearer_token};
use switchboard_client::{
    ClientBuilder, CloseCode, ConnectError, ConnectionState, Event, Events, StopReason,
};

/// Tokens are `<user>.<exp>`, `exp` in Unix seconds, checked the way the
/// server's JWT authenticator checks them: an expired token is refused at
/// the upgrade with 401, and a session is closed with 4004 at `exp`.
struct Expiring;

fn identity(token: &str) -> Result<Identity, Rejection> {
    let (user, exp) = token
        .split_once('.')
        .ok_or_else(|| Rejection::unauthorized("malformed token"))?;
    let exp: u64 = exp
        .parse()
        .map_err(|_| Rejection::unauthorized("malformed token"))?;
    let at = UNIX_EPOCH + Duration::from_secs(exp);
    if at <= SystemTime::now() {
        return Err(Rejection::unauthorized("token expired"));
    }
    Ok(Identity {
        expires_at: Some(at),
        ..Identity::user(user)
    })
}

#[async_trait]
impl Authenticator for Expiring {
    async fn authenticate(&self, req: &http::request::Parts) -> Result<Identity, Rejection> {
        let token = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| Rejection::unauthorized("missing token"))?;
        identity(token)
    }

    async fn refresh(&self, token: &str) -> Result<Identity, Rejection> {
        identity(token)
    }
}

/// The body the server answers a refused upgrade with.
const EXPIRED_BODY: &str = r#"{"error":{"code":"unauthorized","message":"token expired"}}"#;

/// A token for `user` that expires `secs` seconds from now (negative: it
/// expired that long ago).
fn token(user: &str, secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    format!("{user}.{}", now.saturating_add_signed(secs))
}

async fn server() -> Server {
    Server::start_with(Node::builder().default_endpoints().authenticator(Expiring)).await
}

/// A provider that hands out `tokens` in turn (the last one again once they
/// run out) and counts its calls.
fn provider(
    tokens: Vec<String>,
) -> (
    Arc<AtomicUsize>,
    impl Fn() -> std::future::Ready<Result<String, Infallible>> + Send + Sync + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let f = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let t = tokens[n.min(tokens.len() - 1)].clone();
        std::future::ready(Ok(t))
    };
    (calls, f)
}

/// Reads events until the stream ends; returns the upgrade refusals' HTTP
/// statuses and the stop reason.
async fn refusals_until_stopped(events: &mut Events) -> (Vec<u16>, StopReason) {
    let mut statuses = Vec::new();
    let reason = until(events, |e| match e {
        Event::ConnectFailed {
            error: ConnectError::Http { status, body },
        } => {
            assert_eq!(body, EXPIRED_BODY);
            statuses.push(*status);
            None
        }
        Event::ConnectFailed { error } => panic!("unexpected failure: {error}"),
        Event::Connected { user, .. } => panic!("connected as {user}"),
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        events.recv().await.is_none(),
        "the stream ends after Stopped"
    );
    (statuses, reason)
}

fn refused(attempts: u32) -> StopReason {
    StopReason::CredentialsRefused {
        status: 401,
        body: EXPIRED_BODY.into(),
        attempts,
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_replaced_by_the_provider_and_the_client_connects() {
    let server = server().await;
    let (calls, tokens) = provider(vec![token("ana", -60), token("ana", 3600)]);
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .build()
        .expect("built");
    let failed = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => Some(error.clone()),
        Event::Stopped { reason } => panic!("stopped: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(
        failed,
        ConnectError::Http {
            status: 401,
            body: EXPIRED_BODY.into()
        }
    );
    let user = until(&mut events, |e| match e {
        Event::Connected { user, .. } => Some(user.clone()),
        Event::Stopped { reason } => panic!("stopped: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(user, "ana");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call per attempt");
    client.join("lobby").await.expect("joined");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_same_refused_token_stops_the_client_after_the_default_five_attempts() {
    let server = server().await;
    let (calls, tokens) = provider(vec![token("ana", -60)]);
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .build()
        .expect("built");
    let (statuses, reason) = refusals_until_stopped(&mut events).await;
    assert_eq!(statuses, [401; 5]);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(reason, refused(5));
    assert_eq!(
        reason.to_string(),
        format!("credentials refused 5 times in a row with HTTP 401: {EXPIRED_BODY}")
    );
    assert_eq!(client.state(), ConnectionState::Stopped { reason });
}

#[tokio::test(start_paused = true)]
async fn the_refusal_limit_is_configurable_and_applies_to_a_fixed_token() {
    let server = server().await;
    let (calls, tokens) = provider(vec![token("ana", -60)]);
    let (_client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .max_refusals(2)
        .build()
        .expect("built");
    let (statuses, reason) = refusals_until_stopped(&mut events).await;
    assert_eq!((statuses, reason), (vec![401; 2], refused(2)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A fixed token is a provider that always returns it.
    let (_client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token(token("ana", -60))
        .max_refusals(3)
        .build()
        .expect("built");
    let (statuses, reason) = refusals_until_stopped(&mut events).await;
    assert_eq!((statuses, reason), (vec![401; 3], refused(3)));
}

#[tokio::test(start_paused = true)]
async fn a_new_token_from_the_provider_starts_the_count_again() {
    let server = server().await;
    // Two refused tokens: the first twice, then the second until the limit.
    let (first, second) = (token("ana", -60), token("ana", -120));
    let (calls, tokens) = provider(vec![first.clone(), first, second]);
    let (_client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .max_refusals(3)
        .build()
        .expect("built");
    let (statuses, reason) = refusals_until_stopped(&mut events).await;
    assert_eq!(statuses, [401; 5]);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(reason, refused(3));
}

#[tokio::test(start_paused = true)]
async fn after_a_4004_close_the_provider_is_asked_again() {
    let server = server().await;
    // The first token expires two seconds after the connection opens; the
    // session closes it with 4004 then.
    let (calls, tokens) = provider(vec![token("ana", 2), token("ana", 3600)]);
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .connect()
        .await
        .expect("connected");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    client.join("lobby").await.expect("joined");
    let code = until(&mut events, |e| match e {
        Event::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, CloseCode::TOKEN_EXPIRED);
    assert!(matches!(next(&mut events).await, Event::TokenExpired));
    let user = until(&mut events, |e| match e {
        Event::Connected { user, .. } => Some(user.clone()),
        Event::Stopped { reason } => panic!("stopped: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(user, "ana");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        client.state(),
        ConnectionState::Connected { user: "ana".into() }
    );
    // The room was rejoined on the new connection.
    let ack = client
        .publish("lobby", serde_json::json!({"n": 1}))
        .await
        .expect("acked");
    assert_eq!(ack.offset, Some(1));
    assert_eq!(
        until(&mut events, |e| match e {
            Event::Message(m) => m.offset,
            _ => None,
        })
        .await,
        1
    );
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_is_retried_with_backoff() {
    let server = server().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fresh = token("ana", 3600);
    let provider = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let result = match n {
            0 | 1 => Err("token service unavailable"),
            _ => Ok(fresh.clone()),
        };
        std::future::ready(result)
    };
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(provider)
        .build()
        .expect("built");
    let mut failures = Vec::new();
    let mut attempts = Vec::new();
    let user = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => {
            failures.push(error.clone());
            None
        }
        Event::Reconnecting { attempt, .. } => {
            attempts.push(*attempt);
            None
        }
        Event::Connected { user, .. } => Some(user.clone()),
        Event::Stopped { reason } => panic!("stopped: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(user, "ana");
    let down = ConnectError::Token("token service unavailable".into());
    assert_eq!(failures, [down.clone(), down]);
    assert_eq!(attempts, [1, 2], "counted as attempts: the backoff grows");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    client.close().await;

    // The first attempt of `connect` fails with the provider's error.
    let err = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(|| std::future::ready(Err::<String, _>("no session")))
        .connect()
        .await
        .expect_err("no token");
    assert_eq!(err, ConnectError::Token("no session".into()));
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_does_not_answer_times_out_and_close_still_works() {
    let server = server().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .connect_timeout(Duration::from_secs(2))
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<String, Infallible>>()
        })
        .build()
        .expect("built");
    let failed = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        failed,
        ConnectError::Token("no token within 2s".into()),
        "{failed}"
    );
    until(&mut events, |e| {
        matches!(e, Event::Connecting { attempt: 1 }).then_some(())
    })
    .await;
    // Closing while the provider is being asked stops the client.
    tokio::time::timeout(WAIT, client.close())
        .await
        .expect("closed in time");
    assert_eq!(
        client.state(),
        ConnectionState::Stopped {
            reason: StopReason::ClientClosed
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_provider_token_that_cannot_be_a_header_fails_the_attempt() {
    let server = server().await;
    let (calls, tokens) = provider(vec!["line\nbreak".into(), token("ana", 3600)]);
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token_provider(tokens)
        .build()
        .expect("built");
    let failed = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        failed,
        ConnectError::Token("the token is not a valid HTTP header value".into())
    );
    until(&mut events, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    client.close().await;
}
