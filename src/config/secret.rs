//! [`Secret`]: a string that never shows itself in logs, `Debug` output or config dumps.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "***";

/// A password or key passphrase.
///
/// `Debug`, `Display` and `Serialize` all print `***`, so a config dump
/// ([`Config::redacted_toml`](super::Config::redacted_toml)) or a `tracing` field can never leak
/// it; the only way to the value is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Pass it straight to the client that needs it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from a file (a mounted Kubernetes Secret, a Docker secret); one trailing
    /// newline is dropped because editors and `echo` add it.
    pub fn from_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            key: key.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Ok(Secret::new(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        // Lenient: `FDS_REDIS__PASSWORD=123456` arrives from figment's env parser as a number.
        super::de::string(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.to_string(), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_file_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file("k", &path).unwrap().expose(), "s3cret");
        let err =
            Secret::from_file("redis.password_file", &dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("redis.password_file"), "{err}");
    }
}
