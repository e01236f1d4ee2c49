//! TCP connections with client source addresses spread over 127.0.0.x, so
//! tens of thousands of connections to one server port do not run out of
//! ephemeral ports on a single source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Number of source addresses used: 127.0.0.2 ..= 127.0.0.251.
pub const SOURCE_ADDRS: u32 = 250;

/// The source address for the `index`-th connection to `dst`: one of
/// 127.0.0.2..=127.0.0.251 for an IPv4 target, `None` (let the kernel pick)
/// for `::1`.
pub fn source_ip(dst: &SocketAddr, index: u64) -> Option<IpAddr> {
    match dst {
        SocketAddr::V4(_) => {
            let last = 2 + (index % u64::from(SOURCE_ADDRS)) as u8;
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        }
        SocketAddr::V6(_) => None,
    }
}

/// Connects to `dst` from `src` (port chosen by the kernel), with
/// `TCP_NODELAY` set.
pub async fn connect(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = match dst {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(dst).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Raises this process's soft limit on open files to the hard limit and
/// returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    }
}

/// A short, stable name for a connection error, for failure counts.
pub fn error_kind(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused".into(),
        ConnectionReset => "reset".into(),
        ConnectionAborted => "aborted".into(),
        TimedOut => "timeout".into(),
        AddrInUse => "addr_in_use".into(),
        AddrNotAvailable => "addr_not_available".into(),
        UnexpectedEof => "eof".into(),
        BrokenPipe => "broken_pipe".into(),
        InvalidData => "invalid_data".into(),
        _ => match e.raw_os_error() {
            Some(24) => "too_many_open_files".into(),
            Some(n) => format!("os_error_{n}"),
            None => format!("{:?}", e.kind()).to_lowercase(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_over_loopback() {
        let dst: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_ip(&dst, 0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_ip(&dst, 249), Some("127.0.0.251".parse().unwrap()));
        assert_eq!(source_ip(&dst, 250), Some("127.0.0.2".parse().unwrap()));
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(source_ip(&v6, 3), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connects_from_a_spread_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dst = l.local_addr().unwrap();
        let src = source_ip(&dst, 7);
        let (c, accepted) = tokio::join!(connect(dst, src), l.accept());
        let c = c.unwrap();
        let (_, peer) = accepted.unwrap();
        assert_eq!(peer.ip(), src.unwrap());
        assert_eq!(c.local_addr().unwrap().ip(), src.unwrap());
        assert!(raise_nofile_limit() >= 1024);
    }
}
