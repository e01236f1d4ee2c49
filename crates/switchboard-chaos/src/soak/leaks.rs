//! What is left once every client is gone: each node's gauges (scraped
//! from `/metrics` on the node's port, from loopback), the presence
//! entries in Redis (read with a minimal RESP client), and who the
//! presence API still calls online. After everyone left, all of it must be
//! zero. User-stream and room history keys stay in Redis by design
//! (recovery needs them) and are not counted.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::http;

/// One node's gauges, from `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NodeGauges {
    /// `switchboard_connections`, every endpoint: open sessions.
    pub sessions: u64,
    /// `switchboard_rooms`.
    pub rooms: u64,
    /// `switchboard_users`.
    pub users: u64,
    /// `switchboard_presence_entries`.
    pub presence: u64,
    /// `switchboard_connections_accepted_total`, every endpoint.
    pub accepted: u64,
}

impl std::ops::AddAssign for NodeGauges {
    fn add_assign(&mut self, o: NodeGauges) {
        self.sessions += o.sessions;
        self.rooms += o.rooms;
        self.users += o.users;
        self.presence += o.presence;
        self.accepted += o.accepted;
    }
}

/// Reads a node's gauges from its `/metrics`.
pub async fn node_gauges(port: u16) -> Result<NodeGauges, String> {
    let (status, text) = http::get(port, "/metrics")
        .await
        .map_err(|e| format!("GET /metrics on {port}: {e}"))?;
    if status != 200 {
        return Err(format!("GET /metrics on {port}: {status} {text}"));
    }
    parse_gauges(&text).map_err(|e| format!("/metrics on {port}: {e}"))
}

/// The gauges in an exposition; a missing one is an error (a renamed
/// metric must not read as zero).
fn parse_gauges(text: &str) -> Result<NodeGauges, String> {
    let sum = |name: &str| -> Option<u64> {
        let mut found = false;
        let mut total = 0.0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            // `name value` or `name{labels} value`, not a longer name.
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            total += value;
            found = true;
        }
        found.then_some(total as u64)
    };
    let get = |name: &str| sum(name).ok_or_else(|| format!("no {name}"));
    Ok(NodeGauges {
        sessions: get("switchboard_connections")?,
        rooms: get("switchboard_rooms")?,
        users: get("switchboard_users")?,
        presence: get("switchboard_presence_entries")?,
        accepted: get("switchboard_connections_accepted_total")?,
    })
}

/// Presence left in Redis: the per-node hashes of room (and online)
/// entries, `sb:members:<instance>:<room>`, and the per-room indexes of
/// the nodes that have entries, `sb:member-nodes:<room>`
/// (`crates/switchboard-redis/src/presence.rs`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedisPresence {
    /// Entries (connection → user) in every members hash.
    pub entries: u64,
    /// Members hashes and member-nodes indexes still there.
    pub keys: u64,
}

/// Reads what presence Redis on `port` holds.
pub async fn redis_presence(port: u16) -> Result<RedisPresence, String> {
    let mut redis = Resp::connect(port)
        .await
        .map_err(|e| format!("redis on {port}: {e}"))?;
    let mut found = RedisPresence::default();
    for pattern in ["sb:members:*", "sb:member-nodes:*"] {
        let keys = redis
            .scan(pattern)
            .await
            .map_err(|e| format!("SCAN {pattern}: {e}"))?;
        found.keys += keys.len() as u64;
        if pattern == "sb:members:*" {
            for key in keys {
                let n = redis
                    .command(&["HLEN", &key])
                    .await
                    .map_err(|e| format!("HLEN {key}: {e}"))?;
                found.entries += n.int().unwrap_or(0);
            }
        }
    }
    Ok(found)
}

/// How many of `users` the presence API (`GET /api/users/{user}/presence`
/// on the node on `port`) calls online.
pub async fn online_users(port: u16, users: &[String]) -> Result<u64, String> {
    let mut online = 0;
    for user in users {
        let path = format!("/api/users/{user}/presence");
        let (status, body) = http::get(port, &path)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        let reply: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))?;
        if reply["online"] != false {
            online += 1;
        }
    }
    Ok(online)
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    fn int(&self) -> Option<u64> {
        match self {
            Reply::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// A minimal RESP2 client: one command at a time.
struct Resp {
    stream: BufReader<TcpStream>,
}

/// The longest one command may take.
const DEADLINE: Duration = Duration::from_secs(5);

impl Resp {
    async fn connect(port: u16) -> io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(Resp {
            stream: BufReader::new(stream),
        })
    }

    async fn command(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        tokio::time::timeout(DEADLINE, async {
            self.stream.get_mut().write_all(out.as_bytes()).await?;
            read_reply(&mut self.stream).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply within 5 s"))?
    }

    /// Every key matching `pattern`, with SCAN.
    async fn scan(&mut self, pattern: &str) -> io::Result<Vec<String>> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        loop {
            let reply = self
                .command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])
                .await?;
            let Reply::Array(parts) = reply else {
                return Err(bad("SCAN did not answer an array"));
            };
            let [next, Reply::Array(found)] = parts.as_slice() else {
                return Err(bad("SCAN answered an unexpected shape"));
            };
            keys.extend(found.iter().filter_map(|k| k.text().map(str::to_string)));
            cursor = next
                .text()
                .ok_or_else(|| bad("no SCAN cursor"))?
                .to_string();
            if cursor == "0" {
                return Ok(keys);
            }
        }
    }
}

fn read_reply(
    stream: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed"));
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || rest.parse::<i64>().map_err(|e| bad(format!("{line}: {e}")));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => return Err(bad(format!("redis error: {rest}"))),
            ":" => Reply::Int(number()?),
            "$" => {
                let len = number()?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0u8; len as usize + 2];
                    stream.read_exact(&mut buf).await?;
                    buf.truncate(len as usize);
                    Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
                }
            }
            "*" => {
                let len = number()?;
                let mut items = Vec::new();
                for _ in 0..len.max(0) {
                    items.push(read_reply(stream).await?);
                }
                Reply::Array(items)
            }
            _ => return Err(bad(format!("not a RESP reply: {line}"))),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_summed_over_their_labels_and_a_missing_one_is_an_error() {
        let text = "\
# TYPE switchboard_connections gauge
switchboard_connections{endpoint=\"/ws/chat\",transport=\"websocket\"} 3
switchboard_connections{endpoint=\"/ws/notifications\",transport=\"websocket\"} 2
switchboard_connections_accepted_total{endpoint=\"/ws/chat\",transport=\"websocket\"} 40
switchboard_rooms 4
switchboard_users 5
switchboard_presence_entries 6
";
        assert_eq!(
            parse_gauges(text),
            Ok(NodeGauges {
                sessions: 5,
                rooms: 4,
                users: 5,
                presence: 6,
                accepted: 40,
            })
        );
        let without_users = text.replace("switchboard_users 5\n", "");
        assert_eq!(
            parse_gauges(&without_users),
            Err("no switchboard_users".into())
        );
    }
}
