//! The TLS settings: the certificate and key files that make the server
//! speak `wss://` and `https://` itself, and how often they are checked
//! for a new pair (`docs/deploy.md`).

use std::time::Duration;

use switchboard::tls::{Tls, TlsFile};

use super::Args;
use super::parse::seconds;

/// TLS settings, flattened into the server's flags.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TlsArgs {
    /// PEM file with the TLS certificate, followed by its intermediate
    /// certificates. With tls_key set too, the port speaks only TLS
    /// (wss://, https://, HTTP/2 for the API).
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<String>,

    /// PEM file with the private key of tls_cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<String>,

    /// Seconds between checks of tls_cert and tls_key for a new pair, which
    /// new connections then use (0: reload on SIGHUP only).
    #[arg(
        long,
        env = "SWITCHBOARD_TLS_RELOAD_INTERVAL",
        default_value = "5",
        value_name = "SECONDS",
        value_parser = seconds
    )]
    pub tls_reload_interval: Duration,
}

impl Args {
    /// The certificate and key, loaded and checked, when TLS is on. Both
    /// files or neither: one alone is an error naming the other.
    pub(crate) fn tls(&self) -> anyhow::Result<Option<Tls>> {
        let set = |v: &Option<String>| v.clone().filter(|p| !p.is_empty());
        let (cert, key) = match (set(&self.tls.tls_cert), set(&self.tls.tls_key)) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(self.one_alone("tls_key", "tls_cert")),
            (None, Some(_)) => return Err(self.one_alone("tls_cert", "tls_key")),
        };
        Tls::load(&cert, &key).map(Some).map_err(|e| {
            let id = match e.file() {
                TlsFile::Cert => "tls_cert",
                TlsFile::Key => "tls_key",
            };
            self.invalid(id, e)
        })
    }

    fn one_alone(&self, missing: &str, set: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "invalid setting `{missing}`: not set, but `{set}` is{}; TLS needs both, or neither",
            self.set_by(&[set])
        )
    }
}
