//! Backoff, stability, going-away, ack and idle timeouts, on a paused clock
//! against fake peers on real sockets. The clock only moves when every task
//! waits, so each delay can be checked to the millisecond.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use switchboard_client::backoff::Backoff;
use switchboard_client::{ClientBuilder, CloseCode, Event, PublishError, RequestError};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const MS: Duration = Duration::from_millis(1);

/// Sends `welcome`, then closes with `code` (no wait).
async fn welcome_then_close(ws: &mut FakeSocket, code: u16) {
    let _ = ws.send(welcome("fake", 30_000)).await;
    close_with(ws, code).await;
}

/// Closes with `code` and waits for the peer's reply.
async fn close_with(ws: &mut FakeSocket, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "test".into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
    read_to_end(ws).await;
}

/// The next `Reconnecting` event's attempt and delay, and when the
/// following `Connecting` came (to check the delay was waited).
async fn next_reconnect(events: &mut switchboard_client::Events) -> (u32, Duration, Duration) {
    let (attempt, delay) = until(events, |e| match e {
        Event::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
        _ => None,
    })
    .await;
    let start = Instant::now();
    let next = until(events, |e| match e {
        Event::Connecting { attempt } => Some(*attempt),
        _ => None,
    })
    .await;
    assert_eq!(next, attempt);
    (attempt, delay, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn refused_connections_back_off_within_growing_capped_ceilings() {
    let addr = refusing_addr().await;
    let policy = Backoff {
        base: 100 * MS,
        cap: 1000 * MS,
    };
    let (client, mut events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        .backoff(policy.base, policy.cap)
        .build()
        .expect("built");
    let mut delays = Vec::new();
    for n in 1..=10 {
        let (attempt, delay, waited) = next_reconnect(&mut events).await;
        assert_eq!(attempt, n);
        assert!(delay <= policy.ceiling(n), "attempt {n}: {delay:?}");
        assert!(
            waited >= delay && waited <= delay + 5 * MS,
            "attempt {n}: waited {waited:?} for {delay:?}"
        );
        delays.push(delay);
    }
    // The ceilings double to the cap; the capped attempts (5..=10, up to 1 s
    // each) are, on any sane draw, not all shorter than the first ceiling.
    assert_eq!(policy.ceiling(4), 800 * MS);
    assert_eq!(policy.ceiling(10), policy.cap);
    assert!(delays[4..].iter().any(|d| *d > 100 * MS), "{delays:?}");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_stable_connection_resets_the_attempt_counter() {
    // Connections 0-2 drop at once, 3 stays up 3 s, 4 drops at once, 5 stays.
    let addr = fake_server(|n, mut ws| async move {
        match n {
            3 => {
                let _ = ws.send(welcome("fake", 0)).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                close_with(&mut ws, 1011).await;
            }
            5 => {
                let _ = ws.send(welcome("fake", 0)).await;
                read_to_end(&mut ws).await;
            }
            _ => welcome_then_close(&mut ws, 1011).await,
        }
    })
    .await;
    let policy = Backoff {
        base: 100 * MS,
        cap: Duration::from_secs(60),
    };
    let (client, mut events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        .backoff(policy.base, policy.cap)
        .stable_after(Duration::from_secs(2))
        .build()
        .expect("built");
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let (attempt, delay, _) = next_reconnect(&mut events).await;
        assert!(delay <= policy.ceiling(attempt), "{attempt}: {delay:?}");
        attempts.push(attempt);
    }
    assert_eq!(attempts, [1, 2, 3, 1, 2]);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn going_away_reconnects_within_the_jitter_window_not_the_backoff() {
    let addr = fake_server(|n, mut ws| async move {
        match n {
            0 => welcome_then_close(&mut ws, 1001).await,
            1 => welcome_then_close(&mut ws, 1012).await,
            _ => {
                let _ = ws.send(welcome("fake", 0)).await;
                read_to_end(&mut ws).await;
            }
        }
    })
    .await;
    let (client, mut events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        // A backoff this slow would show.
        .backoff(Duration::from_secs(20), Duration::from_secs(60))
        .build()
        .expect("built");
    let start = Instant::now();
    for code in [CloseCode::GOING_AWAY, CloseCode::SERVICE_RESTART] {
        let got = until(&mut events, |e| match e {
            Event::Disconnected { code, .. } => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(got, code);
        let (_, delay, waited) = next_reconnect(&mut events).await;
        assert!(delay <= Duration::from_secs(1), "{delay:?}");
        assert!(waited <= delay + 5 * MS);
    }
    until(&mut events, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    assert!(
        start.elapsed() <= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_publish_or_join_times_out_after_the_ack_timeout() {
    let addr = fake_server(|_, mut ws| async move {
        let _ = ws.send(welcome("fake", 0)).await;
        read_to_end(&mut ws).await;
    })
    .await;
    let (client, _events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        .ack_timeout(Duration::from_secs(3))
        .connect()
        .await
        .expect("connected");
    let start = Instant::now();
    let err = client.publish("r", json!(1)).await.expect_err("no ack");
    assert!(
        matches!(err, PublishError::Timeout(t) if t == Duration::from_secs(3)),
        "{err:?}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3005),
        "{waited:?}"
    );
    let err = client.join("r").await.expect_err("no reply");
    assert!(matches!(err, RequestError::Timeout(_)), "{err:?}");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_presumed_dead_after_twice_its_ping_interval_and_slack() {
    // Welcomes with a 1 s ping interval, then never sends anything.
    let addr = fake_server(|_, mut ws| async move {
        let _ = ws.send(welcome("fake", 1000)).await;
        read_to_end(&mut ws).await;
    })
    .await;
    let (client, mut events) = ClientBuilder::new(format!("ws://{addr}/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let start = Instant::now();
    let (code, reason) = until(&mut events, |e| match e {
        Event::Disconnected { code, reason } => Some((*code, reason.clone())),
        _ => None,
    })
    .await;
    let waited = start.elapsed();
    assert_eq!(code, CloseCode(1006), "{reason}");
    assert!(reason.contains("presumed dead"), "{reason}");
    // 2 × 1 s + 5 s.
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7005),
        "{waited:?}"
    );
    client.close().await;
}
