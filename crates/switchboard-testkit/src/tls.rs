//! Certificates for TLS tests: a certificate authority of the test's own,
//! server certificates it signs (as the PEM files a server is given), and
//! clients that trust it, over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

/// The name every test certificate is issued for, and clients connect to.
pub const SERVER_NAME: &str = "localhost";

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate and its key, as PEM files hold them.
#[derive(Clone, Debug)]
pub struct ServerCert {
    /// The certificate, then the CA's: a chain, as a certificate file
    /// holds it.
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
    /// The server certificate alone, to recognise it on a connection.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new authority named `name`, with a key of its own.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa { issuer }
    }

    /// The authority's own certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A new server certificate for [`SERVER_NAME`] and 127.0.0.1, with a
    /// new key, signed by this authority.
    pub fn issue(&self) -> ServerCert {
        let params = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        ServerCert {
            chain_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A client configuration that trusts `cas` only, offers `alpn`, and does
/// not resume sessions.
pub fn client_config(cas: &[&TestCa], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der()).expect("CA certificate as a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection makes a full handshake, so that it shows the
    // certificate the server uses now (a resumed session reports the one it
    // was first made with).
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection to `addr`, verified as [`SERVER_NAME`].
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The server certificate a connection was made with.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
}

/// A `wss://` WebSocket to `path` at `addr`, over a connection trusting
/// `config`'s roots; also the server certificate it was made with.
pub async fn wss(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> (
    WebSocketStream<TlsStream<TcpStream>>,
    CertificateDer<'static>,
) {
    let stream = connect(addr, config).await.expect("TLS handshake");
    let cert = peer_certificate(&stream);
    let url = format!("wss://{SERVER_NAME}:{}{path}", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket handshake over TLS");
    (ws, cert)
}
