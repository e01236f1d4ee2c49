//! User streams across nodes: a user whose only connection was away gets
//! what was sent to it meanwhile, exactly once and in order, from another
//! node than the one it left, with a real `redis-server` shared by two
//! `switchboard` processes. And when Redis loses the stream, the answer
//! says so and replays the new epoch. The client deduplicates nothing.
//!
//! Needs `redis-server` and `redis-cli` (`scripts/test` installs them).

mod cluster;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use cluster::{Client, Cluster, post};

const SECRET: &str = "user-stream-cluster-secret-32-bytes";

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a token")
}

async fn send(base: &str, user: &str, n: u64) {
    let (status, body) = post(
        &format!("{base}/api/users/{user}/messages"),
        &json!({"data": {"n": n}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The next `count` messages as `(offset, n)`.
async fn messages(c: &mut Client, count: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let m = c.message().await;
        assert_eq!(m["user"], "ana", "{m}");
        out.push((
            m["offset"].as_u64().unwrap(),
            m["data"]["n"].as_u64().unwrap(),
        ));
    }
    out
}

/// Nothing is queued for `c`: the reply to a fresh request comes next.
async fn nothing_more(c: &mut Client, id: u64) {
    c.send(json!({"type": "leave", "room": "none", "id": id}))
        .await;
    let reply = c.reply(id).await;
    assert_eq!(reply["code"], "not_joined");
    assert!(c.buffered().is_empty(), "{:?}", c.buffered());
}

fn stream(c: &Client) -> Value {
    c.welcome()["user_stream"].clone()
}

#[tokio::test]
async fn a_user_recovers_on_another_node_what_was_sent_while_away() {
    let cluster = Cluster::start(2, &["--jwt-secret", SECRET], false).await;
    let [n0, n1] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ana = token("ana");
    let url =
        |node: &cluster::Node, stream: &str| format!("{}/ws/chat?user_stream={stream}", node.ws());
    let mut c = Client::connect_with(&url(n0, "new"), Some(&ana)).await;
    assert_eq!(c.node, n0.id);
    let epoch = stream(&c)["epoch"].as_str().unwrap().to_string();
    assert_eq!(stream(&c), json!({"offset": 0, "epoch": epoch}));
    send(&n1.http(), "ana", 1).await;
    assert_eq!(messages(&mut c, 1).await, [(1, 1)]);
    c.close().await;
    // Away: sent through both nodes.
    for n in 2..=5 {
        let via = if n % 2 == 0 { n0 } else { n1 };
        send(&via.http(), "ana", n).await;
    }
    let mut c = Client::connect_with(&url(n1, &format!("1:{epoch}")), Some(&ana)).await;
    assert_eq!(c.node, n1.id);
    assert_eq!(
        stream(&c),
        json!({"offset": 5, "epoch": epoch, "recovered": true, "replay_after": 1})
    );
    assert_eq!(messages(&mut c, 4).await, [(2, 2), (3, 3), (4, 4), (5, 5)]);
    send(&n0.http(), "ana", 6).await;
    assert_eq!(messages(&mut c, 1).await, [(6, 6)]);
    nothing_more(&mut c, 1).await;
    c.close().await;

    // Redis loses every key: the stream starts a new epoch.
    let flushed = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string(), "FLUSHALL"])
        .output()
        .expect("run redis-cli");
    assert!(flushed.status.success(), "{flushed:?}");
    send(&n1.http(), "ana", 7).await;
    send(&n0.http(), "ana", 8).await;
    let mut c = Client::connect_with(&url(n0, &format!("6:{epoch}")), Some(&ana)).await;
    let s = stream(&c);
    assert_ne!(s["epoch"], epoch.as_str());
    assert_eq!(
        (
            s["offset"].as_u64(),
            s["recovered"].as_bool(),
            s["replay_after"].as_u64()
        ),
        (Some(2), Some(false), Some(0)),
        "{s}"
    );
    assert_eq!(messages(&mut c, 2).await, [(1, 7), (2, 8)]);
    nothing_more(&mut c, 2).await;
}

/// A user's stream that restarts under a live connection (Redis lost its
/// keys) is a hole: the connection gets what came before it, then 4005,
/// never the new epoch's first message passed off as the next one; the
/// reconnect with its position learns that continuity broke and gets the
/// new epoch's messages.
#[tokio::test]
async fn a_user_stream_that_breaks_under_a_live_connection_sends_it_to_resume() {
    let cluster = Cluster::start(2, &["--jwt-secret", SECRET], false).await;
    let [n0, n1] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ana = token("ana");
    let url = format!("{}/ws/chat?user_stream=new", n0.ws());
    let mut c = Client::connect_with(&url, Some(&ana)).await;
    let epoch = stream(&c)["epoch"].as_str().unwrap().to_string();
    for n in 1..=3 {
        send(&n1.http(), "ana", n).await;
    }
    assert_eq!(messages(&mut c, 3).await, [(1, 1), (2, 2), (3, 3)]);
    let flushed = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string(), "FLUSHALL"])
        .output()
        .expect("run redis-cli");
    assert!(flushed.status.success(), "{flushed:?}");
    // Offset 1 of a new epoch after 3.
    send(&n1.http(), "ana", 4).await;
    assert_eq!(c.closed().await, 4005);
    let resume = format!("{}/ws/chat?user_stream=3:{epoch}", n0.ws());
    let mut c = Client::connect_with(&resume, Some(&ana)).await;
    let s = stream(&c);
    assert_ne!(s["epoch"], epoch.as_str());
    assert_eq!(
        (s["offset"].as_u64(), s["recovered"].as_bool()),
        (Some(1), Some(false)),
        "{s}"
    );
    assert_eq!(messages(&mut c, 1).await, [(1, 4)]);
    nothing_more(&mut c, 1).await;
}
