//! The Origin policy, `switchboard_core::gate::origin::OriginPolicy::check`.
//!
//! Input: byte 0 holds flags (bit 0: `require_origin`; bit 1: no `Origin`
//! header; bit 2: no `Host` header); the rest, as text, is split into lines:
//! the `Origin` value, the `Host` value, then the allow-list entries (those
//! that the configuration would refuse are left out). Checks:
//!
//! - no panic;
//! - the verdict is the one of a model written from the policy's
//!   documentation and RFC 6454: an Origin is `scheme://host[:port]` and
//!   nothing else (a host of URL host characters, a decimal port of at most
//!   65535 without leading zeros), compared without regard to ASCII case
//!   with the default port made explicit; same-origin compares it with
//!   `Host`; an entry `scheme://*.domain[:port]` stands for one or more
//!   whole labels in front of `domain`;
//! - the verdict is the same with every string upper-cased.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::Config;
use switchboard_core::gate::origin::OriginPolicy;

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let origin = lines.next().filter(|_| flags & 0x02 == 0);
    let host = lines.next().filter(|_| flags & 0x04 == 0);
    let allowed: Vec<String> = lines
        .filter(|entry| {
            let config = Config {
                origin: OriginPolicy {
                    allowed: vec![entry.to_string()],
                    require_origin: false,
                },
                ..Config::default()
            };
            config.validate().is_ok() && Entry::parse(entry).is_some()
        })
        .map(str::to_string)
        .collect();
    let policy = OriginPolicy {
        allowed,
        require_origin: flags & 0x01 != 0,
    };
    let verdict = policy.check(origin, host);
    if let Err(e) = &verdict {
        assert!(!e.to_string().is_empty());
    }
    let expected = model(&policy, origin, host);
    assert_eq!(
        verdict.is_ok(),
        expected,
        "origin {origin:?}, host {host:?}, allowed {:?}",
        policy.allowed
    );

    let upper = OriginPolicy {
        allowed: policy
            .allowed
            .iter()
            .map(|e| e.to_ascii_uppercase())
            .collect(),
        require_origin: policy.require_origin,
    };
    let origin_upper = origin.map(str::to_ascii_uppercase);
    let host_upper = host.map(str::to_ascii_uppercase);
    assert_eq!(
        upper
            .check(origin_upper.as_deref(), host_upper.as_deref())
            .is_ok(),
        verdict.is_ok(),
        "the verdict depends on ASCII case"
    );
});

/// Whether the policy should let `origin` in.
fn model(policy: &OriginPolicy, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return !policy.require_origin;
    };
    let Some(origin) = Origin::parse(origin) else {
        return false;
    };
    if policy.allowed.is_empty() {
        return host
            .and_then(|h| Authority::parse(h, &origin.scheme))
            .is_some_and(|h| h == origin.authority);
    }
    policy
        .allowed
        .iter()
        .filter_map(|e| Entry::parse(e))
        .any(|entry| entry.admits(&origin))
}

/// A host and port, lowercased, the port made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: u16,
}

impl Authority {
    /// `host[:port]`: a bracketed IPv6 address or a name of URL host
    /// characters (none of the WHATWG URL standard's forbidden domain code
    /// points); a port of decimal digits without a leading zero.
    fn parse(s: &str, scheme: &str) -> Option<Authority> {
        let (host, port) = match s.strip_prefix('[') {
            Some(v6) => {
                let (address, after) = v6.split_once(']')?;
                let ok = !address.is_empty()
                    && address
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                if !ok {
                    return None;
                }
                (&s[..address.len() + 2], after)
            }
            None => {
                let end = s.find(':').unwrap_or(s.len());
                let host = &s[..end];
                let ok = !host.is_empty() && host.chars().all(host_char);
                if !ok {
                    return None;
                }
                (host, &s[end..])
            }
        };
        let port = match port {
            "" => match scheme {
                "https" | "wss" => 443,
                _ => 80,
            },
            p => {
                let digits = p.strip_prefix(':')?;
                let canonical = !digits.is_empty()
                    && digits.len() <= 5
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                if !canonical {
                    return None;
                }
                digits.parse().ok()?
            }
        };
        Some(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A character a domain may hold in a URL (WHATWG URL standard: ASCII, and
/// not a forbidden domain code point).
fn host_char(c: char) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            '#' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|' | '%'
        )
}

/// A serialized origin.
#[derive(Debug)]
struct Origin {
    scheme: String,
    authority: Authority,
}

impl Origin {
    /// `scheme://host[:port]`, tolerating trailing slashes as the policy
    /// does; the scheme as RFC 3986 spells one.
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority = Authority::parse(rest.trim_end_matches('/'), &scheme)?;
        Some(Origin { scheme, authority })
    }
}

/// An allow-list entry: an origin, or a wildcard of subdomains.
#[derive(Debug)]
enum Entry {
    Exact(Origin),
    Subdomains(Origin),
}

impl Entry {
    fn parse(s: &str) -> Option<Entry> {
        match s.split_once("://*.") {
            Some((scheme, domain)) => {
                Origin::parse(&format!("{scheme}://{domain}")).map(Entry::Subdomains)
            }
            None => Origin::parse(s).map(Entry::Exact),
        }
    }

    fn admits(&self, origin: &Origin) -> bool {
        match self {
            Entry::Exact(e) => e.scheme == origin.scheme && e.authority == origin.authority,
            Entry::Subdomains(e) => {
                let host = &origin.authority.host;
                let domain = &e.authority.host;
                e.scheme == origin.scheme
                    && e.authority.port == origin.authority.port
                    && host.len() > domain.len() + 1
                    && host.ends_with(domain.as_str())
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
        }
    }
}
