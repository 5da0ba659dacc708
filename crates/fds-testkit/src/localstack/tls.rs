//! TLS for the local cluster: a throw-away PKI made with the `openssl` command line, and the
//! files a TLS cluster's nodes (and the harness's own connections) use.
//!
//! [`TestPki::generate`] makes, in a directory of the caller's: a CA, a node certificate for
//! `127.0.0.1`/`localhost` signed by it (usable as server and as client certificate, because
//! nodes present it to each other on the cluster bus and for replication), and a separate client
//! certificate for the application. Keys are ECDSA P-256, so generation takes milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LocalStackError, Result};

const INSTALL_OPENSSL: &str = "apt-get install -y openssl";

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
    /// (`<name>-ca.pem`, …). Fails with [`LocalStackError::MissingProgram`] if `openssl` is not
    /// installed.
    pub fn generate(dir: &Path, name: &str) -> Result<TestPki> {
        super::node::require_program("openssl", INSTALL_OPENSSL)?;
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
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-nodes", "-days", "7"])
                .args(ec)
                .arg("-keyout")
                .arg(&pki.ca_key)
                .arg("-out")
                .arg(&pki.ca_cert)
                .args(["-subj", &format!("/CN={name} test CA")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        pki.sign(
            dir,
            name,
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
            &pki.node_key,
            &pki.node_cert,
        )?;
        pki.sign(
            dir,
            name,
            &format!("{name}-client"),
            "extendedKeyUsage=clientAuth\n",
            &pki.client_key,
            &pki.client_cert,
        )?;
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

    /// A key and a certificate for `cn`, signed by the CA, with the given v3 extensions.
    fn sign(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        extensions: &str,
        key: &Path,
        cert: &Path,
    ) -> Result<()> {
        let csr = dir.join(format!("{name}-{cn}.csr"));
        let ext = dir.join(format!("{name}-{cn}.ext"));
        let extensions = format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n{extensions}"
        );
        std::fs::write(&ext, extensions)
            .map_err(|e| LocalStackError::io(format!("writing {}", ext.display()), e))?;
        openssl(
            Command::new("openssl")
                .args(["req", "-nodes"])
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .arg("-keyout")
                .arg(key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", &format!("/CN={cn}")]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "7", "-set_serial"])
                .arg(rand::random::<u32>().max(1).to_string())
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca_cert)
                .arg("-CAkey")
                .arg(&self.ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(cert),
        )?;
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(ext);
        Ok(())
    }
}

fn openssl(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .map_err(|e| LocalStackError::io(format!("running {shown}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalStackError::Command {
        command: shown,
        status: output.status.to_string(),
        output: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
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
    use super::*;

    #[test]
    fn generated_certificates_verify_against_their_ca() {
        if super::super::node::find_program("openssl").is_none() {
            panic!("openssl is required: {INSTALL_OPENSSL}");
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), "t").unwrap();
        for cert in [&pki.node_cert, &pki.client_cert] {
            let output = Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&pki.ca_cert)
                .arg(cert)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let other = TestPki::generate(dir.path(), "other").unwrap();
        let output = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&other.ca_cert)
            .arg(&pki.node_cert)
            .output()
            .unwrap();
        assert!(!output.status.success(), "another CA does not verify it");
    }
}
