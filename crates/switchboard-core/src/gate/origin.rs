//! The Origin policy.
//!
//! Browsers attach `Origin` to every WebSocket handshake and let any page
//! open a socket to any host, with the user's cookies. CORS does not apply to
//! WebSocket, so the server must check `Origin` itself.
//!
//! - With no allow-list, the policy is same-origin: the Origin's host (and
//!   port) must equal the `Host` header.
//! - With an allow-list, the Origin must match an entry: exact
//!   (`https://app.example.com`) or a wildcard of subdomains
//!   (`https://*.example.com` matches `https://a.example.com` and
//!   `https://a.b.example.com`, but neither `https://example.com` nor
//!   `https://evil-example.com`). Scheme and port must match too.
//! - Requests without `Origin` come from non-browser clients, which cannot
//!   ride on a user's cookies; they are allowed unless `require_origin` is
//!   set.

/// The Origin settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Allowed origins; empty means same-origin. Default: empty.
    pub allowed: Vec<String>,
    /// Refuse requests that carry no `Origin` header. Default: false.
    pub require_origin: bool,
}

/// Why an Origin was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// No `Origin` header, and one is required.
    #[error("an Origin header is required")]
    Missing,
    /// The Origin is not allowed.
    #[error("origin {0:?} is not allowed")]
    NotAllowed(String),
}

/// Splits a serialized origin, `scheme://host[:port]` (RFC 6454), into
/// scheme and lowercased authority with the default port made explicit.
/// Anything else is no origin: a path, user info, a query, a host
/// character that no URL host may hold, a port that is not a decimal
/// number up to 65535 (without leading zeros).
fn parse(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    if !is_scheme(scheme) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.trim_end_matches('/').to_ascii_lowercase();
    if !is_authority(&authority) {
        return None;
    }
    Some((scheme.clone(), with_port(&scheme, &authority)))
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 section 3.1).
fn is_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `host[:port]`: a bracketed IPv6 address or a name of visible ASCII
/// characters other than the URL standard's forbidden domain code points;
/// a port of decimal digits, at most 65535, without leading zeros.
fn is_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((address, after)) => (
                !address.is_empty()
                    && address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                after,
            ),
            None => return false,
        },
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, port) = authority.split_at(end);
            (!host.is_empty() && host.bytes().all(is_host_byte), port)
        }
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => {
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && digits.parse::<u16>().is_ok()
        }
    };
    host_ok && port_ok
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"#%/:<>?@[\\]^|".contains(&b)
}

fn with_port(scheme: &str, authority: &str) -> String {
    // Skip a bracketed IPv6 host before looking for the port separator.
    let host_end = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(authority.len(), |i| i + 2),
        None => 0,
    };
    if authority[host_end..].contains(':') {
        return authority.to_string();
    }
    let port = match scheme {
        "https" | "wss" => 443,
        _ => 80,
    };
    format!("{authority}:{port}")
}

fn matches_entry(entry: &str, scheme: &str, authority: &str) -> bool {
    let Some((entry_scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    if !entry_scheme.eq_ignore_ascii_case(scheme) {
        return false;
    }
    let rest = rest.trim_end_matches('/').to_ascii_lowercase();
    match rest.strip_prefix("*.") {
        Some(domain) => {
            let domain = with_port(scheme, domain);
            // The wildcard stands for one or more whole labels.
            authority.len() > domain.len() + 1
                && authority.ends_with(&domain)
                && authority.as_bytes()[authority.len() - domain.len() - 1] == b'.'
        }
        None => with_port(scheme, &rest) == authority,
    }
}

impl OriginPolicy {
    /// Checks an upgrade's `Origin` against the policy. `host` is the
    /// request's `Host` header, used for same-origin.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), OriginError> {
        let Some(origin) = origin else {
            return if self.require_origin {
                Err(OriginError::Missing)
            } else {
                Ok(())
            };
        };
        let refused = || Err(OriginError::NotAllowed(origin.to_string()));
        let Some((scheme, authority)) = parse(origin) else {
            return refused();
        };
        let allowed = if self.allowed.is_empty() {
            host.is_some_and(|h| with_port(&scheme, &h.to_ascii_lowercase()) == authority)
        } else {
            self.allowed
                .iter()
                .any(|e| matches_entry(e, &scheme, &authority))
        };
        if allowed { Ok(()) } else { refused() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OriginPolicy {
        OriginPolicy {
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            require_origin: false,
        }
    }

    #[test]
    fn same_origin_by_default() {
        let p = OriginPolicy::default();
        assert_eq!(
            p.check(Some("http://localhost:3000"), Some("localhost:3000")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("https://chat.example.com"), Some("chat.example.com")),
            Ok(())
        );
        assert_eq!(
            p.check(
                Some("https://chat.example.com"),
                Some("chat.example.com:443")
            ),
            Ok(())
        );
        assert!(
            p.check(Some("http://evil.com"), Some("localhost:3000"))
                .is_err()
        );
        assert!(
            p.check(Some("http://localhost:3001"), Some("localhost:3000"))
                .is_err()
        );
        assert!(p.check(Some("null"), Some("localhost:3000")).is_err());
        assert!(p.check(Some("http://localhost:3000"), None).is_err());
    }

    #[test]
    fn missing_origin_is_allowed_unless_required() {
        assert_eq!(OriginPolicy::default().check(None, Some("x")), Ok(()));
        let p = OriginPolicy {
            require_origin: true,
            ..Default::default()
        };
        assert_eq!(p.check(None, Some("x")), Err(OriginError::Missing));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["https://*.example.com", "http://localhost:5173"]);
        assert_eq!(p.check(Some("https://app.example.com"), None), Ok(()));
        assert_eq!(p.check(Some("https://a.b.example.com"), None), Ok(()));
        assert_eq!(p.check(Some("https://APP.Example.com"), None), Ok(()));
        assert_eq!(p.check(Some("http://localhost:5173"), None), Ok(()));
        for bad in [
            "https://example.com",
            "https://evil-example.com",
            "https://example.com.evil.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost:5174",
            "https://app.example.com@evil.com",
        ] {
            assert!(p.check(Some(bad), None).is_err(), "{bad} must not match");
        }
    }

    /// What is not a serialized origin is refused, whatever its host and
    /// port look like (found by the `origin` fuzz target: `h%tp://...`
    /// passed the same-origin check).
    #[test]
    fn only_serialized_origins_are_accepted() {
        let same = OriginPolicy::default();
        assert_eq!(
            same.check(Some("http://localhost:3000"), Some("localhost:3000")),
            Ok(())
        );
        assert_eq!(
            same.check(Some("http://[::1]:3000"), Some("[::1]:3000")),
            Ok(())
        );
        for bad in [
            "h%tp://localhost:3000",
            "1http://localhost:3000",
            "://localhost:3000",
            "http://local host:3000",
            "http://localhost:03000",
            "http://localhost:3000x",
            "http://localhost:",
            "http://[::1:3000",
            "http://localhost:3000?",
        ] {
            let host = bad.split_once("://").map_or("", |(_, h)| h);
            assert!(same.check(Some(bad), Some(host)).is_err(), "{bad}");
        }
        let p = policy(&["https://*.example.com"]);
        assert_eq!(p.check(Some("https://a.example.com"), None), Ok(()));
        for bad in [
            "https://evil.com?.example.com",
            "https://evil.com#.example.com",
            "https://evil.com\\.example.com",
            "https://a:443.example.com",
            "https://a.example.com:65536",
        ] {
            assert!(p.check(Some(bad), None).is_err(), "{bad}");
        }
    }
}
