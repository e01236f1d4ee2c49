//! A `switchboard` process killed with SIGKILL cannot announce its
//! connections' leaves: the surviving processes do, once each, to every
//! presence watcher on every node, once the dead node's presence entries
//! expire (`presence_ttl`, 30 s by default, so this test takes that long).
//!
//! Needs `redis-server` and `redis-cli` (`apt-get install redis-server`).

mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cluster::{Client, Cluster};

/// The default `presence_ttl` of the Redis broker.
const PRESENCE_TTL: Duration = Duration::from_secs(30);

fn is_event(f: &Value, event: &str, conn: &str) -> bool {
    f["type"] == "presence_event" && f["data"]["event"] == event && f["data"]["conn"] == conn
}

/// Waits up to `within` for every client to receive the `leave` of `conn`,
/// and returns those. A client waits for any one frame only for the
/// cluster's deadline, and must read to answer the server's pings, so this
/// asks each for presence every second meanwhile.
async fn leaves_of(clients: &mut [Client], conn: &str, within: Duration) -> Vec<Value> {
    let start = Instant::now();
    let mut leaves = vec![None; clients.len()];
    for id in 1000.. {
        for (client, leave) in clients.iter_mut().zip(&mut leaves) {
            client
                .send(json!({"type": "presence", "room": "team", "id": id}))
                .await;
            let frame = client
                .expect("the leave or the presence reply", |f| {
                    is_event(f, "leave", conn) || f["id"] == id
                })
                .await;
            if is_event(&frame, "leave", conn) {
                assert!(leave.is_none(), "a second leave: {frame}");
                *leave = Some(frame);
            }
        }
        if leaves.iter().all(Option::is_some) {
            break;
        }
        assert!(
            start.elapsed() < within,
            "no leave of {conn} within {within:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    leaves.into_iter().flatten().collect()
}

#[tokio::test]
async fn a_killed_nodes_connections_are_announced_as_leaving_once() {
    let mut cluster = Cluster::start(3, &[], false).await;
    let mut watchers = Vec::new();
    for node in &cluster.nodes[..2] {
        let mut w = Client::connect(&format!("{}/ws/chat", node.ws())).await;
        w.send(json!({"type": "join", "room": "team", "presence": true, "id": 1}))
            .await;
        assert_eq!(w.reply(1).await["type"], "joined");
        watchers.push(w);
    }
    let mut member = Client::connect(&format!("{}/ws/chat", cluster.nodes[2].ws())).await;
    member.join("team", 1).await;
    let (conn, user) = (member.conn.clone(), member.user.clone());
    for w in &mut watchers {
        w.expect("the member's join", |f| is_event(f, "join", &conn))
            .await;
    }

    // SIGKILL: dropping a cluster node kills it so.
    drop(cluster.nodes.remove(2));
    let killed = Instant::now();
    for leave in leaves_of(&mut watchers, &conn, 2 * PRESENCE_TTL).await {
        assert_eq!(
            leave["data"],
            json!({"event": "leave", "user": user, "conn": conn})
        );
        assert_eq!(leave["room"], "team");
    }
    eprintln!("the leave arrived {:?} after the kill", killed.elapsed());

    // The leave was published by the script that deleted the dead node's
    // entries: nothing of it is left to announce, and a join published now
    // comes after any other leave of it.
    let keys = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string(), "--raw"])
        .args(["KEYS", "sb:members:*"])
        .output()
        .expect("redis-cli (installed with redis-server)");
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert_eq!(
        keys.lines().count(),
        2,
        "only the survivors' entries: {keys}"
    );
    let mut marker = Client::connect(&format!("{}/ws/chat", cluster.nodes[0].ws())).await;
    marker.join("team", 1).await;
    for w in &mut watchers {
        w.expect("the marker's join", |f| is_event(f, "join", &marker.conn))
            .await;
        let again = w.buffered().iter().filter(|f| is_event(f, "leave", &conn));
        assert_eq!(again.count(), 0, "a second leave: {:?}", w.buffered());
    }
    drop(member);
}
