//! Where the registry's runnable Quarkus application is (its runner jar, with `lib/` beside
//! it): [`JAR_ENV`], else what `scripts/apicurio-registry.sh` prints (it builds it once into
//! the git-ignored `.cache/apicurio/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::super::{LocalStackError, Result};

/// Environment variable naming the runner jar of an Apicurio Registry build (skips the
/// script).
// Not `FDS_*`: every `FDS_*` variable is read as worker configuration (and an unknown key refused).
pub const JAR_ENV: &str = "LOCALSTACK_APICURIO_JAR";

/// The runner jar, resolved once per process.
pub(crate) fn runner_jar() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(resolve)
        .clone()
        .map_err(|detail| LocalStackError::Protocol {
            command: "locating the Apicurio Registry runner jar".into(),
            detail,
        })
}

fn resolve() -> std::result::Result<PathBuf, String> {
    if let Some(jar) = std::env::var_os(JAR_ENV) {
        let jar = PathBuf::from(jar);
        return check(&jar).map(|()| jar);
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/fds-testkit has a repository two levels up");
    let script = repository.join("scripts/apicurio-registry.sh");
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
    let jar = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    check(&jar).map(|()| jar)
}

fn check(jar: &Path) -> std::result::Result<(), String> {
    if jar.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} is not a file (the runner jar of an Apicurio Registry build)",
            jar.display()
        ))
    }
}
