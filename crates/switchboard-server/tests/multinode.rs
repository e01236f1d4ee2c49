//! Several `switchboard` processes on one real `redis-server`, and a real
//! nginx in front of them with plain round-robin (no sticky sessions).
//! Every process is started by the test on free loopback ports and killed
//! when the test ends, also when it fails (see `cluster/mod.rs`).
//!
//! Needs `redis-server` and `nginx` (`apt-get install redis-server nginx`;
//! `scripts/test` installs both).

mod cluster;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_testkit::ws;

use cluster::{Client, Cluster, DEADLINE, eventually, free_port, get, post, publish_api};

/// The room messages `client` receives next, `n` of them.
async fn messages(client: &mut Client, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(client.message().await);
    }
    out
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["offset"].as_u64().expect("offset"))
        .collect()
}

fn datas(frames: &[Value]) -> Vec<Value> {
    frames.iter().map(|f| f["data"].clone()).collect()
}

/// Room messages published on any node, over WebSocket or the HTTP API,
/// reach the members on every node once each, in one order, with offsets
/// that one Redis sequence assigns across nodes.
#[tokio::test]
async fn room_messages_cross_nodes_once_each_in_one_order() {
    let cluster = Cluster::start(3, &[], false).await;
    let [n0, n1, n2] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let mut a = Client::connect(&format!("{}/ws/chat", n0.ws())).await;
    let mut b = Client::connect(&format!("{}/ws/chat", n1.ws())).await;
    assert_eq!(a.node, n0.id);
    assert_eq!(b.node, n1.id);

    let ja = a.join("lobby", 1).await;
    let jb = b.join("lobby", 1).await;
    assert_eq!(ja["offset"], 0, "{ja}");
    assert_eq!(
        ja["epoch"], jb["epoch"],
        "one epoch for the room on every node"
    );

    // From A's node over WebSocket, from B's node over WebSocket, from the
    // third node's API, from A's node's API, and so on, interleaved.
    let mut acks = Vec::new();
    acks.push(a.publish("lobby", json!({"n": 1}), 10).await);
    acks.push(b.publish("lobby", json!({"n": 2}), 10).await);
    let api3 = publish_api(&n2.http(), "lobby", json!({"n": 3})).await;
    let api4 = publish_api(&n0.http(), "lobby", json!({"n": 4})).await;
    acks.push(b.publish("lobby", json!({"n": 5}), 11).await);
    let api6 = publish_api(&n1.http(), "lobby", json!({"n": 6})).await;
    acks.push(a.publish("lobby", json!({"n": 7}), 11).await);
    for ack in &acks {
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let expected_offsets: Vec<u64> = (1..=7).collect();
    let mut published = vec![
        acks[0]["offset"].as_u64().unwrap(),
        acks[1]["offset"].as_u64().unwrap(),
        api3,
        api4,
        acks[2]["offset"].as_u64().unwrap(),
        api6,
        acks[3]["offset"].as_u64().unwrap(),
    ];
    assert_eq!(
        published, expected_offsets,
        "each publish awaited its reply, so offsets follow the order sent"
    );
    // A last message from the third node: whatever arrives before it must be
    // exactly the seven, once each.
    published.push(publish_api(&n2.http(), "lobby", json!("end")).await);

    let (user_a, user_b) = (a.user.clone(), b.user.clone());
    let want: Vec<Value> = (1..=7)
        .map(|n| json!({ "n": n }))
        .chain([json!("end")])
        .collect();
    for (name, client) in [("A", &mut a), ("B", &mut b)] {
        let got = messages(client, 8).await;
        assert_eq!(datas(&got), want, "client {name} got {got:?}");
        assert_eq!(offsets(&got), published, "client {name} got {got:?}");
        for f in &got {
            assert_eq!(f["room"], "lobby");
        }
        // `from` names the publishing client, and only for client publishes.
        assert_eq!(got[0]["from"], Value::String(user_a.clone()));
        assert_eq!(got[1]["from"], Value::String(user_b.clone()));
        assert!(got[2].get("from").is_none(), "{}", got[2]);
        assert!(
            client.buffered().iter().all(|f| f["type"] != "message"),
            "client {name} has more: {:?}",
            client.buffered()
        );
    }
}

/// An HS256 token for `user`, valid for an hour.
fn token(secret: &str, user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a token")
}

/// A user with connections on two nodes gets a message sent through a third
/// node's API on both; a broadcast reaches clients on every node.
#[tokio::test]
async fn user_messages_and_broadcasts_reach_every_node() {
    let secret = "multinode-test-secret-32-bytes-long!";
    let cluster = Cluster::start(3, &["--jwt-secret", secret], false).await;
    let [n0, n1, n2] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let ana = token(secret, "ana");
    let mut ana_chat = Client::connect_with(&format!("{}/ws/chat", n0.ws()), Some(&ana)).await;
    let mut ana_notif =
        Client::connect_with(&format!("{}/ws/notifications", n1.ws()), Some(&ana)).await;
    let mut bob =
        Client::connect_with(&format!("{}/ws/chat", n2.ws()), Some(&token(secret, "bob"))).await;
    assert_eq!(
        (ana_chat.user.as_str(), ana_notif.user.as_str()),
        ("ana", "ana")
    );
    assert_eq!(
        [&ana_chat.node, &ana_notif.node, &bob.node],
        [&n0.id, &n1.id, &n2.id]
    );

    // To ana, through the node where she has no connection.
    for n in 1..=2 {
        let (status, body) = post(
            &format!("{}/api/users/ana/messages", n2.http()),
            &json!({"data": {"note": n}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for client in [&mut ana_chat, &mut ana_notif] {
        let got = messages(client, 2).await;
        assert_eq!(
            got,
            vec![
                json!({"type": "message", "user": "ana", "offset": 1, "data": {"note": 1}}),
                json!({"type": "message", "user": "ana", "offset": 2, "data": {"note": 2}}),
            ],
            "conn {}",
            client.conn
        );
    }

    // Broadcasts from the first node reach all three nodes, once each.
    for n in 1..=2 {
        let (status, body) = post(
            &format!("{}/api/broadcast", n0.http()),
            &json!({"data": {"all": n}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for client in [&mut ana_chat, &mut ana_notif, &mut bob] {
        let got = messages(client, 2).await;
        assert_eq!(
            got,
            vec![
                json!({"type": "message", "broadcast": true, "offset": 1, "data": {"all": 1}}),
                json!({"type": "message", "broadcast": true, "offset": 2, "data": {"all": 2}}),
            ],
            "conn {}",
            client.conn
        );
    }
    // bob got neither of ana's messages: his next message is the next
    // broadcast.
    let (status, _) = post(
        &format!("{}/api/broadcast", n1.http()),
        &json!({"data": "last"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bob.message().await["data"], "last");
    for client in [&mut ana_chat, &mut ana_notif] {
        assert_eq!(client.message().await["data"], "last");
    }

    // Leaving one connection out, across nodes: a user message through the
    // third node's API that names ana's chat connection reaches only her
    // other connection; a room publish with `except_self` from ana's chat
    // reaches ana's chat connection on another node and bob, not itself.
    let (status, body) = post(
        &format!("{}/api/users/ana/messages", n2.http()),
        &json!({"data": "not to chat", "except": ana_chat.conn}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ana_notif.message().await["data"], "not to chat");
    let mut ana_chat2 = Client::connect_with(&format!("{}/ws/chat", n1.ws()), Some(&ana)).await;
    for (client, id) in [(&mut ana_chat, 1), (&mut ana_chat2, 1), (&mut bob, 1)] {
        client.join("tabs", id).await;
    }
    ana_chat
        .send(json!({"type": "publish", "room": "tabs", "data": "mine", "id": 2, "except_self": true}))
        .await;
    assert_eq!(ana_chat.reply(2).await["type"], "ack");
    for client in [&mut ana_chat2, &mut bob] {
        assert_eq!(client.message().await["data"], "mine");
    }
    // ana's chat connection's next message is the next one to the room:
    // neither "not to chat" nor "mine" came to it.
    let (status, _) = post(
        &format!("{}/api/rooms/tabs/messages", n0.http()),
        &json!({"data": "after"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ana_chat.message().await["data"], "after");
}

/// Through nginx with plain round-robin, consecutive requests and
/// connections land on different nodes, and chat works across them. The
/// access log never holds a `token` query parameter.
#[tokio::test]
async fn nginx_round_robin_spreads_connections_and_chat_crosses_nodes() {
    let cluster = Cluster::start(3, &[], true).await;
    let nginx = cluster.nginx();
    let all: HashSet<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();

    // `/health` through nginx: three requests, three nodes.
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let (status, health) = get(&format!("{}/health", nginx.http())).await;
        assert_eq!(status, 200);
        seen.insert(health["node"].as_str().expect("node").to_string());
    }
    assert_eq!(seen, all, "round-robin over every node");

    // Three WebSocket connections through nginx, three nodes. The token
    // query parameter is ignored by a server without JWT, and nginx must
    // not log it.
    let url = format!("{}/ws/chat?token=do-not-log-me", nginx.ws());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&url).await);
    }
    let landed: HashSet<String> = clients.iter().map(|c| c.node.clone()).collect();
    assert_eq!(
        landed, all,
        "consecutive connections land on different nodes"
    );

    for c in &mut clients {
        c.join("chat", 1).await;
    }
    let ack = clients[0]
        .publish("chat", json!("from a WebSocket"), 2)
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // The HTTP API through nginx: relayed with X-Forwarded-For by a trusted
    // proxy on loopback for a loopback client, so no API key is needed.
    let offset = publish_api(&nginx.http(), "chat", json!("from the API")).await;
    assert_eq!(offset, 2);
    // A client that is not on loopback (here: behind another proxy that
    // named it) gets no keyless access through nginx, and nothing is
    // published.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/rooms/chat/messages", nginx.http()))
        .header("x-forwarded-for", "203.0.113.9")
        .body(r#"{"data":"refused"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    for c in &mut clients {
        let got = messages(c, 2).await;
        assert_eq!(
            datas(&got),
            vec![json!("from a WebSocket"), json!("from the API")],
            "conn {}",
            c.conn
        );
        assert_eq!(offsets(&got), vec![1, 2]);
    }

    for c in clients {
        c.close().await;
    }
    // nginx logs a WebSocket request when it ends.
    let log = eventually("the WebSocket requests in the access log", DEADLINE, || {
        let log = nginx.access_log();
        async move { (log.matches("GET /ws/chat").count() >= 3).then_some(log) }
    })
    .await;
    assert!(!log.contains("do-not-log-me"), "{log}");
    assert!(log.contains("upstream=127.0.0.1:"), "{log}");
}

/// A client that disconnects and reconnects through nginx lands on another
/// node, and recovers exactly what it missed from the Redis history there:
/// no sticky sessions needed.
#[tokio::test]
async fn recovery_after_reconnecting_to_another_node_through_nginx() {
    let cluster = Cluster::start(3, &[], true).await;
    let nginx = cluster.nginx();
    let api = cluster.nodes[0].http();
    let url = format!("{}/ws/chat", nginx.ws());

    let mut first = Client::connect(&url).await;
    let joined = first.join("recover", 1).await;
    let epoch = joined["epoch"].as_str().expect("epoch").to_string();
    for n in 1..=3 {
        publish_api(&api, "recover", json!({ "n": n })).await;
    }
    let got = messages(&mut first, 3).await;
    assert_eq!(offsets(&got), vec![1, 2, 3]);
    let last = got[2]["offset"].as_u64().unwrap();
    let first_node = first.node.clone();
    first.close().await;

    // Missed while away. Published on the nodes directly, so that nginx's
    // round-robin moves on by exactly one connection.
    for n in 4..=6 {
        publish_api(&api, "recover", json!({ "n": n })).await;
    }

    let mut again = Client::connect(&url).await;
    assert_ne!(
        again.node, first_node,
        "round-robin put the reconnect on another node"
    );
    again
        .send(json!({
            "type": "join", "room": "recover", "id": 2,
            "since": {"offset": last, "epoch": epoch},
        }))
        .await;
    // Exactly 4, 5, 6 in order, then `joined` saying so.
    let mut replayed = Vec::new();
    let joined = loop {
        let f = again
            .expect("replay or joined", |f| {
                f["type"] == "message" || f["id"] == 2
            })
            .await;
        if f["type"] == "message" {
            replayed.push(f);
        } else {
            break f;
        }
    };
    assert_eq!(offsets(&replayed), vec![4, 5, 6], "{replayed:?}");
    assert_eq!(
        datas(&replayed),
        vec![json!({"n": 4}), json!({"n": 5}), json!({"n": 6})]
    );
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch.as_str(), "{joined}");
    // Then live, with nothing repeated.
    publish_api(&cluster.nodes[1].http(), "recover", json!({"n": 7})).await;
    let live = again.message().await;
    assert_eq!(live["offset"], 7, "{live}");
    assert_eq!(live["data"], json!({"n": 7}));

    // A position from another epoch cannot be filled: said plainly.
    let mut stale = Client::connect(&url).await;
    stale
        .send(json!({
            "type": "join", "room": "recover", "id": 3,
            "since": {"offset": 2, "epoch": "0000000000000000"},
        }))
        .await;
    let joined = stale.reply(3).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["recovered"], false, "{joined}");
}

/// Redis dies: publishes fail loudly (503 and `publish_failed`), `/health`
/// says degraded, connections stay open. Redis comes back on the same port:
/// publishes succeed and deliveries cross nodes again, on the same
/// connections.
#[tokio::test]
async fn a_redis_outage_fails_publishes_loudly_and_heals() {
    let mut cluster = Cluster::start(2, &[], false).await;
    let (api0, api1) = (cluster.nodes[0].http(), cluster.nodes[1].http());
    let mut a = Client::connect(&format!("{}/ws/chat", cluster.nodes[0].ws())).await;
    let mut b = Client::connect(&format!("{}/ws/chat", cluster.nodes[1].ws())).await;
    let epoch = a.join("outage", 1).await["epoch"].clone();
    b.join("outage", 1).await;
    assert_eq!(a.publish("outage", json!("before"), 2).await["type"], "ack");
    assert_eq!(b.message().await["data"], "before");
    assert_eq!(a.message().await["data"], "before");

    cluster.redis.kill();

    // The HTTP API: 503 partially_delivered, on both nodes (the first call
    // may still be the one that finds the connection gone): each reached
    // its own node's members only.
    for (i, api) in [&api0, &api1].into_iter().enumerate() {
        let body = eventually("a 503 from the API", DEADLINE, || async {
            let (status, body) = post(
                &format!("{api}/api/rooms/outage/messages"),
                &json!({"data": format!("api-{i}")}),
            )
            .await;
            (status == 503).then_some(body)
        })
        .await;
        assert_eq!(body["error"]["code"], "partially_delivered", "{body}");
    }
    // With an idempotency key nothing is delivered anywhere: 503
    // publish_failed, and the retry after the outage is safe.
    let keyed = json!({"data": "keyed", "idempotency_key": "outage-1"});
    let (status, body) = post(&format!("{api0}/api/rooms/outage/messages"), &keyed).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("publish_failed")),
        "{body}"
    );
    // WebSocket publishes: an error frame, and the connection stays open.
    let err = a.publish("outage", json!("from-a"), 3).await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "partially_delivered", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("this node's members only"),
        "{err}"
    );
    let err = b.publish("outage", json!("from-b"), 3).await;
    assert_eq!(err["code"], "partially_delivered", "{err}");
    // A join that needs a new subscription cannot be completed either.
    b.send(json!({"type": "join", "room": "elsewhere", "id": 4}))
        .await;
    let err = b.reply(4).await;
    assert_eq!(err["code"], "unavailable", "{err}");
    for node in &cluster.nodes {
        let health = node.wait_status("degraded", DEADLINE).await;
        assert_eq!(health["broker"]["kind"], "redis", "{health}");
        assert_eq!(health["broker"]["connected"], false, "{health}");
        assert!(health["broker"]["detail"].is_string(), "{health}");
        assert_eq!(health["stats"]["connections"], 1, "{health}");
    }
    // Meanwhile each node delivered its own publishes to its own members
    // only, without offsets (they are in no history); nothing crossed nodes.
    let local = |frames: &std::collections::VecDeque<serde_json::Value>| -> Vec<String> {
        frames
            .iter()
            .filter(|f| f["type"] == "message")
            .inspect(|f| assert!(f.get("offset").is_none(), "{f}"))
            .map(|f| f["data"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (on_a, on_b) = (local(a.buffered()), local(b.buffered()));
    assert!(
        on_a.iter().all(|d| d == "api-0" || d == "from-a"),
        "{on_a:?}"
    );
    assert!(
        on_b.iter().all(|d| d == "api-1" || d == "from-b"),
        "{on_b:?}"
    );
    assert!(on_a.contains(&"from-a".to_string()) && on_b.contains(&"from-b".to_string()));
    a.clear_buffered();
    b.clear_buffered();

    cluster.redis.restart();

    // Each node reconnects with backoff (at most 5 s between attempts) and
    // reports ok once it subscribed again to everything it had.
    for node in &cluster.nodes {
        node.wait_status("ok", Duration::from_secs(20)).await;
    }
    // The room starts a new epoch (this Redis kept nothing) under both
    // connections. Their nodes see its offsets restart and close them with
    // 4005 instead of delivering offset 1 of an epoch they never joined.
    assert_eq!(
        publish_api(&api0, "outage", json!("after, from node 0's API")).await,
        1,
        "a new epoch starts at 1"
    );
    assert_eq!(a.closed().await, 4005);
    assert_eq!(b.closed().await, 4005);
    // They rejoin with their position: told of the new epoch (reset), and
    // given its message.
    let mut rejoined = Vec::new();
    for node in &cluster.nodes {
        let mut client = Client::connect(&format!("{}/ws/chat", node.ws())).await;
        client
            .send(json!({"type": "join", "room": "outage", "id": 5,
                "since": {"offset": 1, "epoch": epoch}, "replay_new_epoch": true}))
            .await;
        let reset = client.reply(5).await;
        assert_eq!(
            (&reset["type"], &reset["offset"]),
            (&json!("reset"), &json!(0)),
            "{reset}"
        );
        assert_ne!(reset["epoch"], epoch, "{reset}");
        let replayed = client.message().await;
        assert_eq!(replayed["data"], "after, from node 0's API", "{replayed}");
        let joined = client.reply(5).await;
        assert_eq!(joined["recovered"], false, "{joined}");
        rejoined.push(client);
    }
    let mut b = rejoined.pop().expect("client on node 1");
    let mut a = rejoined.pop().expect("client on node 0");
    // From then on, across nodes, both ways.
    let ack = a.publish("outage", json!("after, from A"), 6).await;
    assert_eq!(
        (&ack["type"], &ack["offset"]),
        (&json!("ack"), &json!(2)),
        "{ack}"
    );
    let ack = b.publish("outage", json!("after, from B"), 6).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // The keyed publish, retried on both nodes: delivered once.
    for api in [&api0, &api1] {
        let (status, body) = post(&format!("{api}/api/rooms/outage/messages"), &keyed).await;
        assert_eq!((status, body["offset"].as_u64()), (200, Some(4)), "{body}");
    }
    let want = vec![
        json!("after, from A"),
        json!("after, from B"),
        json!("keyed"),
    ];
    for (name, client) in [("A", &mut a), ("B", &mut b)] {
        let got = messages(client, 3).await;
        assert_eq!(datas(&got), want, "client {name}: {got:?}");
        assert_eq!(offsets(&got), vec![2, 3, 4], "client {name}: {got:?}");
    }
    // Nothing after it: the next message is the marker.
    publish_api(&api1, "outage", json!("marker")).await;
    for client in [&mut a, &mut b] {
        assert_eq!(client.message().await["data"], "marker");
    }
}

/// A graceful restart behind nginx: the node's clients get 1001, reconnect
/// through nginx to a node that is still up, recover what was published
/// meanwhile, and presence no longer lists the connection that left.
#[tokio::test]
async fn a_graceful_restart_sends_clients_to_another_node_that_recovers_them() {
    let mut cluster = Cluster::start(2, &[], true).await;
    let url = format!("{}/ws/chat", cluster.nginx().ws());
    let mut client = Client::connect(&url).await;
    let joined = client.join("restart", 1).await;
    let epoch = joined["epoch"].clone();
    let (leaving, staying) = if client.node == cluster.nodes[0].id {
        (0, 1)
    } else {
        (1, 0)
    };
    let api = cluster.nodes[staying].http();
    publish_api(&api, "restart", json!(1)).await;
    assert_eq!(client.message().await["offset"], 1);

    cluster.nodes[leaving].sigterm();
    assert_eq!(client.closed().await, 1001, "going away");
    let status = cluster.nodes[leaving].wait_exit();
    assert!(status.success(), "{status}");
    let log = cluster.nodes[leaving].log_text();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("could not remove"), "{log}");

    publish_api(&api, "restart", json!(2)).await;
    // nginx passes over the stopped node (connection refused) to the live
    // one: whatever round-robin picks, every connection lands there.
    for _ in 0..3 {
        let probe = Client::connect(&url).await;
        assert_eq!(probe.node, cluster.nodes[staying].id);
        probe.close().await;
    }
    let mut again = Client::connect(&url).await;
    assert_eq!(again.node, cluster.nodes[staying].id);
    again
        .send(json!({
            "type": "join", "room": "restart", "id": 2,
            "since": {"offset": 1, "epoch": epoch},
        }))
        .await;
    let replayed = again.message().await;
    assert_eq!(
        (replayed["offset"].clone(), replayed["data"].clone()),
        (json!(2), json!(2))
    );
    let joined = again.reply(2).await;
    assert_eq!(joined["recovered"], true, "{joined}");

    again
        .send(json!({"type": "presence", "room": "restart", "id": 3}))
        .await;
    let presence = again.reply(3).await;
    assert_eq!(
        presence["members"],
        json!([{"user": again.user, "connections": 1}]),
        "{presence}"
    );
}

/// `--broker` is checked at startup: an unreachable Redis or an unknown
/// broker stops the server with a message naming it; the log says which
/// broker a running node uses.
#[tokio::test]
async fn the_broker_flag_fails_fast_and_is_logged() {
    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--port", "0", "--broker", &nobody])
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach redis"), "{err}");
    assert!(err.contains(&nobody), "{err}");

    // The same from the config file's `broker` key.
    let cluster_dir =
        std::env::temp_dir().join(format!("switchboard-broker-{}", std::process::id()));
    std::fs::create_dir_all(&cluster_dir).unwrap();
    let file = cluster_dir.join("switchboard.toml");
    std::fs::write(&file, format!("port = 0\nbroker = \"{nobody}\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", file.to_str().unwrap()])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&cluster_dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach redis"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--port", "0", "--broker", "nats://user:secret@host:4222"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--broker must be `memory` or a Redis URL"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");

    let cluster = Cluster::start(1, &["--history-count", "2"], false).await;
    let node = &cluster.nodes[0];
    let log = node.log_text();
    let url = cluster.redis.url();
    assert!(log.contains(&format!("broker: redis at {url}")), "{log}");
    assert!(log.contains("history_count=2"), "{log}");
    let health = node.health().await;
    assert_eq!(
        health["broker"],
        json!({"kind": "redis", "connected": true, "reconnects": 0})
    );

    // --history-count reaches the Redis broker: four messages, two kept.
    let mut client = Client::connect(&format!("{}/ws/chat", node.ws())).await;
    let epoch = client.join("short", 1).await["epoch"].clone();
    for n in 1..=4 {
        publish_api(&node.http(), "short", json!(n)).await;
    }
    let got = messages(&mut client, 4).await;
    assert_eq!(offsets(&got), vec![1, 2, 3, 4]);
    let url = format!("{}/ws/chat", node.ws());
    let mut kept = Client::connect(&url).await;
    kept.send(
        json!({"type": "join", "room": "short", "id": 1, "since": {"offset": 2, "epoch": epoch}}),
    )
    .await;
    let joined = kept.reply(1).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(offsets(&messages(&mut kept, 2).await), vec![3, 4]);
    let mut trimmed = Client::connect(&url).await;
    trimmed
        .send(json!({"type": "join", "room": "short", "id": 1, "since": {"offset": 1, "epoch": epoch}}))
        .await;
    let joined = trimmed.reply(1).await;
    assert_eq!(joined["recovered"], false, "offset 2 was trimmed: {joined}");
}

/// docs/deploy.md shows the nginx configuration these tests run, verbatim.
#[test]
fn the_deploy_guide_shows_the_tested_nginx_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md");
    let guide = std::fs::read_to_string(path).expect("docs/deploy.md");
    assert!(
        guide.contains(cluster::NGINX_CONF),
        "docs/deploy.md must contain cluster::NGINX_CONF verbatim"
    );
}

/// A page served through nginx on a non-default port may open its
/// WebSocket under the default same-origin policy: nginx passes the Host
/// header with its port (`$http_host`; `$host` would drop the port and the
/// server would refuse the page's own Origin). Other origins stay refused.
#[tokio::test]
async fn same_origin_pages_work_through_nginx_on_any_port() {
    let cluster = Cluster::start(1, &[], true).await;
    let nginx = cluster.nginx();
    let upgrade = |origin: String| {
        let req = ws::request(&format!("{}/ws/chat", nginx.ws()), &[("origin", &origin)]);
        ws::Client::try_open(req)
    };
    let own = format!("http://127.0.0.1:{}", nginx.port);
    assert!(upgrade(own).await.is_ok(), "the page's own origin");
    match upgrade("http://evil.example".to_string()).await {
        Err(refusal) => assert_eq!(refusal.status, 403),
        Ok(_) => panic!("expected 403, got 101"),
    }
}
