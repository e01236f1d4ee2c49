//! The presence routes of the HTTP API across `switchboard` processes that
//! share one real `redis-server`: a user connected to one node is online
//! when asked on another, and offline once they disconnect; a room's
//! members are listed from every node. Also what recording users costs
//! Redis, which is why `--online-status` is off by default.
//!
//! Needs `redis-server` and `redis-cli` (`apt-get install redis-server`).

mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use cluster::{Client, Cluster, DEADLINE, eventually, get, post};

#[tokio::test]
async fn a_user_on_one_node_is_online_on_every_node_until_they_leave() {
    let cluster = Cluster::start(2, &["--online-status"], false).await;
    let [n0, n1] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ana = Client::connect(&format!("{}/ws/chat", n0.ws())).await;
    assert_eq!(ana.node, n0.id);
    let user = ana.user.clone();
    let url = |node: &cluster::Node| format!("{}/api/users/{user}/presence", node.http());
    // Recorded before the welcome was sent.
    let online = json!({"user": &user, "online": true, "connections": 1});
    assert_eq!(get(&url(n1)).await, (200, online.clone()));
    assert_eq!(get(&url(n0)).await, (200, online));
    let (status, nobody) = get(&format!("{}/api/users/nobody/presence", n1.http())).await;
    assert_eq!((status, &nobody["online"]), (200, &json!(false)));

    ana.close().await;
    let offline = json!({"user": &user, "online": false, "connections": 0});
    eventually(
        "the user to go offline on the other node",
        DEADLINE,
        || async { (get(&url(n1)).await == (200, offline.clone())).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn room_presence_lists_members_of_every_node_and_redis_reports_no_local_recipients() {
    let cluster = Cluster::start(2, &[], false).await;
    let [n0, n1] = [&cluster.nodes[0], &cluster.nodes[1]];
    let mut a = Client::connect(&format!("{}/ws/chat", n0.ws())).await;
    let mut b = Client::connect(&format!("{}/ws/chat", n1.ws())).await;
    a.join("team", 1).await;
    b.join("team", 1).await;
    let mut members = vec![
        json!({"user": &a.user, "connections": 1}),
        json!({"user": &b.user, "connections": 1}),
    ];
    members.sort_by_key(|m| m["user"].as_str().unwrap().to_string());
    let expected = json!({"room": "team", "members": members});
    for node in [n0, n1] {
        let url = format!("{}/api/rooms/team/presence", node.http());
        assert_eq!(get(&url).await, (200, expected.clone()), "{}", node.id);
    }
    // With Redis, delivery follows the publish through pub/sub: no count.
    let url = format!("{}/api/rooms/team/messages", n0.http());
    let (status, reply) = post(&url, &json!({"data": 1})).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("local_recipients").is_none(), "{reply}");
    assert_eq!(a.message().await["data"], 1);
    assert_eq!(b.message().await["data"], 1);
    // Online status is off by default.
    let url = format!("{}/api/users/{}/presence", n1.http(), a.user);
    let (status, v) = get(&url).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (501, &json!("online_status_disabled"))
    );
}

/// Script calls Redis has run (`EVALSHA`, `EVAL`), from `INFO commandstats`.
fn script_calls(cluster: &Cluster) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string()])
        .args(["INFO", "commandstats"])
        .output()
        .expect("redis-cli (installed with redis-server)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Connects and disconnects `n` clients, one after the other, waiting until
/// the node counted each one closed.
async fn connect_and_leave(cluster: &Cluster, n: usize) {
    let node = &cluster.nodes[0];
    for _ in 0..n {
        let c = Client::connect(&format!("{}/ws/chat", node.ws())).await;
        c.close().await;
        eventually("the connection to end", DEADLINE, || async {
            (node.health().await["stats"]["connections"] == 0).then_some(())
        })
        .await;
    }
}

/// The measurement behind the default: with `--online-status`, every
/// connect and every disconnect is one more Redis command (a script), on
/// top of what a connection costs without it (none here: a guest that
/// joins no room runs no script).
#[tokio::test]
async fn online_status_costs_a_redis_command_per_connect_and_per_disconnect() {
    const N: usize = 10;
    let off = Cluster::start(1, &[], false).await;
    let before = script_calls(&off);
    connect_and_leave(&off, N).await;
    assert_eq!(script_calls(&off) - before, 0, "without online status");

    let on = Cluster::start(1, &["--online-status"], false).await;
    let before = script_calls(&on);
    connect_and_leave(&on, N).await;
    let calls = script_calls(&on) - before;
    eprintln!("{calls} script calls for {N} connects and disconnects with online status");
    // The refresher may touch a connected user's entry once meanwhile.
    assert!(
        (2 * N as u64..=3 * N as u64).contains(&calls),
        "{calls} script calls for {N} connects and disconnects"
    );
}

/// The binary started with `--port 0` and `env`, killed when dropped.
struct Process(std::process::Child, u16);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_with_env(env: &[(&str, &str)]) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--port", "0"])
        .env("NO_COLOR", "1")
        .env_remove("SWITCHBOARD_ONLINE_STATUS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchboard");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("a log line").expect("utf-8");
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().expect("port in the log line");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Process(child, port)
}

#[tokio::test]
async fn online_status_comes_from_the_environment_too() {
    let url = |p: &Process| format!("http://127.0.0.1:{}/api/users/ana/presence", p.1);
    let on = start_with_env(&[("SWITCHBOARD_ONLINE_STATUS", "true")]);
    let offline = json!({"user": "ana", "online": false, "connections": 0});
    assert_eq!(get(&url(&on)).await, (200, offline));
    for env in [&[][..], &[("SWITCHBOARD_ONLINE_STATUS", "false")][..]] {
        let off = start_with_env(env);
        let (status, v) = get(&url(&off)).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (501, &json!("online_status_disabled")),
            "{env:?}"
        );
    }
}
