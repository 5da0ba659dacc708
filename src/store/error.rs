//! Classification of everything that can go wrong talking to Redis: one decision, made here,
//! on top of redis-rs's own error kinds.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// What kind of failure a Redis call had; the label used in metrics and DLQ headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The slot moved (`MOVED`/`ASK`) more often than the client follows on its own.
    Redirect,
    /// `TRYAGAIN`: a multi-key unit hit a slot in migration.
    TryAgain,
    /// `CLUSTERDOWN The cluster is down`: the whole cluster refuses (full coverage lost).
    ClusterDown,
    /// `CLUSTERDOWN Hash slot not served` and similar: this slot has no serving master.
    SlotDown,
    /// `MASTERDOWN`, `READONLY`: the node is a replica or lost its master mid-failover.
    MasterDown,
    /// `LOADING`: the node is loading its dataset after a restart.
    Loading,
    /// Connection refused, reset or dropped.
    Connection,
    /// No reply within the response timeout.
    Timeout,
    /// The function library is not loaded on the node (new or restarted node).
    FunctionMissing,
    /// `WAIT` did not see the write on enough replicas in time.
    NotReplicated,
    /// `WRONGTYPE`/not-an-integer: a key holds something we did not write.
    WrongType,
    /// `OOM`: the node is over `maxmemory`.
    OutOfMemory,
    /// The function raised an error, or replied with an unexpected shape.
    Script,
    /// Authentication or permission (`NOAUTH`, `WRONGPASS`, `NOPERM`).
    Auth,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Stable lowercase label (`fds.error.kind` header, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Redirect => "redirect",
            FailureKind::TryAgain => "tryagain",
            FailureKind::ClusterDown => "clusterdown",
            FailureKind::SlotDown => "slot_down",
            FailureKind::MasterDown => "masterdown",
            FailureKind::Loading => "loading",
            FailureKind::Connection => "connection",
            FailureKind::Timeout => "timeout",
            FailureKind::FunctionMissing => "function_missing",
            FailureKind::NotReplicated => "not_replicated",
            FailureKind::WrongType => "wrongtype",
            FailureKind::OutOfMemory => "oom",
            FailureKind::Script => "script",
            FailureKind::Auth => "auth",
            FailureKind::Other => "other",
        }
    }

    /// Worth retrying within the budget. OOM, WRONGTYPE and script errors will not get better
    /// by themselves and go straight to the dead-letter topic.
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            FailureKind::WrongType
                | FailureKind::OutOfMemory
                | FailureKind::Script
                | FailureKind::Auth
                | FailureKind::Other
        )
    }

    /// The failure says the slot's node cannot be reached (refused, reset, timed out, slot not
    /// served, redirected to a node we cannot reach).
    pub fn node_unreachable(self) -> bool {
        matches!(
            self,
            FailureKind::Connection
                | FailureKind::Timeout
                | FailureKind::SlotDown
                | FailureKind::Redirect
        )
    }

    /// The failure says the whole cluster is unavailable, not just this slot: wait for it
    /// (consumption pauses) instead of dead-lettering.
    pub fn cluster_wide(self) -> bool {
        self == FailureKind::ClusterDown
    }

    /// Classifies a redis-rs error.
    pub fn of(error: &RedisError) -> FailureKind {
        let detail = error.detail().unwrap_or_default();
        let code = error.code().unwrap_or_default();
        match error.kind() {
            ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
                FailureKind::Redirect
            }
            ErrorKind::Server(ServerErrorKind::TryAgain) => FailureKind::TryAgain,
            ErrorKind::Server(ServerErrorKind::ClusterDown) => {
                if error.to_string().contains("cluster is down") {
                    FailureKind::ClusterDown
                } else {
                    FailureKind::SlotDown
                }
            }
            ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::ReadOnly) => {
                FailureKind::MasterDown
            }
            ErrorKind::Server(ServerErrorKind::BusyLoading) => FailureKind::Loading,
            ErrorKind::Server(ServerErrorKind::NoScript) => FailureKind::FunctionMissing,
            ErrorKind::Server(ServerErrorKind::NoPerm) | ErrorKind::AuthenticationFailed => {
                FailureKind::Auth
            }
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => {
                if error.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Connection
                }
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => FailureKind::Script,
            _ => classify_text(code, detail),
        }
    }
}

/// Errors redis-rs has no kind for are told apart by their code and text.
fn classify_text(code: &str, detail: &str) -> FailureKind {
    let text = format!("{code} {detail}");
    if code == "WRONGTYPE" || text.contains("not an integer") {
        FailureKind::WrongType
    } else if code == "OOM" {
        FailureKind::OutOfMemory
    } else if code == "NOAUTH" || code == "WRONGPASS" || code == "NOPERM" {
        FailureKind::Auth
    } else if text.contains("Function not found") || text.contains("Library not found") {
        FailureKind::FunctionMissing
    } else if text.contains("timed out") || text.contains("Timeout") {
        FailureKind::Timeout
    } else if text.contains("Connection") || text.contains("connection") {
        FailureKind::Connection
    } else if text.contains("script") || text.contains("user_function") || code == "ERR" {
        FailureKind::Script
    } else {
        FailureKind::Other
    }
}

/// A Redis call that failed, with its classification.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis {kind} error: {message}", kind = kind.as_str())]
pub struct StoreError {
    /// The classification.
    pub kind: FailureKind,
    /// The error text (no secrets: Redis errors do not echo passwords).
    pub message: String,
}

impl StoreError {
    /// A classified error with a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}

impl From<RedisError> for StoreError {
    fn from(error: RedisError) -> StoreError {
        StoreError::new(FailureKind::of(&error), error.to_string())
    }
}
