//! Soak: mixed traffic with churn for a long while (30 minutes by default;
//! its own command, `scripts/chaos soak [MINUTES]`), then a check that
//! nothing was left behind. Three nodes with JWT auth and online status
//! on one Redis behind nginx; a steady population of long-lived clients,
//! churners that come and go and end in every way a client ends, and the
//! backend's traffic on the HTTP API (see [`crate::soak`]).
//!
//! Resident memory of the nodes is read after a warm-up, in the middle and
//! at the end (traffic still on), and once everyone is gone. Then, after a
//! settle period longer than any server-side grace, every node's sessions,
//! rooms, users and presence entries, the presence entries in Redis and
//! the users the presence API calls online must all be zero.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Outcome;
use crate::cluster::{Cluster, proc_cpu_time};
use crate::soak::api::{self, ApiConfig};
use crate::soak::churn::{self, ChurnConfig};
use crate::soak::leaks::{self, NodeGauges, RedisPresence};
use crate::soak::steady::{self, SteadyConfig};
use crate::soak::tally::{Tally, kind};
use crate::soak::{World, token::Minter};

/// How long the clients may take to finish once told to stop.
const WIND_DOWN: Duration = Duration::from_secs(120);

/// The most the nodes' memory may grow from the middle of the run to its
/// end before the growth counts as unbounded (see `docs/reliability.md`).
pub const MAX_GROWTH: f64 = 1.5;

/// The soak's size and pace.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The `switchboard` binary to run.
    pub binary: PathBuf,
    /// How long the traffic runs.
    pub duration: Duration,
    /// Traffic before the first memory reading.
    pub warmup: Duration,
    /// How long after the last client is gone the leaks are read.
    pub settle: Duration,
    /// Long-lived clients.
    pub steady: usize,
    /// Their users (fewer than clients: some have two tabs).
    pub steady_users: usize,
    /// Users only churners have.
    pub churn_users: usize,
    /// Rooms.
    pub rooms: usize,
    /// How the long-lived clients behave.
    pub steady_config: SteadyConfig,
    /// How the churners come and go.
    pub churn: ChurnConfig,
    /// The backend's traffic.
    pub api: ApiConfig,
    /// More flags for every node.
    pub node_args: Vec<String>,
}

impl SoakOptions {
    /// The full soak, `minutes` long: 300 long-lived clients that each
    /// publish or read presence every 5 to 20 s, six new churners a second
    /// that stay 2 to 30 s, and the backend sending 10 room and 10 user
    /// messages a second and a broadcast every 2 s.
    pub fn full(binary: PathBuf, minutes: u64) -> SoakOptions {
        let duration = Duration::from_secs(minutes * 60);
        SoakOptions {
            binary,
            duration,
            warmup: (duration / 10).min(Duration::from_secs(60)),
            settle: Duration::from_secs(12),
            steady: 300,
            steady_users: 200,
            churn_users: 300,
            rooms: 24,
            steady_config: SteadyConfig {
                every: (Duration::from_secs(5), Duration::from_secs(20)),
            },
            churn: ChurnConfig {
                rate: 6.0,
                life: (Duration::from_secs(2), Duration::from_secs(30)),
                resumed_life: (Duration::from_secs(1), Duration::from_secs(10)),
            },
            api: ApiConfig {
                room_rate: 10.0,
                user_rate: 10.0,
                broadcast_every: Duration::from_secs(2),
                presence_every: Duration::from_secs(2),
            },
            node_args: Vec::new(),
        }
    }

    /// A 20-second soak for the test suite: 60 long-lived clients, five
    /// churners a second that stay under 3 s, a faster pace, and a 2 s
    /// heartbeat so that pings and pongs happen within the run.
    pub fn reduced(binary: PathBuf) -> SoakOptions {
        SoakOptions {
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            settle: Duration::from_secs(8),
            steady: 60,
            steady_users: 40,
            churn_users: 40,
            rooms: 6,
            steady_config: SteadyConfig {
                every: (Duration::from_secs(1), Duration::from_secs(4)),
            },
            churn: ChurnConfig {
                rate: 5.0,
                life: (Duration::from_millis(300), Duration::from_secs(3)),
                resumed_life: (Duration::from_millis(200), Duration::from_secs(1)),
            },
            api: ApiConfig {
                room_rate: 5.0,
                user_rate: 5.0,
                broadcast_every: Duration::from_secs(1),
                presence_every: Duration::from_millis(500),
            },
            node_args: ["--heartbeat-interval", "2", "--heartbeat-timeout", "2"]
                .map(String::from)
                .to_vec(),
            ..SoakOptions::full(binary, 1)
        }
    }
}

/// Runs the scenario.
pub async fn run(opts: &SoakOptions) -> Outcome {
    match run_inner(opts).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::failed("soak", why),
    }
}

/// The nodes' resident memory, summed, in KiB.
fn rss(cluster: &Cluster) -> u64 {
    cluster.nodes().map(|n| n.rss_kib()).sum()
}

/// CPU time used so far: the nodes, nginx (master and workers), and this
/// process.
fn cpu(cluster: &Cluster) -> [Duration; 3] {
    let nodes = cluster.nodes().map(|n| n.cpu_time()).sum();
    let nginx = cluster
        .nginx
        .as_ref()
        .and_then(|n| std::fs::read_to_string(n.dir.join("nginx.pid")).ok())
        .and_then(|pid| pid.trim().parse().ok())
        .map_or(Duration::ZERO, process_tree_cpu);
    [nodes, nginx, proc_cpu_time(std::process::id())]
}

/// CPU time of a process and its children.
fn process_tree_cpu(pid: u32) -> Duration {
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        });
    children.map(proc_cpu_time).sum::<Duration>() + proc_cpu_time(pid)
}

/// What is left after everyone left.
#[derive(Debug, Default, Clone, Copy)]
struct Left {
    nodes: NodeGauges,
    redis: RedisPresence,
    online: u64,
}

impl Left {
    fn nothing(&self) -> bool {
        let n = &self.nodes;
        n.sessions
            + n.rooms
            + n.users
            + n.presence
            + self.redis.entries
            + self.redis.keys
            + self.online
            == 0
    }
}

async fn read_left(cluster: &Cluster, users: &[String]) -> Result<Left, String> {
    let mut left = Left::default();
    for node in cluster.nodes() {
        left.nodes += leaks::node_gauges(node.port).await?;
    }
    left.redis = leaks::redis_presence(cluster.redis.port()).await?;
    if !users.is_empty() {
        left.online = leaks::online_users(cluster.node(0).port, users).await?;
    }
    Ok(left)
}

/// Reads what is left until it is nothing (noting when) and on until
/// `settle` has passed; the last reading counts.
async fn settle(
    cluster: &Cluster,
    settle: Duration,
    users: &[String],
) -> Result<(Left, Option<Duration>), String> {
    let start = Instant::now();
    let mut nothing_after = None;
    while start.elapsed() < settle {
        if nothing_after.is_none() && read_left(cluster, &[]).await?.nothing() {
            nothing_after = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((read_left(cluster, users).await?, nothing_after))
}

fn minutes(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

async fn run_inner(opts: &SoakOptions) -> Result<Outcome, String> {
    let minter = Minter::new(opts.duration + Duration::from_secs(3600));
    let mut args: Vec<&str> = vec!["--jwt-secret", minter.secret(), "--online-status"];
    args.extend(opts.node_args.iter().map(String::as_str));
    let connections = opts.steady + 1000;
    let cluster = Cluster::start(&opts.binary, 3, &args, connections).await?;
    let world = Arc::new(World {
        base: format!("ws://127.0.0.1:{}", cluster.nginx_port()),
        api_ports: cluster.nodes().map(|n| n.port).collect(),
        minter,
        rooms: (0..opts.rooms).map(|i| format!("soak-room-{i}")).collect(),
        steady_users: (0..opts.steady_users)
            .map(|i| format!("soak-s{i}"))
            .collect(),
        churn_users: (0..opts.churn_users)
            .map(|i| format!("soak-c{i}"))
            .collect(),
        tally: Arc::new(Tally::default()),
    });
    let tally = world.tally.clone();
    let (stop_tx, stop) = watch::channel(false);

    // The long-lived population, in place before the traffic starts.
    let ready = Arc::new(AtomicUsize::new(0));
    let mut population = JoinSet::new();
    for i in 0..opts.steady {
        let user = world.steady_users[i % world.steady_users.len()].clone();
        population.spawn(steady::run(
            world.clone(),
            i,
            user,
            opts.steady_config,
            ready.clone(),
            stop.clone(),
        ));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < opts.steady {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} long-lived clients were in place after 60 s",
                ready.load(Ordering::Relaxed),
                opts.steady
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = tokio::time::Instant::now();
    let backend = tokio::spawn(api::run(world.clone(), opts.api, stop.clone()));
    let churners = tokio::spawn(churn::spawn(world.clone(), opts.churn, stop.clone()));
    tokio::time::sleep_until(started + opts.warmup).await;
    let rss_start = rss(&cluster);
    let cpu_start = cpu(&cluster);
    let measured_from = Instant::now();
    tokio::time::sleep_until(started + opts.duration / 2).await;
    let rss_mid = rss(&cluster);
    tokio::time::sleep_until(started + opts.duration).await;
    let rss_end = rss(&cluster);
    let cpu_end = cpu(&cluster);
    let measured = measured_from.elapsed().as_secs_f64().max(0.001);

    // Everyone ends: the backend stops, churners cut their stay short,
    // the long-lived clients wait for their replies and go.
    let _ = stop_tx.send(true);
    let wound_down = tokio::time::timeout(WIND_DOWN, async {
        let _ = backend.await;
        if let Ok(churners) = churners.await {
            churners.join_all().await;
        }
        population.join_all().await;
    })
    .await;
    if wound_down.is_err() {
        return Err(format!("the clients did not finish within {WIND_DOWN:?}"));
    }

    let users: Vec<String> = world
        .steady_users
        .iter()
        .chain(&world.churn_users)
        .cloned()
        .collect();
    let (left, nothing_after) = settle(&cluster, opts.settle, &users).await?;
    let rss_after = rss(&cluster);
    let growth = rss_end as f64 / rss_mid.max(1) as f64;

    let get = Tally::get;
    let opened = get(&tally.opened);
    let closed_by_server = tally.problems_of(kind::UNEXPECTED_CLOSE);
    let closed = get(&tally.closed_clean) + get(&tally.dropped) + closed_by_server;
    let client = get(&tally.client_acks);
    let published =
        get(&tally.api_rooms) + get(&tally.api_users) + get(&tally.api_broadcasts) + client;
    let cores = |i: usize| (cpu_end[i] - cpu_start[i]).as_secs_f64() / measured;
    let problem_kinds = [
        kind::FAILED_CONNECT,
        kind::FAILED_PUBLISH,
        kind::ERROR_FRAME,
        kind::UNEXPECTED_CLOSE,
        kind::HOLE,
        kind::NOT_RECOVERED,
        kind::NO_REPLY,
        kind::UNEXPECTED_FRAME,
        kind::FAILED_READ,
    ];
    let problem_figures: Vec<String> = problem_kinds
        .iter()
        .map(|k| format!("{k}={}", tally.problems_of(k)))
        .collect();
    let n = &left.nodes;
    let leaked_presence = n.presence + left.redis.entries;
    let line = format!(
        "soak: duration={} steady_clients={} churners={} opened={opened} closed={closed} \
         (clean={} dropped={} by_server={closed_by_server}) resumed={} server_accepted={} \
         published={published} (rooms={} users={} broadcasts={} client_acked={client}) \
         delivered={} (replayed={}) presence_events={} presence_reads={} expected_errors={} {} \
         rss_kib start={rss_start} mid={rss_mid} end={rss_end} after={rss_after} \
         growth_mid_end={growth:.2} cpu_cores nodes={:.2} nginx={:.2} tool={:.2} \
         leaked_sessions={} leaked_rooms={} leaked_users={} leaked_presence={leaked_presence} \
         redis_presence_keys={} online_after={} settled_after={}",
        minutes(opts.duration),
        opts.steady,
        get(&tally.churners),
        get(&tally.closed_clean),
        get(&tally.dropped),
        get(&tally.resumed),
        n.accepted,
        get(&tally.api_rooms),
        get(&tally.api_users),
        get(&tally.api_broadcasts),
        get(&tally.delivered),
        get(&tally.replayed),
        get(&tally.presence_events),
        get(&tally.api_presence) + get(&tally.presence_replies),
        get(&tally.expected_errors),
        problem_figures.join(" "),
        cores(0),
        cores(1),
        cores(2),
        n.sessions,
        n.rooms,
        n.users,
        left.redis.keys,
        left.online,
        nothing_after.map_or("never".to_string(), crate::stream::secs),
    );
    let mut checks: Vec<(bool, String)> = tally
        .problems()
        .into_iter()
        .map(|(kind, count, samples)| (false, format!("{kind}={count}: {}", samples.join(" | "))))
        .collect();
    checks.extend([
        (
            n.sessions == 0,
            format!("{} sessions left on the nodes", n.sessions),
        ),
        (n.rooms == 0, format!("{} rooms left on the nodes", n.rooms)),
        (n.users == 0, format!("{} users left on the nodes", n.users)),
        (
            leaked_presence == 0 && left.redis.keys == 0,
            format!(
                "presence left: {} entries on the nodes, {} in Redis in {} keys",
                n.presence, left.redis.entries, left.redis.keys
            ),
        ),
        (
            left.online == 0,
            format!("{} users still online", left.online),
        ),
        (
            opened == closed,
            format!("{opened} connections opened, {closed} ended"),
        ),
        (
            n.accepted == opened,
            format!(
                "the nodes accepted {} connections, the clients opened {opened}",
                n.accepted
            ),
        ),
        // The run must have done what it claims.
        (
            get(&tally.churners) > 0
                && get(&tally.resumed) > 0
                && get(&tally.dropped) > 0
                && get(&tally.closed_clean) > 0
                && get(&tally.expected_errors) > 0
                && client > 0
                && get(&tally.delivered) > 0,
            "the run did not churn, resume, drop, close, publish and deliver".into(),
        ),
    ]);
    let targets = [(
        growth <= MAX_GROWTH,
        format!("memory grew {growth:.2}x from the middle to the end"),
    )];
    let outcome = Outcome::new(line, &checks).with_targets(&targets);
    if !outcome.ok {
        eprintln!("soak: cluster logs:\n{}", cluster.logs());
    }
    Ok(outcome)
}
