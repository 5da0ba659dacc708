//! Where the broker's jars are: fetched once from Maven Central by `scripts/kafka-jars.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::super::{LocalStackError, Result};

/// Environment variable naming a directory of Kafka broker jars (skips the fetch script).
// Not `FDS_*`: every `FDS_*` variable is read as worker configuration (and an unknown key refused).
pub const JARS_ENV: &str = "LOCALSTACK_KAFKA_JARS";

const INSTALL_JAVA: &str = "apt-get install -y openjdk-17-jre-headless";

/// The `java` program: `$JAVA_HOME/bin/java` when set, else `java` on `PATH`.
pub(crate) fn java() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    super::super::node::require_program("java", INSTALL_JAVA)
}

/// The directory holding the broker's jars: [`JARS_ENV`] if set, else what
/// `scripts/kafka-jars.sh` of this source tree prints (it fetches them on first use; later
/// calls are a cache lookup). Resolved once per process.
pub(crate) fn jar_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(resolve)
        .clone()
        .map_err(|detail| LocalStackError::Protocol {
            command: "locating the Apache Kafka jars".into(),
            detail,
        })
}

fn resolve() -> std::result::Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(JARS_ENV) {
        let dir = PathBuf::from(dir);
        return check(&dir).map(|()| dir);
    }
    // The repository's script: this crate is `crates/fds-testkit` in it.
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/fds-testkit has a repository two levels up");
    let script = repository.join("scripts/kafka-jars.sh");
    if !script.is_file() {
        return Err(format!(
            "{JARS_ENV} is not set and {} does not exist: point {JARS_ENV} at a directory of \
             org.apache.kafka:kafka_2.13 4.x jars and their dependencies",
            script.display()
        ));
    }
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    check(&dir).map(|()| dir)
}

fn check(dir: &Path) -> std::result::Result<(), String> {
    let has_broker = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("kafka_2.13-")
        });
    if has_broker {
        Ok(())
    } else {
        Err(format!("{} holds no kafka_2.13-*.jar", dir.display()))
    }
}

/// The `-cp` argument: every jar in `dir`.
pub(crate) fn classpath(dir: &Path) -> String {
    format!("{}/*", dir.display())
}
