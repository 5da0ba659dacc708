//! TLS to the cluster: the CA that verifies the nodes and the optional client certificate for
//! mutual TLS, read from PEM files named by `[redis.tls]`.
//!
//! Whether TLS is used at all is decided by the node URLs (`rediss://`); these files only
//! replace the built-in web PKI roots with a private CA and add a client identity. rustls does
//! the work, with the `ring` provider installed once per process ([`install_crypto_provider`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redis::{ClientTlsConfig, TlsCertificates};

use super::{FailureKind, StoreError};

/// PEM files for TLS connections (`[redis.tls]`). All unset = the built-in web PKI roots and
/// no client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that sign the nodes' certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain, for nodes with `tls-auth-clients yes`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is set (otherwise redis-rs's defaults apply).
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads the files into the form redis-rs takes; `None` when none is set. A missing or
    /// unreadable file is an error naming the setting and the path.
    pub fn certificates(&self) -> Result<Option<TlsCertificates>, StoreError> {
        if !self.is_set() {
            return Ok(None);
        }
        let root_cert = self
            .ca_file
            .as_deref()
            .map(|path| read("redis.tls.ca_file", path))
            .transpose()?;
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("redis.tls.cert_file", cert)?,
                client_key: read("redis.tls.key_file", key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(StoreError::new(
                    FailureKind::Other,
                    "redis.tls.cert_file and redis.tls.key_file must be set together",
                ));
            }
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| {
        StoreError::new(
            FailureKind::Other,
            format!("{key}: cannot read {}: {e}", path.display()),
        )
    })
}

/// Installs rustls's `ring` crypto provider as the process default, once (a no-op if a
/// provider is already installed). rustls needs exactly one; without it the first TLS
/// connection would panic.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `error` is a TLS failure (an untrusted certificate, a refused client certificate, a
/// failed handshake): rustls's own error, which redis-rs returns as is or inside the I/O error
/// of the handshake.
pub fn is_tls_failure(error: &redis::RedisError) -> bool {
    let Some(source) = std::error::Error::source(error) else {
        return false;
    };
    // redis-rs keeps a cause as `Arc<dyn Error + Send + Sync>`.
    let cause: &(dyn std::error::Error + 'static) =
        match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(shared) => shared.as_ref(),
            None => source,
        };
    cause.is::<rustls::Error>()
        || cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_recognised_by_rustls_error_type() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let in_io = std::io::Error::new(std::io::ErrorKind::InvalidData, untrusted.clone());
        assert!(is_tls_failure(&redis::RedisError::from(in_io)));
        assert!(is_tls_failure(&redis::RedisError::from(untrusted)));
        // The words alone do not make a TLS failure.
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tls handshake: certificate",
        );
        assert!(!is_tls_failure(&redis::RedisError::from(refused)));
        assert!(!is_tls_failure(&redis::RedisError::from((
            redis::ErrorKind::Io,
            "Failed to create initial connections",
            "invalid peer certificate".to_owned(),
        ))));
    }

    #[test]
    fn nothing_set_means_no_certificates() {
        assert!(TlsFiles::default().certificates().unwrap().is_none());
    }

    #[test]
    fn files_are_read_and_missing_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let files = TlsFiles {
            ca_file: Some(ca),
            ..TlsFiles::default()
        };
        let certs = files.certificates().unwrap().unwrap();
        assert_eq!(certs.root_cert.as_deref(), Some(&b"not checked here"[..]));
        assert!(certs.client_tls.is_none());

        let missing = TlsFiles {
            cert_file: Some(dir.path().join("client.pem")),
            key_file: Some(dir.path().join("client.key")),
            ..TlsFiles::default()
        };
        let error = missing.certificates().unwrap_err();
        assert!(
            error.message.contains("redis.tls.cert_file") && error.message.contains("client.pem"),
            "{error}"
        );
    }
}
