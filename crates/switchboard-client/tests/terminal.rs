//! Refusals that stop the client, and expired credentials that wait for a
//! new token (the client without a token provider; see `credentials.rs`).

mod common;

use async_trait::async_trait;
use common::*;
use switchboard::auth::{Authenticator, Identity, Rejection, bearer_token};
use switchboard::handlers::Chat;
use switchboard::{Conn, Endpoint, Inbound, Node};
use switchboard_client::{
    ClientBuilder, CloseCode, ConnectError, ConnectionState, Event, StopReason,
};
use switchboard_protocol::SUBPROTOCOL;

/// Refuses every upgrade with 401.
struct RefuseAll;

#[async_trait]
impl Authenticator for RefuseAll {
    async fn authenticate(&self, _: &http::request::Parts) -> Result<Identity, Rejection> {
        Err(Rejection::unauthorized("bad credentials"))
    }
}

/// The bearer token is the user id.
struct TokenIsUser;

#[async_trait]
impl Authenticator for TokenIsUser {
    async fn authenticate(&self, req: &http::request::Parts) -> Result<Identity, Rejection> {
        req.headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(Identity::user)
            .ok_or_else(|| Rejection::unauthorized("missing token"))
    }
}

/// Chat, except that connections of `user` are closed with `code` as soon
/// as they open.
struct CloseUser {
    user: &'static str,
    code: switchboard_protocol::CloseCode,
}

#[async_trait]
impl switchboard::Handler for CloseUser {
    async fn on_open(&self, conn: &mut Conn) {
        if self.user == "*" || conn.user() == self.user {
            conn.close(self.code, "closed by the test");
        }
    }

    async fn on_message(&self, conn: &mut Conn, message: Inbound) {
        switchboard::Handler::on_message(&Chat, conn, message).await
    }
}

fn chat_closing(user: &'static str, code: switchboard_protocol::CloseCode) -> Endpoint {
    Endpoint::new("/ws/chat", CloseUser { user, code })
        .speaks_protocol(true)
        .subprotocol(SUBPROTOCOL)
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_stop_the_client_after_the_refusal_limit() {
    let server =
        Server::start_with(Node::builder().default_endpoints().authenticator(RefuseAll)).await;
    let (_client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .build()
        .expect("built");
    let body = r#"{"error":{"code":"unauthorized","message":"bad credentials"}}"#;
    let mut failed = Vec::new();
    let reason = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => {
            failed.push(error.clone());
            None
        }
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    let refusal = ConnectError::Http {
        status: 401,
        body: body.into(),
    };
    assert_eq!(failed, vec![refusal.clone(); 5], "the default limit");
    assert_eq!(
        reason,
        StopReason::CredentialsRefused {
            status: 401,
            body: body.into(),
            attempts: 5,
        }
    );
    assert!(events.recv().await.is_none());

    // `connect` stops at the first failure.
    let err = ClientBuilder::new(server.url("/ws/chat"))
        .connect()
        .await
        .expect_err("refused");
    assert_eq!(err, refusal);
}

#[tokio::test]
async fn an_unknown_path_stops_the_client_at_once() {
    let server = Server::start(&switchboard::broker::memory::MemoryBus::new()).await;
    let (_client, mut events) = ClientBuilder::new(server.url("/ws/nowhere"))
        .build()
        .expect("built");
    let failed = until(&mut events, |e| match e {
        Event::ConnectFailed { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(failed, ConnectError::Http { status: 404, .. }),
        "{failed:?}"
    );
    match next(&mut events).await {
        Event::Stopped {
            reason: StopReason::Rejected { status: 404, .. },
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(events.recv().await.is_none());
}

#[tokio::test]
async fn a_forbidden_close_stops_the_client() {
    let server = Server::start_with(Node::builder().endpoint(chat_closing(
        "*",
        switchboard_protocol::CloseCode::FORBIDDEN,
    )))
    .await;
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .build()
        .expect("built");
    let reason = until(&mut events, |e| match e {
        Event::Stopped { reason } => Some(reason.clone()),
        Event::Reconnecting { .. } => panic!("a terminal close must not be retried"),
        _ => None,
    })
    .await;
    match reason {
        StopReason::Closed { code, reason } => {
            assert_eq!(code, CloseCode::FORBIDDEN);
            assert_eq!(reason, "closed by the test");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.state(), ConnectionState::Stopped { .. }));
}

#[tokio::test]
async fn expired_credentials_wait_for_a_new_token() {
    let server = Server::start_with(
        Node::builder()
            .endpoint(chat_closing(
                "old",
                switchboard_protocol::CloseCode::TOKEN_EXPIRED,
            ))
            .authenticator(TokenIsUser),
    )
    .await;
    let (client, mut events) = ClientBuilder::new(server.url("/ws/chat"))
        .token("old")
        .build()
        .expect("built");
    until(&mut events, |e| {
        matches!(e, Event::TokenExpired).then_some(())
    })
    .await;
    let mut state = client.state_changes();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| *s == ConnectionState::WaitingForToken),
    )
    .await
    .expect("in time")
    .expect("state");
    client.set_token("new").await.expect("token set");
    let user = until(&mut events, |e| match e {
        Event::Connected { user, .. } => Some(user.clone()),
        Event::Stopped { reason } => panic!("stopped: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(user, "new");
    assert_eq!(
        client.set_token("line\nbreak").await,
        Err(switchboard_client::RequestError::InvalidToken)
    );
}
