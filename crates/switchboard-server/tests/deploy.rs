//! The deployment files under `deploy/` and the `Containerfile`, as
//! docs/deploy.md shows them: each is checked by the tool that reads it
//! (haproxy -c, nginx -t, systemd-analyze verify, kubernetes-validate),
//! its settings by `switchboard check-config`, and the facts that tie them
//! together (ports, timeouts, the user, the binary's path) are compared.
//! HAProxy is also run for real in front of two nodes on a real
//! redis-server: see `haproxy_fronts_two_nodes_on_redis_with_readiness_checks`.
//!
//! Needs haproxy, nginx, openssl, systemd-analyze, redis-server and the
//! PyPI package kubernetes-validate; `scripts/test` installs them.

mod cluster;
mod deploy_support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cluster::{Client, Cluster, DEADLINE, eventually, free_port, get, publish_api};
use deploy_support::{
    Scratch, assert_shown_in_guide, check_config, number, read, repo, run, self_signed, text, tool,
};

const HAPROXY_CFG: &str = "deploy/haproxy/switchboard.cfg";
const HAPROXY_ENV: &str = "deploy/haproxy/haproxy.env";
const NGINX_TLS: &str = "deploy/nginx/switchboard-tls.conf";
const UNIT: &str = "deploy/systemd/switchboard.service";
const UNIT_ENV: &str = "deploy/systemd/switchboard.env.example";
const K8S: [&str; 5] = [
    "deploy/k8s/configmap.yaml",
    "deploy/k8s/secret.yaml",
    "deploy/k8s/deployment.yaml",
    "deploy/k8s/service.yaml",
    "deploy/k8s/pdb.yaml",
];

// ---------------------------------------------------------------- HAProxy

fn haproxy() -> PathBuf {
    tool("haproxy", "install it with `apt-get install haproxy`")
}

/// The environment the HAProxy configuration reads its addresses from.
fn haproxy_env(http: u16, https: u16, pem: &Path, nodes: [u16; 2]) -> Vec<(String, String)> {
    vec![
        ("SWITCHBOARD_HTTP_BIND".into(), format!("127.0.0.1:{http}")),
        (
            "SWITCHBOARD_HTTPS_BIND".into(),
            format!("127.0.0.1:{https}"),
        ),
        ("SWITCHBOARD_TLS_CERT".into(), pem.display().to_string()),
        (
            "SWITCHBOARD_NODE1".into(),
            format!("127.0.0.1:{}", nodes[0]),
        ),
        (
            "SWITCHBOARD_NODE2".into(),
            format!("127.0.0.1:{}", nodes[1]),
        ),
    ]
}

/// HAProxy wants the certificate and its key in one file.
fn haproxy_pem(dir: &Scratch) -> PathBuf {
    let (cert, key) = self_signed(dir);
    let pem = dir.path("switchboard.pem");
    let both = read_abs(&cert) + &read_abs(&key);
    std::fs::write(&pem, both).expect("write the PEM");
    pem
}

fn read_abs(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The repository's HAProxy configuration, verbatim, in the foreground;
/// killed on drop.
struct HaProxy {
    child: Child,
    http: u16,
    https: u16,
    log: PathBuf,
}

impl HaProxy {
    fn start(dir: &Scratch, pem: &Path, nodes: [u16; 2]) -> HaProxy {
        let (http, https) = (free_port(), free_port());
        let log = dir.path("haproxy.log");
        let out = std::fs::File::create(&log).expect("haproxy.log");
        let err = out.try_clone().expect("haproxy.log");
        let child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(repo().join(HAPROXY_CFG))
            .envs(haproxy_env(http, https, pem, nodes))
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start haproxy");
        let mut proxy = HaProxy {
            child,
            http,
            https,
            log,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("haproxy exited with {status}:\n{}", proxy.log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "haproxy did not listen:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.http)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- haproxy:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// docs/deploy.md shows the HAProxy configuration and its environment
/// file, and `haproxy -c` accepts the configuration without a warning with
/// that environment (only the certificate is the test's).
#[test]
fn the_haproxy_config_is_valid_and_shown_in_the_guide() {
    assert_shown_in_guide(HAPROXY_CFG);
    assert_shown_in_guide(HAPROXY_ENV);
    let mut env = env_file(&read(HAPROXY_ENV));
    assert_eq!(env["CONFIG"], "/etc/haproxy/switchboard.cfg");
    let dir = Scratch::new("haproxy-c");
    let pem = haproxy_pem(&dir);
    env.insert("SWITCHBOARD_TLS_CERT".into(), pem.display().to_string());
    let out = run(Command::new(haproxy())
        .arg("-c")
        .arg("-f")
        .arg(repo().join(HAPROXY_CFG))
        .envs(&env));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Configuration file is valid"), "{all}");
    assert!(!all.contains("WARNING") && !all.contains("ALERT"), "{all}");
}

/// Status and body of a GET through TLS (openssl s_client, verifying the
/// test's certificate for `localhost`).
fn get_over_tls(port: u16, ca: &Path, path: &str) -> String {
    let openssl = tool("openssl", "install it with `apt-get install openssl`");
    let mut child = Command::new(openssl)
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.as_bytes())
        .expect("send the request");
    let start = Instant::now();
    while child.try_wait().expect("s_client").is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("s_client output");
    let response = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        response.starts_with("HTTP/1.1 "),
        "no HTTP response over TLS: {}",
        text(&out)
    );
    response
}

/// The repository's HAProxy configuration in front of two nodes on one
/// redis-server: round-robin over both, WebSockets through it get what is
/// published on the other node, TLS is terminated with the test's
/// certificate, the client's X-Forwarded-For is replaced, the log holds no
/// token, and the readiness check takes both nodes out while Redis is down
/// (while `/health` still answers 200) and back in after, with the open
/// WebSockets kept.
#[tokio::test]
async fn haproxy_fronts_two_nodes_on_redis_with_readiness_checks() {
    let mut cluster = Cluster::start(2, &[], false).await;
    let dir = Scratch::new("haproxy-run");
    let pem = haproxy_pem(&dir);
    let ports = [cluster.nodes[0].port, cluster.nodes[1].port];
    let proxy = HaProxy::start(&dir, &pem, ports);
    let all: HashSet<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();

    // Round-robin: two requests, two nodes; over TLS too.
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let (status, health) = get(&format!("{}/health", proxy.http())).await;
        assert_eq!(status, 200, "{health}");
        seen.insert(health["node"].as_str().expect("node").to_string());
    }
    assert_eq!(seen, all);
    let tls = get_over_tls(proxy.https, &dir.path("cert.pem"), "/health/ready");
    assert!(tls.starts_with("HTTP/1.1 200"), "{tls}");
    assert!(tls.contains(r#""status":"ready""#), "{tls}");

    // Two WebSockets through HAProxy, one per node; each gets what is
    // published through the other node's API.
    let url = format!("{}/ws/chat?token=do-not-log-me", proxy.ws());
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    assert_ne!(a.node, b.node, "round-robin");
    let epoch = a.join("deploy", 1).await["epoch"].clone();
    b.join("deploy", 1).await;
    let other = |c: &Client| {
        let i = usize::from(cluster.nodes[0].id == c.node);
        cluster.nodes[i].http()
    };
    publish_api(&other(&a), "deploy", json!("to a")).await;
    assert_eq!(a.message().await["data"], "to a");
    assert_eq!(b.message().await["data"], "to a");
    let ack = b.publish("deploy", json!("from b"), 2).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(a.message().await["data"], "from b");
    assert_eq!(b.message().await["data"], "from b");

    // A forged X-Forwarded-For is replaced by the client's address: a
    // loopback client may use the keyless API through HAProxy, while the
    // same header sent straight to a node (a trusted proxy's address) names
    // a remote client, who may not.
    let forged = |base: String| {
        reqwest::Client::new()
            .post(format!("{base}/api/rooms/deploy/messages"))
            .header("x-forwarded-for", "203.0.113.9")
            .body(r#"{"data":"forged"}"#)
            .send()
    };
    assert_eq!(forged(proxy.http()).await.unwrap().status(), 200);
    assert_eq!(forged(cluster.nodes[0].http()).await.unwrap().status(), 403);
    for c in [&mut a, &mut b] {
        assert_eq!(c.message().await["data"], "forged");
    }

    // Redis down: both nodes answer /health (200, degraded) but not
    // /health/ready, and HAProxy takes both out: 503 from HAProxy itself.
    cluster.redis.kill();
    let wait = Duration::from_secs(20);
    eventually("HAProxy to take both nodes out", wait, || async {
        let (status, _) = get(&format!("{}/health", proxy.http())).await;
        (status == 503).then_some(())
    })
    .await;
    for node in &cluster.nodes {
        let health = node.health().await;
        assert_eq!(health["status"], "degraded", "{health}");
    }
    cluster.redis.restart();
    eventually("HAProxy to take the nodes back", wait, || async {
        let mut back = HashSet::new();
        for _ in 0..4 {
            let (status, health) = get(&format!("{}/health", proxy.http())).await;
            if status == 200 {
                back.insert(health["node"].as_str().unwrap_or_default().to_string());
            }
        }
        (back == all).then_some(())
    })
    .await;
    // This Redis kept nothing: the room starts a new epoch under the
    // WebSockets opened before the outage, and their nodes send them to
    // recover (4005). Back through HAProxy, a rejoin with their position is
    // told of the new epoch and given its message.
    publish_api(&other(&b), "deploy", json!("after")).await;
    assert_eq!(a.closed().await, 4005);
    assert_eq!(b.closed().await, 4005);
    for id in [7, 8] {
        let mut c = Client::connect(&url).await;
        c.send(json!({"type": "join", "room": "deploy", "id": id,
            "since": {"offset": 3, "epoch": epoch}, "replay_new_epoch": true}))
            .await;
        let reset = c.reply(id).await;
        assert_eq!(reset["type"], "reset", "{reset}");
        assert_eq!(c.message().await["data"], "after");
        c.close().await;
    }
    // HAProxy logs a WebSocket when it ends: path, no query string.
    let log = eventually("the WebSockets in HAProxy's log", DEADLINE, || {
        let log = proxy.log();
        async move { (log.matches("GET /ws/chat").count() >= 2).then_some(log) }
    })
    .await;
    assert!(!log.contains("do-not-log-me"), "{log}");
    assert!(
        log.contains("switchboard/node1") && log.contains("switchboard/node2"),
        "{log}"
    );
}

// ---------------------------------------------------------------- nginx

/// The TLS variant of the nginx configuration passes `nginx -t` with a
/// test-made certificate, included in an http block as it would be in
/// /etc/nginx/conf.d. Only its two directories are moved into a temp dir:
/// /etc/ssl/switchboard/ (certificate and key) and /var/log/nginx/.
#[test]
fn the_nginx_tls_config_passes_nginx_t() {
    assert_shown_in_guide(NGINX_TLS);
    let dir = Scratch::new("nginx-t");
    let (cert, key) = self_signed(&dir);
    std::fs::rename(cert, dir.path("fullchain.pem")).unwrap();
    std::fs::rename(key, dir.path("privkey.pem")).unwrap();
    let here = format!("{}/", dir.0.display());
    let site = read(NGINX_TLS);
    assert!(site.contains("ssl_certificate /etc/ssl/switchboard/fullchain.pem;"));
    let site = site
        .replace("/etc/ssl/switchboard/", &here)
        .replace("/var/log/nginx/", &here);
    std::fs::write(dir.path("site.conf"), site).unwrap();
    let main = format!(
        "pid {here}nginx.pid;\nerror_log {here}error.log;\nevents {{}}\nhttp {{\n    include {here}site.conf;\n}}\n"
    );
    std::fs::write(dir.path("nginx.conf"), main).unwrap();
    let nginx = tool("nginx", "install it with `apt-get install nginx`");
    let out = run(Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(dir.path("nginx.conf"))
        .arg("-e")
        .arg(dir.path("error.log")));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("test is successful"), "{all}");
    assert!(!all.contains("[warn]"), "{all}");
}

// ---------------------------------------------------------------- systemd

/// `Key=value` lines of a unit, in order (comments and sections left out).
fn unit_entries(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unit_value(entries: &[(String, String)], key: &str) -> String {
    entries
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// `NAME=value` lines of an environment file.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The systemd unit passes `systemd-analyze verify` as it is (in an
/// alternate root that holds the binary at its ExecStart path and the
/// system's own units), with no complaint at all; `systemd-analyze
/// security` rates it "OK" or better; systemd waits longer than the
/// drain; and its settings with the example environment file are valid.
#[test]
fn the_systemd_unit_verifies_and_outlasts_the_drain() {
    assert_shown_in_guide(UNIT);
    assert_shown_in_guide(UNIT_ENV);
    let unit = read(UNIT);
    let entries = unit_entries(&unit);

    let root = Scratch::new("systemd-root");
    let exec = unit_value(&entries, "ExecStart");
    assert_eq!(exec, "/usr/local/bin/switchboard");
    let bin = root.path(exec.trim_start_matches('/'));
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    if std::fs::hard_link(env!("CARGO_BIN_EXE_switchboard"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_switchboard"), &bin).unwrap();
    }
    let units = root.path("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("switchboard.service"), &unit).unwrap();
    let system = Path::new("/usr/lib/systemd/system");
    assert!(
        system.join("sysinit.target").is_file(),
        "systemd's units are missing: install them with `apt-get install systemd`"
    );
    std::fs::create_dir_all(root.path("usr/lib/systemd")).unwrap();
    let out = run(Command::new("cp")
        .arg("-a")
        .arg(system)
        .arg(root.path("usr/lib/systemd/")));
    assert!(out.status.success(), "{}", text(&out));
    let analyze = tool(
        "systemd-analyze",
        "install it with `apt-get install systemd`",
    );
    let out = run(Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", root.0.display()))
        .args(["--man=no", "--generators=no", "switchboard.service"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify complained: {}",
        text(&out)
    );
    // Exposure 2.0 or lower ("OK" in systemd's words).
    let out = run(Command::new(&analyze)
        .arg("security")
        .arg(format!("--root={}", root.0.display()))
        .args(["--offline=yes", "--threshold=20", "switchboard.service"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" OK "),
        "{}",
        text(&out)
    );

    // The settings: the unit's Environment= lines, then the env file's.
    let mut env: BTreeMap<String, String> = entries
        .iter()
        .filter(|(k, _)| k == "Environment")
        .filter_map(|(_, v)| v.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        unit_value(&entries, "EnvironmentFile"),
        "/etc/switchboard/switchboard.env"
    );
    env.extend(env_file(&read(UNIT_ENV)));
    let settings = check_config(&env);
    let drain = number(&settings, "shutdown_timeout");
    assert!(number(&settings, "shutdown_spread") <= drain);
    let stop = unit_value(&entries, "TimeoutStopSec");
    let stop: f64 = stop
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={stop}"));
    assert!(
        stop > drain + 5.0,
        "TimeoutStopSec={stop} for a drain of {drain} s"
    );
    assert_eq!(unit_value(&entries, "KillSignal"), "SIGTERM");
    assert_eq!(unit_value(&entries, "Restart"), "on-failure");
    let nofile: u64 = unit_value(&entries, "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 100_000, "LimitNOFILE={nofile}");
}

// ---------------------------------------------------------------- container

/// The Containerfile's instructions, continuation lines joined.
fn instructions(file: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in file.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The `FROM` images with the defaults of the `ARG`s before the first
/// `FROM` put in for `${NAME}`, as a build without `--build-arg` sees them.
fn base_images(ins: &[(String, String)]) -> Vec<String> {
    let mut args = BTreeMap::new();
    for (op, rest) in ins.iter().take_while(|(op, _)| op != "FROM") {
        assert_eq!(op, "ARG", "only ARG comes before the first FROM");
        let (name, default) = rest.split_once('=').expect("ARG NAME=default");
        args.insert(format!("${{{name}}}"), default.to_string());
    }
    all_of(ins, "FROM")
        .into_iter()
        .map(|from| {
            args.iter()
                .fold(from.to_string(), |f, (name, value)| f.replace(name, value))
        })
        .collect()
}

fn all_of<'a>(ins: &'a [(String, String)], op: &str) -> Vec<&'a str> {
    ins.iter()
        .filter(|(o, _)| o == op)
        .map(|(_, a)| a.as_str())
        .collect()
}

/// A `key = "value"` of a Cargo.toml.
fn manifest_value(manifest: &str, key: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
        .to_string()
}

/// What matters in the Containerfile, read and compared with the
/// workspace (`scripts/container-test` builds and runs it with podman).
/// The build stage's default image has the workspace's rust-version, and
/// it builds the server's package; the binary copied and run is the
/// crate's binary; the image runs as the non-root user it creates; EXPOSE
/// is the server's default port and the one it is told to use; the health
/// check asks /health on it; SIGTERM stops it; its settings are valid.
#[test]
fn the_containerfile_builds_the_server_and_runs_it_unprivileged() {
    assert_shown_in_guide("Containerfile");
    let ins = instructions(&read("Containerfile"));
    let workspace = read("Cargo.toml");
    let server = read("crates/switchboard-server/Cargo.toml");
    let package = manifest_value(&server, "name");
    let bin = server
        .split("[[bin]]")
        .nth(1)
        .map(|b| manifest_value(b, "name"))
        .expect("a [[bin]] section");

    let froms = base_images(&ins);
    assert_eq!(froms.len(), 2, "{froms:?}");
    let rust = manifest_value(&workspace, "rust-version");
    assert_eq!(
        froms[0],
        format!("docker.io/library/rust:{rust}-slim-bookworm AS build")
    );
    assert!(
        froms[1].starts_with("docker.io/library/debian:") && froms[1].ends_with("-slim"),
        "{froms:?}"
    );
    let runs = all_of(&ins, "RUN");
    assert!(
        runs.iter()
            .any(|r| r.contains(&format!("cargo build --release --locked -p {package}"))),
        "{runs:?}"
    );
    let installed = format!("/usr/local/bin/{bin}");
    assert_eq!(
        all_of(&ins, "COPY"),
        [
            ". .".to_string(),
            format!("--from=build /src/target/release/{bin} {installed}")
        ]
    );
    assert_eq!(all_of(&ins, "ENTRYPOINT"), [format!("[\"{installed}\"]")]);

    // The user: created with a fixed uid, and not root.
    let user = all_of(&ins, "USER");
    assert_eq!(user.len(), 1, "{user:?}");
    let (uid, gid) = user[0].split_once(':').expect("USER uid:gid");
    assert!(uid != "0" && uid != "root" && gid != "0", "{user:?}");
    assert!(
        runs.iter()
            .any(|r| r.contains(&format!("groupadd --system --gid {gid} "))
                && r.contains(&format!("useradd --system --uid {uid} --gid {gid} "))),
        "{runs:?}"
    );

    // Its settings, the port it listens on and the one it exposes.
    let mut env = BTreeMap::new();
    for args in all_of(&ins, "ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV NAME=value");
            env.insert(k.to_string(), v.to_string());
        }
    }
    let settings = check_config(&env);
    let defaults = check_config(&BTreeMap::new());
    let port = &settings["port"];
    assert_eq!(port, &defaults["port"], "the image keeps the default port");
    assert_eq!(all_of(&ins, "EXPOSE"), [port.as_str()]);
    assert_eq!(settings["host"], "0.0.0.0");
    assert!(number(&settings, "shutdown_spread") <= number(&settings, "shutdown_timeout"));
    assert_eq!(all_of(&ins, "STOPSIGNAL"), ["SIGTERM"]);
    let health = all_of(&ins, "HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].contains("CMD curl -fsS -o /dev/null \"http://127.0.0.1:${PORT}/health\""),
        "{health:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("install -y --no-install-recommends curl"))
    );
    // The build context leaves out what would make it huge.
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

// ---------------------------------------------------------------- Kubernetes

/// `kubernetes-validate`: $KUBERNETES_VALIDATE, on PATH, or in the venv
/// `scripts/test` makes under the target dir.
fn kubernetes_validate() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBERNETES_VALIDATE") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("deploy-venv/bin/kubernetes-validate");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubernetes-validate"))
        .chain([venv])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate not found: `python3 -m venv target/deploy-venv && \
                 target/deploy-venv/bin/pip install kubernetes-validate` (scripts/test does), \
                 or set KUBERNETES_VALIDATE to its path"
            )
        })
}

/// The manifests as JSON, parsed by the validator's own Python (which has
/// PyYAML, a dependency of kubernetes-validate).
fn manifests(validator: &Path) -> BTreeMap<String, Value> {
    let python = validator.with_file_name("python3");
    let python = if python.is_file() {
        python
    } else {
        PathBuf::from("python3")
    };
    let script = "import json, sys, yaml\n\
                  print(json.dumps([yaml.safe_load(open(f)) for f in sys.argv[1:]]))";
    let out = run(Command::new(python)
        .args(["-c", script])
        .args(K8S.iter().map(|f| repo().join(f))));
    assert!(out.status.success(), "{}", text(&out));
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    docs.into_iter()
        .map(|d| (d["kind"].as_str().expect("kind").to_string(), d))
        .collect()
}

/// The Kubernetes manifests validate, strictly, against the schemas of
/// Kubernetes 1.37 bundled with kubernetes-validate, and fit together: the
/// probes ask /health/ready and /health on the container's port, which is
/// the port the ConfigMap sets; the grace period outlasts the preStop pause
/// and the drain; the Service and the PodDisruptionBudget select the pods;
/// the pods run as the image's user; the settings are valid.
#[test]
fn the_kubernetes_manifests_validate_and_fit_together() {
    for file in K8S {
        assert_shown_in_guide(file);
    }
    let validator = kubernetes_validate();
    let out = run(Command::new(&validator)
        .arg("--strict")
        .args(K8S.iter().map(|f| repo().join(f))));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(
        all.matches(" passed for resource ").count(),
        K8S.len(),
        "{all}"
    );
    assert!(!all.contains("WARN") && !all.contains("ERROR"), "{all}");

    let m = manifests(&validator);
    let (config, secret) = (&m["ConfigMap"]["data"], &m["Secret"]["stringData"]);
    let mut env = BTreeMap::new();
    for source in [config, secret] {
        for (k, v) in source.as_object().expect("a map") {
            env.insert(k.clone(), v.as_str().expect("a string").to_string());
        }
    }
    let settings = check_config(&env);

    let pod = &m["Deployment"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = &container["ports"][0];
    assert_eq!(port["containerPort"].to_string(), settings["port"]);
    assert_eq!(settings["host"], "0.0.0.0");
    let probe = |name: &str| &container[name]["httpGet"];
    assert_eq!(probe("readinessProbe")["path"], "/health/ready");
    assert_eq!(probe("livenessProbe")["path"], "/health");
    for name in ["readinessProbe", "livenessProbe"] {
        assert_eq!(probe(name)["port"], port["name"], "{name}");
    }
    let env_from = &container["envFrom"];
    assert_eq!(
        env_from[0]["configMapRef"]["name"],
        m["ConfigMap"]["metadata"]["name"]
    );
    assert_eq!(
        env_from[1]["secretRef"]["name"],
        m["Secret"]["metadata"]["name"]
    );
    assert_eq!(pod["enableServiceLinks"], false);

    let pre_stop = &container["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(pre_stop[0], "sleep");
    let pause: f64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    let drain = number(&settings, "shutdown_timeout");
    assert!(number(&settings, "shutdown_spread") <= drain);
    assert!(
        grace > pause + drain,
        "grace {grace} s for a pause of {pause} s and a drain of {drain} s"
    );

    let selector = &m["Deployment"]["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &m["Deployment"]["spec"]["template"]["metadata"]["labels"],
        selector
    );
    assert_eq!(&m["Service"]["spec"]["selector"], selector);
    assert_eq!(
        &m["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        selector
    );
    assert_eq!(m["Service"]["spec"]["ports"][0]["targetPort"], port["name"]);

    // The image's user (Containerfile: USER uid:gid).
    let ins = instructions(&read("Containerfile"));
    let user = all_of(&ins, "USER")[0].to_string();
    let security = &pod["securityContext"];
    assert_eq!(
        format!("{}:{}", security["runAsUser"], security["runAsGroup"]),
        user
    );
    assert_eq!(security["runAsNonRoot"], true);
    assert!(container["resources"]["requests"].is_object());
}
