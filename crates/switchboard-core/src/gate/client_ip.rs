//! The client's address, for rate limits and caps.
//!
//! `X-Forwarded-For` is honoured only when the TCP peer is a trusted proxy:
//! the client is then the rightmost address in the header that is not itself
//! a trusted proxy. From anyone else the header is ignored, since any client
//! can write it.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range: `10.0.0.0/8`, `::1/128`, or a single address. The
/// arithmetic is the `ipnet` crate's; this type adds the single-address
/// form and treats IPv4-mapped IPv6 addresses as IPv4, on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// The client's address as the gate worked it out (behind trusted proxies,
/// from `X-Forwarded-For`), put in the upgrade request's extensions before
/// the [`Authenticator`](crate::auth::Authenticator) is asked, for
/// authenticators that want it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// IPv4-mapped IPv6 addresses are treated as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("invalid address in {s:?}"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max),
            None => Some(max),
        }
        .ok_or_else(|| format!("invalid prefix length in {s:?}"))?;
        ipnet::IpNet::new(addr, prefix)
            .map(IpNet)
            .map_err(|_| format!("invalid prefix length in {s:?}"))
    }
}

/// The client named by a trusted peer's `X-Forwarded-For`: `None` when the
/// peer is not trusted or the header names no valid address.
pub fn forwarded_client(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return None;
    }
    let mut client = None;
    for hop in forwarded_for?.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        let ip = canonical(ip);
        client = Some(ip);
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// Resolves the client address of a request that arrived from `peer`.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(client) {
                    break;
                }
            }
            // A malformed entry ends the trusted chain: stop at what we have.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_ranges() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer = "203.0.113.9".parse().unwrap();
        let ip = client_ip(peer, Some("1.2.3.4"), &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, peer);
        let ip = client_ip(peer, Some("1.2.3.4"), &[]);
        assert_eq!(ip, peer);
    }

    #[test]
    fn trusted_proxies_are_skipped_right_to_left() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = "127.0.0.1".parse().unwrap();
        // A client-supplied spoof on the left is not reached.
        let ip = client_ip(peer, Some("6.6.6.6, 198.51.100.7, 10.0.0.2"), &trusted);
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
    }
}
