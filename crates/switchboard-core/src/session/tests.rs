use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;
use crate::auth::Identity;
use crate::node::Node;
use crate::transport::WebSocket;
use crate::ws::{OpCode, frame};

type Opened = (
    Node,
    WebSocketStream<DuplexStream>,
    tokio::task::JoinHandle<()>,
);

/// A session over an in-memory pipe, with a real client on the other end.
async fn open(endpoint: Endpoint) -> Opened {
    let endpoint = Arc::new(endpoint);
    let node = Node::builder()
        .endpoint((*endpoint).clone())
        .build()
        .unwrap();
    open_on(node, endpoint, Identity::guest()).await
}

async fn open_on(node: Node, endpoint: Arc<Endpoint>, identity: Identity) -> Opened {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let mut conn = new_conn(&node, identity, &endpoint, None, None, Default::default());
    let task = tokio::spawn(async move {
        let channel = Channel::new(WebSocket::new(server_io, &[], &conn), &conn);
        run(channel, &mut conn, &endpoint).await
    });
    let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    (node, client, task)
}

async fn next_json(ws: &mut WebSocketStream<DuplexStream>) -> serde_json::Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn silent_client_is_terminated_after_interval_plus_timeout_and_leaves_its_rooms() {
    let (node, mut ws, task) = open(Endpoint::chat("/chat")).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws.send(Message::text(r#"{"type":"join","room":"r"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "joined");
    assert_eq!(node.hub().count(&Topic::Room("r".into())), 1);
    let start = Instant::now();
    // The client stops reading, so it never answers the ping.
    task.await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(40) && elapsed < Duration::from_secs(41),
        "terminated after {elapsed:?}"
    );
    assert_eq!(node.hub().count(&Topic::Room("r".into())), 0);
    assert_eq!(node.hub().count(&Topic::Broadcast), 0);
    assert_eq!(node.connection_count(), 0);
    assert_eq!(node.stats().snapshot().heartbeat_timeouts, 1);
    // Read the raw bytes: a client library would try to answer the ping
    // into the closed pipe. Server frames are unmasked: a ping with no
    // payload, then a close frame carrying 4001.
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(ws.get_mut(), &mut raw)
        .await
        .unwrap();
    assert_eq!(&raw[..2], &[0x89, 0x00], "ping");
    assert_eq!(raw[2], 0x88, "close frame");
    assert_eq!(u16::from_be_bytes([raw[4], raw[5]]), 4001);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_connected() {
    let (node, mut ws, task) = open(Endpoint::echo("/echo")).await;
    let mut pings = 0;
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Ping(_) = msg {
                pings += 1;
            }
        }
    };
    // Five minutes of virtual time: the read loop answers every ping.
    assert!(
        tokio::time::timeout(Duration::from_secs(300), read)
            .await
            .is_err()
    );
    assert!(pings >= 9, "saw {pings} pings");
    assert!(!task.is_finished());
    assert_eq!(node.connection_count(), 1);
    assert_eq!(node.stats().snapshot().heartbeat_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn queued_frames_are_written_before_a_going_away_close() {
    let (node, mut ws, task) = open(Endpoint::echo("/echo")).await;
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one"));
    let outbox = node.inner_conn_outboxes().pop().unwrap();
    outbox
        .push(frame::encode(OpCode::Text, b"last words"))
        .unwrap();
    node.begin_shutdown();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("last words")
    );
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // The client completes the handshake; the session ends promptly.
    while ws.next().await.is_some() {}
    task.await.unwrap();
    assert_eq!(node.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_times_out_instead_of_hanging() {
    let (node, ws, task) = open(Endpoint::echo("/echo")).await;
    let start = Instant::now();
    node.begin_shutdown();
    task.await.unwrap();
    // Bounded by the close grace (5 s), not by the client.
    assert!(
        start.elapsed() <= Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
    drop(ws);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_with_a_blocked_socket_is_closed_at_once() {
    let (node, ws, task) = open(Endpoint::echo("/echo")).await;
    while node.connection_count() == 0 {
        tokio::task::yield_now().await;
    }
    let outbox = node.inner_conn_outboxes().pop().unwrap();
    let start = Instant::now();
    // The client reads nothing: the pipe fills, then the write batch,
    // then the queue, which overflows.
    let frame = frame::encode(OpCode::Binary, &[0u8; 1024]);
    let mut overflowed = false;
    for _ in 0..2000 {
        if outbox.push(frame.clone()).is_err() {
            overflowed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(overflowed);
    task.await.unwrap();
    // Bounded by the close grace (5 s), not by the 30 s heartbeat.
    assert!(
        start.elapsed() <= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(node.connection_count(), 0);
    drop(ws);
}

/// The return type's size of a function of three arguments, without calling
/// it.
fn returned_size<A, B, C, R>(_: impl FnOnce(A, B, C) -> R) -> usize {
    std::mem::size_of::<R>()
}

/// Every idle connection carries its session's future (inside its task,
/// with the connection) and its outbox, so they must not grow unnoticed:
/// docs/performance.md ("Idle connections") accounts for every byte.
#[test]
#[cfg(target_pointer_width = "64")]
fn per_connection_state_stays_within_the_measured_size() {
    use crate::outbox::Outbox;
    use crate::transport::websocket::Stream;

    // On x86_64, the same in debug and release builds. These are the sizes
    // when the idle memory was last measured. Eight more bytes in `Conn`
    // (it was 192 for a while) took idle connections from 1.88 to 1.98 KiB
    // each (`bench/run --only idle`): the task crossed an allocator size
    // class.
    const SESSION_FUTURE: usize = 400;
    const TRANSPORT: usize = 152;
    const CONN: usize = 184;
    const OUTBOX: usize = 128;

    let session = returned_size(
        |t: Channel<WebSocket<Stream>>, c: &'static mut Conn, e: &'static Arc<Endpoint>| {
            run(t, c, e)
        },
    );
    let sizes = [
        (
            "the session future (`session::run`)",
            session,
            SESSION_FUTURE,
        ),
        (
            "the transport with its timers (`Channel<WebSocket>`)",
            std::mem::size_of::<Channel<WebSocket<Stream>>>(),
            TRANSPORT,
        ),
        ("the connection (`Conn`)", std::mem::size_of::<Conn>(), CONN),
        (
            "the outbox (`Outbox`)",
            std::mem::size_of::<Outbox>(),
            OUTBOX,
        ),
    ];
    for (what, size, measured) in sizes {
        assert!(
            size <= measured,
            "{what} is {size} bytes, over the {measured} measured: every idle \
             connection carries it. If it must grow, re-measure idle memory \
             with `bench/run --only idle` (and heaptrack, as in \
             docs/performance.md), update the figures there and this limit."
        );
    }
}

/// The value of an unlabelled gauge in the node's exposition.
fn gauge(node: &Node, name: &str) -> f64 {
    let text = node.prometheus();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn the_users_gauge_follows_each_users_connections_down_to_zero() {
    let endpoint = Arc::new(Endpoint::chat("/chat"));
    let node = Node::builder()
        .endpoint((*endpoint).clone())
        .build()
        .unwrap();
    let tab = |user: &str| open_on(node.clone(), endpoint.clone(), Identity::user(user));
    assert_eq!(gauge(&node, "switchboard_users"), 0.0);
    // Two tabs of one user count once; another user counts again.
    let (_, mut ana1, ana1_task) = tab("ana").await;
    assert_eq!(next_json(&mut ana1).await["type"], "welcome");
    assert_eq!(gauge(&node, "switchboard_users"), 1.0);
    let (_, mut ana2, ana2_task) = tab("ana").await;
    assert_eq!(next_json(&mut ana2).await["type"], "welcome");
    assert_eq!(gauge(&node, "switchboard_users"), 1.0);
    let (_, mut bob, bob_task) = tab("bob").await;
    assert_eq!(next_json(&mut bob).await["type"], "welcome");
    assert_eq!(gauge(&node, "switchboard_users"), 2.0);
    // A user stays while one of their tabs is open, and goes with the last.
    ana1.close(None).await.unwrap();
    while ana1.next().await.is_some() {}
    ana1_task.await.unwrap();
    assert_eq!(gauge(&node, "switchboard_users"), 2.0);
    // A tab that drops without a close frame is forgotten as well.
    drop(ana2);
    ana2_task.await.unwrap();
    assert_eq!(gauge(&node, "switchboard_users"), 1.0);
    bob.close(None).await.unwrap();
    while bob.next().await.is_some() {}
    bob_task.await.unwrap();
    assert_eq!(gauge(&node, "switchboard_users"), 0.0);
    assert_eq!(node.connection_count(), 0);
}
