//! TLS in the server itself, for deployments without a proxy in front:
//! a certificate and its private key from PEM files, served by
//! [`serve_tls`](crate::http::serve_tls), and reloaded without a restart.
//!
//! [`Tls::load`] reads the pair once and checks it: a file that cannot be
//! read, a certificate file without a certificate, a key file without a
//! private key, and a key that does not belong to the certificate are each
//! a [`TlsError`] that names the file. The certificate file may hold the
//! whole chain, the server's certificate first.
//!
//! # Reload
//!
//! [`Tls::reload`] reads the files again. A good new pair is used by every
//! handshake that starts afterwards; connections already open keep the
//! certificate they were made with. A bad new pair is refused with its
//! error and the old one stays in use. [`Tls::watch`] reloads whenever the
//! files' modification time or size changes (it polls them), and the
//! server binary also reloads on `SIGHUP`.
//!
//! # Protocols
//!
//! The server offers `h2` and `http/1.1` by ALPN. HTTP/2 carries the HTTP
//! API, `/health` and `/metrics`; WebSocket upgrades need HTTP/1.1 (RFC 8441,
//! WebSocket over HTTP/2, is not offered, and browsers open WebSockets over
//! HTTP/1.1 when a server does not offer it). Only TLS 1.2 and 1.3 are
//! spoken, with rustls's default cipher suites and the `ring` provider.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use switchboard::prelude::*;
//! use switchboard::tls::Tls;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().default_endpoints().build()?;
//! let tls = Tls::load("/etc/switchboard/fullchain.pem", "/etc/switchboard/privkey.pem")?;
//! // New certificates are picked up within 5 s of being written.
//! tokio::spawn(tls.clone().watch(Duration::from_secs(5)));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! switchboard::serve_tls(listener, node.router(), node, tls, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Which of the two files an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate (chain) file.
    Cert,
    /// The private key file.
    Key,
}

/// Why a certificate and key cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read (missing, unreadable).
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not PEM, or a PEM section in it is broken.
    #[error("{path} is not valid PEM: {reason}")]
    Pem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// Its path.
        path: PathBuf,
    },
    /// The key file holds no private key section.
    #[error("{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")]
    NoKey {
        /// Its path.
        path: PathBuf,
    },
    /// The private key is of a kind rustls cannot sign with.
    #[error("the private key in {path} cannot be used: {reason}")]
    BadKey {
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The private key is not the certificate's.
    #[error("the private key in {key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

impl TlsError {
    /// The file the error is about (for a mismatch: the key).
    pub fn file(&self) -> TlsFile {
        match self {
            TlsError::Read { file, .. } | TlsError::Pem { file, .. } => *file,
            TlsError::NoCertificate { .. } => TlsFile::Cert,
            TlsError::NoKey { .. } | TlsError::BadKey { .. } | TlsError::Mismatch { .. } => {
                TlsFile::Key
            }
        }
    }
}

/// A certificate and key for [`serve_tls`](crate::http::serve_tls), with
/// the files they came from, to reload. Cheap to clone: clones share the
/// pair, so a reload through one is seen by all. See the module docs.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
    /// The files' modification times and sizes when last read, so that
    /// [`Tls::watch`] reloads only on a change. A mutex: reloads are rare
    /// and may come from the watcher and a signal at once.
    seen: Mutex<Stamp>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.inner.cert_path)
            .field("key", &self.inner.key_path)
            .finish_non_exhaustive()
    }
}

/// The ALPN protocols offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl Tls {
    /// Reads and checks the certificate (chain) at `cert` and the private
    /// key at `key`, both PEM.
    pub fn load(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let cert_path = cert.as_ref().to_path_buf();
        let key_path = key.as_ref().to_path_buf();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = Stamp::of(&cert_path, &key_path);
        let pair = read_pair(&cert_path, &key_path, &provider)?;
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(pair))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::BadKey {
                path: key_path.clone(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            inner: Arc::new(Inner {
                cert_path,
                key_path,
                provider,
                resolver,
                config: Arc::new(config),
                seen: Mutex::new(seen),
            }),
        })
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert_path
    }

    /// The private key file.
    pub fn key_path(&self) -> &Path {
        &self.inner.key_path
    }

    /// Reads the files again and, if the pair is good, uses it for every
    /// handshake from now on. On an error the pair in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let inner = &self.inner;
        let mut seen = inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Remembered even when the new pair is bad: the watcher then
        // reports it once, and tries again on the next change.
        *seen = Stamp::of(&inner.cert_path, &inner.key_path);
        let pair = read_pair(&inner.cert_path, &inner.key_path, &inner.provider)?;
        *inner.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// Polls the files every `interval` and reloads them when their
    /// modification time or size changed, logging the outcome; a bad new
    /// pair is logged as an error naming the file, and the old one stays.
    /// Runs until dropped.
    pub async fn watch(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Stamp::of(&self.inner.cert_path, &self.inner.key_path);
            let changed = {
                let seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
                *seen != now
            };
            if changed {
                self.reload_and_log("the files changed");
            }
        }
    }

    /// [`reload`](Self::reload), with its outcome logged; `why` says what
    /// asked for it.
    pub fn reload_and_log(&self, why: &str) -> bool {
        match self.reload() {
            Ok(()) => {
                tracing::info!(
                    cert = %self.inner.cert_path.display(),
                    key = %self.inner.key_path.display(),
                    "TLS certificate reloaded ({why}); new connections use it"
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    "TLS certificate not reloaded ({why}): {e}; the previous certificate stays in use"
                );
                false
            }
        }
    }

    /// The rustls configuration every handshake uses.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.config.clone()
    }
}

/// Picks the current pair for every handshake. A lock rather than a fixed
/// configuration, so that a reload swaps the pair under running listeners;
/// it is held for a pointer copy.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The modification times and sizes of both files; `None` where a file
/// cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Stamp {
    fn of(cert: &Path, key: &Path) -> Stamp {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        Stamp([one(cert), one(key)])
    }
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(file: TlsFile, path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        file,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads and checks one pair.
fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(TlsFile::Cert, cert_path)?;
    let key_pem = read(TlsFile::Key, key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(TlsFile::Cert, cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_path_buf(),
            });
        }
        Err(e) => return Err(bad_pem(TlsFile::Key, key_path, e)),
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        // The first certificate could not be parsed.
        Err(e) => Err(TlsError::Pem {
            file: TlsFile::Cert,
            path: cert_path.to_path_buf(),
            reason: format!("the first certificate cannot be parsed: {e}"),
        }),
    }
}
