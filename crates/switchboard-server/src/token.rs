//! `switchboard token`: mints a JSON Web Token with the configured HS256
//! secret, or with the private key that goes with the configured public key
//! (RS256 or ES256, `--private-key`), for trying the server out and for
//! tests. Production tokens come from the application's backend
//! (docs/security.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::settings::Args;

/// The claims `switchboard token` puts in the token.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub(crate) struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long, value_name = "USER")]
    pub user: String,

    /// Room patterns the user may join and publish to, comma-separated
    /// (`chat:*`): the `rooms` claim. With neither this nor --read-rooms the
    /// token grants every room (none with --require-room-claims).
    #[arg(long, value_delimiter = ',', value_name = "PATTERNS")]
    pub rooms: Option<Vec<String>>,

    /// Room patterns the user may join but not publish to: the `read_rooms`
    /// claim.
    #[arg(long, value_delimiter = ',', value_name = "PATTERNS")]
    pub read_rooms: Option<Vec<String>>,

    /// How long the token is valid: seconds, or a whole number with `s`,
    /// `m`, `h` or `d` (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = ttl)]
    pub ttl: Duration,

    /// File with the private key, in PEM, that goes with the configured
    /// --jwt-public-key (RSA for RS256, EC P-256 for ES256). The server never
    /// reads it otherwise; only this command does.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<String>,
}

/// `--ttl`: a whole number of seconds, minutes, hours or days, at least a
/// second and at most a year.
fn ttl(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err("must be a whole number with s, m, h or d (15m, 1h)".into()),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "must be a whole number with s, m, h or d (15m, 1h)".to_string())?;
    let secs = n.saturating_mul(unit_secs);
    if secs == 0 || secs > 366 * 24 * 60 * 60 {
        return Err("must be at least 1 second and at most 366 days".into());
    }
    Ok(Duration::from_secs(secs))
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_rooms: Option<&'a [String]>,
}

/// A token for `token.user`, issued at `now`, signed with the HS256 secret
/// of `settings` and carrying their issuer and audience. It is checked with
/// the authenticator the server builds from the same settings before it is
/// returned, so a token that server would refuse is an error here.
pub(crate) fn mint(settings: &Args, token: &TokenArgs, now: SystemTime) -> anyhow::Result<String> {
    let (algorithm, key) = match (&settings.jwt_secret, &settings.jwt_public_key) {
        (Some(_), _) if token.private_key.is_some() => bail!(
            "cannot mint a token: --private-key goes with --jwt-public-key; this server \
             checks tokens with an HS256 secret, which signs them too"
        ),
        (Some(secret), _) => (
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
        ),
        (None, Some(_)) => {
            let Some(path) = &token.private_key else {
                bail!(
                    "cannot mint a token: the server is configured with a public key \
                     (jwt_public_key), which only checks tokens; minting needs the private \
                     key, which the server never holds: pass it with --private-key FILE, \
                     or sign tokens with it in your backend"
                );
            };
            private_key(path)?
        }
        (None, None) => bail!(
            "cannot mint a token: no JWT secret is configured (set SWITCHBOARD_JWT_SECRET, \
             --jwt-secret or jwt_secret in the configuration file)"
        ),
    };
    let Some(authenticator) = settings.authenticator()? else {
        bail!("cannot mint a token: no JWT key is configured");
    };
    let iat = now
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = Claims {
        sub: &token.user,
        iat,
        exp: iat + token.ttl.as_secs(),
        iss: settings.jwt_issuer.as_deref(),
        aud: settings.jwt_audience.as_deref(),
        rooms: token.rooms.as_deref(),
        read_rooms: token.read_rooms.as_deref(),
    };
    let jwt = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)
        .context("cannot sign the token")?;
    if let Err(rejection) = authenticator.verify(&jwt) {
        bail!(
            "cannot mint a token: the server would refuse it: {}",
            rejection.reason
        );
    }
    Ok(jwt)
}

/// The private key in the PEM file at `path`, RSA (RS256) or EC P-256
/// (ES256), told apart by the key itself.
fn private_key(path: &str) -> anyhow::Result<(Algorithm, EncodingKey)> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read --private-key {path}"))?;
    let not_private =
        || anyhow::anyhow!("--private-key {path} is not an RSA or EC P-256 private key in PEM");
    // The parsers take a public key too; signing would then fail.
    if !String::from_utf8_lossy(&pem).contains("PRIVATE KEY-----") {
        return Err(not_private());
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
        Ok((Algorithm::RS256, key))
    } else if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
        Ok((Algorithm::ES256, key))
    } else {
        Err(not_private())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Action, Env, load};

    const SECRET: &str = "a-development-secret-of-32-bytes";

    /// The settings and token arguments of `switchboard token <extra>`.
    fn parse(extra: &[&str], env: Env) -> (Args, TokenArgs) {
        let mut argv = vec!["switchboard".into(), "token".into()];
        argv.extend(extra.iter().map(Into::into));
        let inv = load(argv, &env).unwrap();
        match inv.action {
            Action::Token(t) => (inv.args, t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_minted_token_is_accepted_by_the_servers_authenticator() {
        let env = Env::from([
            ("SWITCHBOARD_JWT_SECRET", SECRET),
            ("SWITCHBOARD_JWT_ISSUER", "https://app.example.com"),
            ("SWITCHBOARD_JWT_AUDIENCE", "switchboard"),
        ]);
        let (args, t) = parse(
            &["--user", "alice", "--rooms", "chat:*", "--ttl", "1h"],
            env,
        );
        assert_eq!(t.ttl, Duration::from_secs(3600));
        let jwt = mint(&args, &t, SystemTime::now()).unwrap();
        let identity = args.authenticator().unwrap().unwrap().verify(&jwt).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert!(!identity.guest);
        assert!(identity.permissions.can_publish("chat:general"));
        assert!(!identity.permissions.can_join("lobby"));
        let expires = identity.expires_at.unwrap();
        let left = expires.duration_since(SystemTime::now()).unwrap();
        // exp is an hour away, plus the leeway of 5 s.
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3605));
    }

    #[test]
    fn tokens_need_the_secret_not_a_public_key() {
        let (args, t) = parse(&["--user", "alice"], Env::default());
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            "cannot mint a token: no JWT secret is configured (set SWITCHBOARD_JWT_SECRET, \
             --jwt-secret or jwt_secret in the configuration file)"
        );
        let env = Env::from([("SWITCHBOARD_JWT_PUBLIC_KEY", "/etc/public.pem")]);
        let (args, t) = parse(&["--user", "alice"], env);
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            "cannot mint a token: the server is configured with a public key (jwt_public_key), \
             which only checks tokens; minting needs the private key, which the server never \
             holds: pass it with --private-key FILE, or sign tokens with it in your backend"
        );
        let env = Env::from([("SWITCHBOARD_JWT_SECRET", "short")]);
        let (args, t) = parse(&["--user", "alice"], env);
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            "invalid setting `jwt_secret`: invalid JWT configuration: HS256 secret must be at \
             least 16 bytes (set by the environment variable SWITCHBOARD_JWT_SECRET)"
        );
        let (args, t) = parse(
            &["--user", "bad\nuser", "--jwt-secret", SECRET],
            Env::default(),
        );
        let e = mint(&args, &t, SystemTime::now()).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot mint a token: the server would refuse it: invalid sub"),
            "{e}"
        );
    }

    #[test]
    fn ttls_take_a_unit() {
        assert_eq!(ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(ttl("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "h", "1.5h", "-1h", "1w", "0"] {
            assert!(ttl(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ttl("400d").unwrap_err(),
            "must be at least 1 second and at most 366 days"
        );
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../switchboard/tests/fixtures");

    /// With a public key configured, `--private-key` signs with its pair
    /// (RS256 or ES256, from the key); a key of another pair is caught
    /// before the token is printed.
    #[test]
    fn a_private_key_mints_for_a_public_key_server() {
        for (public, private) in [
            ("rsa_public.pem", "rsa_private.pem"),
            ("ec_public.pem", "ec_private.pem"),
        ] {
            let public = format!("{FIXTURES}/{public}");
            let private = format!("{FIXTURES}/{private}");
            let env = Env::from([("SWITCHBOARD_JWT_PUBLIC_KEY", public.as_str())]);
            let (args, t) = parse(&["--user", "alice", "--private-key", &private], env);
            let jwt = mint(&args, &t, SystemTime::now()).unwrap();
            let identity = args.authenticator().unwrap().unwrap().verify(&jwt).unwrap();
            assert_eq!(&*identity.user, "alice");
        }
        let rsa_public = format!("{FIXTURES}/rsa_public.pem");
        let ec_private = format!("{FIXTURES}/ec_private.pem");
        let env = Env::from([("SWITCHBOARD_JWT_PUBLIC_KEY", rsa_public.as_str())]);
        let (args, t) = parse(&["--user", "alice", "--private-key", &ec_private], env);
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            "cannot mint a token: the server would refuse it: token algorithm not accepted: \
             ES256 (this server accepts RS256)"
        );
        let env = Env::from([("SWITCHBOARD_JWT_PUBLIC_KEY", rsa_public.as_str())]);
        let (args, t) = parse(&["--user", "alice", "--private-key", &rsa_public], env);
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            format!("--private-key {rsa_public} is not an RSA or EC P-256 private key in PEM")
        );
        let (args, t) = parse(
            &[
                "--user",
                "alice",
                "--jwt-secret",
                SECRET,
                "--private-key",
                &ec_private,
            ],
            Env::default(),
        );
        assert_eq!(
            mint(&args, &t, SystemTime::now()).unwrap_err().to_string(),
            "cannot mint a token: --private-key goes with --jwt-public-key; this server checks \
             tokens with an HS256 secret, which signs them too"
        );
    }
}
