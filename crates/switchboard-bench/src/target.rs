//! Target URLs, restricted to loopback.
//!
//! The tool generates heavy traffic, so it refuses any URL whose host is not
//! in 127.0.0.0/8, `localhost` or `::1`: no hostname lookups, no other
//! addresses, whatever the flags say.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::util::percent_encode;

/// The scheme of a target URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ws://`: a WebSocket endpoint.
    Ws,
    /// `http://`: an HTTP endpoint.
    Http,
}

/// A parsed loopback URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The socket address to connect to (always loopback).
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` as written in the URL).
    pub host_header: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

/// The loopback address a URL host names, or `None` when it is not loopback.
/// Accepts `localhost`, IPv4 literals in 127.0.0.0/8, and `::1` (bracketed
/// or not).
pub fn loopback_ip(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Ok(v4) = h.parse::<Ipv4Addr>() {
        return (v4.octets()[0] == 127).then_some(IpAddr::V4(v4));
    }
    if let Ok(v6) = h.parse::<Ipv6Addr>() {
        return (v6 == Ipv6Addr::LOCALHOST).then_some(IpAddr::V6(v6));
    }
    None
}

impl Target {
    /// Parses `ws://host[:port]/path?query` or `http://...`, refusing hosts
    /// that are not loopback and schemes other than `ws` and `http`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (Scheme::Ws, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(format!(
                "unsupported URL {url:?}: use ws://127.0.0.1:PORT/... or http://127.0.0.1:PORT/... (no TLS)"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') {
            return Err(format!("URL {url:?} must not contain credentials"));
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("bad IPv6 host in {url:?}"))?;
            let host = &authority[..end + 2];
            let port = match &after[end + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("bad port in {url:?}"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let ip = loopback_ip(host).ok_or_else(|| {
            format!(
                "refusing {url:?}: only loopback targets (127.0.0.0/8, localhost, ::1) are allowed"
            )
        })?;
        Ok(Target {
            scheme,
            addr: SocketAddr::new(ip, port),
            host_header: authority.to_string(),
            path_and_query: path,
        })
    }

    /// The same target with `key=value` appended to the query (value
    /// percent-encoded).
    pub fn with_query(&self, key: &str, value: &str) -> Target {
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut t = self.clone();
        t.path_and_query = format!(
            "{}{sep}{}={}",
            self.path_and_query,
            percent_encode(key),
            percent_encode(value)
        );
        t
    }

    /// An `http://` target on the same host and port with another path.
    pub fn http_with_path(&self, path: &str) -> Target {
        Target {
            scheme: Scheme::Http,
            addr: self.addr,
            host_header: self.host_header.clone(),
            path_and_query: path.to_string(),
        }
    }

    /// The URL as text.
    pub fn url(&self) -> String {
        let s = match self.scheme {
            Scheme::Ws => "ws",
            Scheme::Http => "http",
        };
        format!("{s}://{}{}", self.host_header, self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_forms() {
        let t = Target::parse("ws://127.0.0.1:3000/ws/chat").unwrap();
        assert_eq!(t.scheme, Scheme::Ws);
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.host_header, "127.0.0.1:3000");
        assert_eq!(t.path_and_query, "/ws/chat");

        let t = Target::parse("ws://localhost:9/x?y=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path_and_query, "/x?y=1");

        let t = Target::parse("http://127.8.9.10").unwrap();
        assert_eq!(t.addr, "127.8.9.10:80".parse().unwrap());
        assert_eq!(t.path_and_query, "/");

        let t = Target::parse("ws://[::1]:8080/ws/echo").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(t.host_header, "[::1]:8080");

        let t = Target::parse("http://LOCALHOST:1?q").unwrap();
        assert_eq!(t.path_and_query, "/?q");
    }

    #[test]
    fn refuses_everything_else() {
        for url in [
            "ws://10.0.0.1:3000/ws/chat",
            "ws://192.168.1.1/ws",
            "ws://0.0.0.0:3000/",
            "ws://8.8.8.8/",
            "ws://example.com/",
            "ws://localhost.example.com/",
            "ws://[::2]:80/",
            "ws://[::ffff:127.0.0.1]:80/",
            "ws://128.0.0.1/",
            "wss://127.0.0.1/",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "ws://user@127.0.0.1/",
            "ws://:80/",
            "ws://127.0.0.1:notaport/",
            "ws://127.0.0.1:70000/",
            "127.0.0.1:3000",
        ] {
            assert!(Target::parse(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn loopback_check() {
        assert!(loopback_ip("127.255.255.254").is_some());
        assert!(loopback_ip("::1").is_some());
        assert!(loopback_ip("[::1]").is_some());
        assert!(loopback_ip("126.0.0.1").is_none());
        assert!(loopback_ip("127.0.0.1.nip.io").is_none());
    }

    #[test]
    fn query_and_paths() {
        let t = Target::parse("ws://127.0.0.1:3/ws/chat").unwrap();
        assert_eq!(
            t.with_query("token", "a b").path_and_query,
            "/ws/chat?token=a%20b"
        );
        let t = Target::parse("ws://127.0.0.1:3/ws/chat?x=1").unwrap();
        assert_eq!(
            t.with_query("token", "t").path_and_query,
            "/ws/chat?x=1&token=t"
        );
        let h = t.http_with_path("/publish");
        assert_eq!(h.url(), "http://127.0.0.1:3/publish");
        assert_eq!(t.url(), "ws://127.0.0.1:3/ws/chat?x=1");
    }
}
