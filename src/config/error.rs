//! [`ConfigError`]: every way loading or validating the configuration fails, each naming the key.

use std::fmt;
use std::io;
use std::path::PathBuf;

use figment::error::Kind;

use super::ENV_PREFIX;

/// Loading or validating the configuration failed. Every variant names the key (a dotted path
/// such as `velocity.windows[0].threshold`) or the file at fault, and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file given explicitly (`--config`, `FDS_CONFIG`) does not exist.
    #[error("config file {} does not exist", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// A file the config points at (a `*_file` secret) could not be read.
    #[error("`{key}`: cannot read {}", path.display())]
    ReadFile {
        /// The key that names the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The file is not valid TOML, or another error not tied to one key.
    #[error("{message}")]
    Syntax {
        /// figment's / toml's message, with the file and line.
        message: String,
    },
    /// One or more keys have wrong values (type, unknown name, out of range, inconsistent).
    #[error("{}", ProblemList(problems))]
    Invalid {
        /// Every problem found, in key order of discovery.
        problems: Vec<Problem>,
    },
    /// The config could not be rendered as TOML (a bug: every config type is serializable).
    #[error("cannot render the config as TOML: {0}")]
    Render(String),
}

impl ConfigError {
    /// One invalid key.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            problems: vec![Problem::new(key, reason)],
        }
    }

    /// Names `path` as the origin of every problem that has none (a rules file's problems).
    pub fn in_file(self, path: &std::path::Path) -> ConfigError {
        match self {
            ConfigError::Invalid { mut problems } => {
                for problem in &mut problems {
                    problem
                        .origin
                        .get_or_insert_with(|| format!("rules file {}", path.display()));
                }
                ConfigError::Invalid { problems }
            }
            other => other,
        }
    }

    /// The keys this error is about (empty for errors not tied to a key).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            ConfigError::Invalid { problems } => problems.iter().map(|p| p.key.as_str()).collect(),
            ConfigError::ReadFile { key, .. } => vec![key.as_str()],
            _ => Vec::new(),
        }
    }
}

/// One invalid key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, list elements as `[i]`: `velocity.windows[0].threshold`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
    /// Where the bad value came from (`TOML file …`, `environment variable FDS_…`), if known.
    pub origin: Option<String>,
}

impl Problem {
    /// A problem found by validation (origin unknown: defaults, file and env are merged by then).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            reason: reason.into(),
            origin: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.reason)?;
        if let Some(origin) = &self.origin {
            write!(f, " (in {origin})")?;
        }
        Ok(())
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "invalid config: {one}"),
            many => {
                write!(f, "invalid config ({} problems): ", many.len())?;
                for (i, p) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// Renders a figment path (`["velocity", "windows", "0", "threshold"]`) as
/// `velocity.windows[0].threshold`.
pub(crate) fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> ConfigError {
        let mut problems = Vec::new();
        let mut untied = Vec::new();
        for e in error {
            let mut path = e.path.clone();
            let reason = match &e.kind {
                Kind::UnknownField(name, expected) => {
                    push_unless_last(&mut path, name);
                    format!("unknown key (expected one of: {})", expected.join(", "))
                }
                Kind::MissingField(name) => {
                    push_unless_last(&mut path, name);
                    "missing".to_owned()
                }
                Kind::InvalidValue(_, expected) if expected == "a duration" => format!(
                    "{} (write durations like \"500ms\", \"10s\", \"5m\", \"1h\", \"7d\")",
                    e.kind
                ),
                kind => kind.to_string(),
            };
            if path.is_empty() {
                untied.push(one_line(&e.to_string()));
                continue;
            }
            let origin = e.metadata.as_ref().map(|md| {
                if md.name.contains("environment") {
                    format!(
                        "environment variable {ENV_PREFIX}{}",
                        path.join("__").to_uppercase()
                    )
                } else {
                    match &md.source {
                        Some(source) => format!("{} {source}", md.name),
                        None => md.name.to_string(),
                    }
                }
            });
            problems.push(Problem {
                key: dotted(&path),
                reason,
                origin,
            });
        }
        if problems.is_empty() {
            return ConfigError::Syntax {
                message: untied.join("; "),
            };
        }
        ConfigError::Invalid { problems }
    }
}

/// toml's parse errors draw the line with carets over several lines; keep the words, on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// figment puts an unknown or missing field's name at the end of the path already; serde
/// errors raised elsewhere may not.
fn push_unless_last(path: &mut Vec<String>, name: &str) {
    if path.last().map(String::as_str) != Some(name) {
        path.push(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_indices_render_in_brackets() {
        let path: Vec<String> = ["velocity", "windows", "0", "threshold"]
            .map(String::from)
            .to_vec();
        assert_eq!(dotted(&path), "velocity.windows[0].threshold");
        assert_eq!(dotted(&["redis".into()]), "redis");
    }

    #[test]
    fn toml_syntax_errors_fit_on_one_line() {
        let message = "TOML parse error at line 1, column 7\n  |\n1 | [redis\n  |       ^\n\
                       invalid table header\nexpected `.`, `]`\n in bad.toml TOML file";
        assert_eq!(
            one_line(message),
            "TOML parse error at line 1, column 7: invalid table header: expected `.`, `]`: \
             in bad.toml TOML file"
        );
    }

    #[test]
    fn several_problems_render_on_one_line() {
        let e = ConfigError::Invalid {
            problems: vec![Problem::new("a.b", "bad"), Problem::new("c", "worse")],
        };
        assert_eq!(
            e.to_string(),
            "invalid config (2 problems): `a.b`: bad; `c`: worse"
        );
        assert_eq!(e.keys(), vec!["a.b", "c"]);
    }
}
