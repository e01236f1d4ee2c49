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

/// Splits `scheme://host[:port]` into scheme and lowercased authority with
/// the default port made explicit.
fn parse(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.trim_end_matches('/').to_ascii_lowercase();
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return None;
    }
    Some((scheme.clone(), with_port(&scheme, &authority)))
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
}
