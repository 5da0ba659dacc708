//! TLS for the local cluster: a throw-away PKI made with `rcgen`, and the files a TLS
//! cluster's nodes (and the harness's own connections) use.
//!
//! [`TestPki::generate`] makes, in a directory of the caller's: a CA, a node certificate for
//! `127.0.0.1`/`localhost` signed by it (usable as server and as client certificate, because
//! nodes present it to each other on the cluster bus and for replication), and a separate client
//! certificate for the application. Keys are ECDSA P-256 in unencrypted PKCS#8 PEM (what Redis
//! and Kafka's PEM key store read), so generation takes milliseconds and needs no program.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::{LocalStackError, Result};

/// How long the certificates are valid, from a day before they are made (clock skew).
const VALIDITY_DAYS: i64 = 7;

/// The TLS files of a cluster started with [`ClusterOptions::tls`](super::ClusterOptions::tls):
/// every node listens with `port 0`, `tls-port <port>`, `tls-cluster yes` and
/// `tls-replication yes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// CA certificate (PEM) that signed `cert_file`, and that verifies clients.
    pub ca_file: PathBuf,
    /// The nodes' certificate (PEM), presented to clients and to other nodes.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// `tls-auth-clients`: `true` requires every client to present a certificate signed by
    /// the CA (mutual TLS); `false` accepts clients without one.
    pub auth_clients: bool,
}

/// A CA with a node certificate and a client certificate, as PEM files in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPki {
    /// CA certificate.
    pub ca_cert: PathBuf,
    /// CA private key.
    pub ca_key: PathBuf,
    /// Node certificate: `CN=localhost`, SAN `IP:127.0.0.1, DNS:localhost`, server and client
    /// use.
    pub node_cert: PathBuf,
    /// Node private key.
    pub node_key: PathBuf,
    /// Application client certificate (`CN=<name>-client`, client use).
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the PKI into `dir` (created if missing), names prefixed by `name`
    /// (`<name>-ca.pem`, `<name>-ca.key`, `<name>-node.pem`, …).
    pub fn generate(dir: &Path, name: &str) -> Result<TestPki> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LocalStackError::io(format!("creating {}", dir.display()), e))?;
        let file = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let pki = TestPki {
            ca_cert: file("ca.pem"),
            ca_key: file("ca.key"),
            node_cert: file("node.pem"),
            node_key: file("node.key"),
            client_cert: file("client.pem"),
            client_key: file("client.key"),
        };

        let mut ca = params(&format!("{name} test CA"), Vec::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        write(&pki.ca_cert, &ca_cert.pem())?;
        write(&pki.ca_key, &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let leaves = [
            (
                "localhost".to_owned(),
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                (&pki.node_cert, &pki.node_key),
            ),
            (
                format!("{name}-client"),
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
                (&pki.client_cert, &pki.client_key),
            ),
        ];
        for (cn, alt_names, usages, (cert_file, key_file)) in leaves {
            let mut leaf = params(&cn, alt_names)?;
            leaf.is_ca = IsCa::ExplicitNoCa;
            leaf.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            leaf.extended_key_usages = usages;
            leaf.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate()?;
            let cert = leaf.signed_by(&key, &issuer)?;
            write(cert_file, &cert.pem())?;
            write(key_file, &key.serialize_pem())?;
        }
        Ok(pki)
    }

    /// The [`ClusterTls`] of a cluster whose nodes use this PKI's node certificate.
    pub fn cluster_tls(&self, auth_clients: bool) -> ClusterTls {
        ClusterTls {
            ca_file: self.ca_cert.clone(),
            cert_file: self.node_cert.clone(),
            key_file: self.node_key.clone(),
            auth_clients,
        }
    }
}

/// Certificate parameters with the subject `CN=<cn>` alone (Kafka's mutual-TLS principal is
/// `User:CN=<cn>`), the subject alternative names (an IP address or a DNS name each) and
/// [`VALIDITY_DAYS`] of validity; rcgen derives the serial from the (fresh) key.
fn params(cn: &str, alt_names: Vec<String>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(alt_names)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    Ok(params)
}

fn write(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem)
        .map_err(|e| LocalStackError::io(format!("writing {}", path.display()), e))
}

/// The harness's client identity for a TLS cluster: the CA to trust and, when the nodes
/// require client certificates, the node certificate (it has client use too).
pub(crate) fn client_certificates(tls: &ClusterTls) -> std::io::Result<redis::TlsCertificates> {
    Ok(redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: std::fs::read(&tls.cert_file)?,
            client_key: std::fs::read(&tls.key_file)?,
        }),
        root_cert: Some(std::fs::read(&tls.ca_file)?),
    })
}

/// `redis-cli` arguments for a TLS cluster.
pub(crate) fn cli_args(tls: &ClusterTls) -> Vec<std::ffi::OsString> {
    vec![
        "--tls".into(),
        "--cacert".into(),
        tls.ca_file.clone().into(),
        "--cert".into(),
        tls.cert_file.clone().into(),
        "--key".into(),
        tls.key_file.clone().into(),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use rustls::server::danger::ClientCertVerifier;

    use super::*;

    fn cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    /// A server and a client verifier trusting `ca` alone.
    fn verifiers(ca: &Path) -> (Arc<WebPkiServerVerifier>, Arc<dyn ClientCertVerifier>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(cert(ca)).unwrap();
        let roots = Arc::new(roots);
        let server =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .unwrap();
        let client = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        (server, client)
    }

    #[test]
    fn generated_certificates_verify_against_their_ca_for_their_uses() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), "t").unwrap();
        let (server, client) = verifiers(&pki.ca_cert);
        let now = UnixTime::now();
        let as_server = |path: &Path, name: &'static str| {
            server.verify_server_cert(
                &cert(path),
                &[],
                &ServerName::try_from(name).unwrap(),
                &[],
                now,
            )
        };
        for name in ["127.0.0.1", "localhost"] {
            as_server(&pki.node_cert, name).unwrap_or_else(|e| panic!("node cert for {name}: {e}"));
        }
        assert!(
            as_server(&pki.node_cert, "example.com").is_err(),
            "only its own names"
        );
        for path in [&pki.node_cert, &pki.client_cert] {
            client
                .verify_client_cert(&cert(path), &[], now)
                .unwrap_or_else(|e| panic!("{} as a client: {e}", path.display()));
        }
        assert!(
            as_server(&pki.client_cert, "localhost").is_err(),
            "the client certificate has client use only"
        );
        // Unencrypted PKCS#8 keys (Kafka's PEM key store reads no other).
        for key in [&pki.ca_key, &pki.node_key, &pki.client_key] {
            PrivatePkcs8KeyDer::from_pem_file(key).unwrap();
        }

        let other = TestPki::generate(dir.path(), "other").unwrap();
        let (server, client) = verifiers(&other.ca_cert);
        assert!(
            server
                .verify_server_cert(
                    &cert(&pki.node_cert),
                    &[],
                    &ServerName::try_from("localhost").unwrap(),
                    &[],
                    now
                )
                .is_err(),
            "another CA does not verify it"
        );
        assert!(
            client
                .verify_client_cert(&cert(&pki.client_cert), &[], now)
                .is_err()
        );
    }
}
