//! Small parsers shared by the subcommands: durations, rate lists, query
//! encoding, and float rounding for reports.

use std::time::Duration;

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Duration::try_from_secs_f64(v * mult).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a comma-separated list of positive rates, e.g. `5,10,15`.
pub fn parse_rates(s: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let v: f64 = part
            .parse()
            .map_err(|_| format!("invalid rate {part:?} in {s:?}"))?;
        if !v.is_finite() || v <= 0.0 {
            return Err(format!("rates must be positive, got {part:?}"));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err("empty rate list".into());
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a
/// query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rounds to `digits` decimals (for compact JSON).
pub fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rates("5,10, 15").unwrap(), vec![5.0, 10.0, 15.0]);
        assert_eq!(parse_rates("2.5").unwrap(), vec![2.5]);
        assert!(parse_rates("5,0").is_err());
        assert!(parse_rates("x").is_err());
        assert!(parse_rates(",").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(percent_encode("abc-_.~09"), "abc-_.~09");
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn rounding() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(-1.5, 0), -2.0);
    }
}
