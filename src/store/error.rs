//! Classification of everything that can go wrong talking to Redis: one decision, made here,
//! on top of redis-rs's own error kinds.

use redis::{ErrorKind, RedisError, RetryMethod, ServerErrorKind};

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
    /// `MASTERDOWN`, `READONLY`, `UNBLOCKED`: the node is a replica, lost its master or turned
    /// into a replica mid-call (failover).
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

    /// Worth retrying within the budget. WRONGTYPE and script errors will not get better by
    /// themselves and go straight to the dead-letter topic. OOM (`maxmemory` reached under
    /// `noeviction`) is an outage of the node's capacity, not of the event: tiles expire and
    /// operators add memory, so it backs off like an outage and dead-letters only past the
    /// budget — not a flood of dead letters the moment the node is full.
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            FailureKind::WrongType | FailureKind::Script | FailureKind::Auth | FailureKind::Other
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

    /// Classifies a redis-rs error by its kind, its server error code and redis-rs's own
    /// I/O flags ([`RedisError::is_timeout`], [`RedisError::is_connection_dropped`] …), never by
    /// its message. The one exception is [`ServerReason`]: the server reply's fixed reason
    /// phrase, where Redis gives one code to conditions handled differently.
    pub fn of(error: &RedisError) -> FailureKind {
        match error.kind() {
            ErrorKind::Server(kind) => FailureKind::of_server(kind, error.detail()),
            ErrorKind::Extension => FailureKind::of_code(error.code().unwrap_or_default()),
            ErrorKind::AuthenticationFailed => FailureKind::Auth,
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => {
                if error.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Connection
                }
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => FailureKind::Script,
            _ if error.is_timeout() => FailureKind::Timeout,
            _ if error.is_connection_dropped() || error.is_connection_refusal() => {
                FailureKind::Connection
            }
            _ => match error.retry_method() {
                RetryMethod::Reconnect | RetryMethod::ReconnectFromInitialConnections => {
                    FailureKind::Connection
                }
                _ => FailureKind::Other,
            },
        }
    }

    /// An error reply of a kind redis-rs knows.
    fn of_server(kind: ServerErrorKind, detail: Option<&str>) -> FailureKind {
        match kind {
            ServerErrorKind::Moved | ServerErrorKind::Ask => FailureKind::Redirect,
            ServerErrorKind::TryAgain => FailureKind::TryAgain,
            ServerErrorKind::ClusterDown => match ServerReason::of(detail) {
                Some(ServerReason::ClusterStateDown) => FailureKind::ClusterDown,
                _ => FailureKind::SlotDown,
            },
            ServerErrorKind::MasterDown | ServerErrorKind::ReadOnly => FailureKind::MasterDown,
            ServerErrorKind::BusyLoading => FailureKind::Loading,
            ServerErrorKind::NoScript => FailureKind::FunctionMissing,
            ServerErrorKind::NoPerm => FailureKind::Auth,
            // `ERR`: what an `FCALL` answers when its function raised an error, and also when
            // the node has no such function (a node that restarted empty).
            ServerErrorKind::ResponseError => match ServerReason::of(detail) {
                Some(ServerReason::FunctionNotFound) => FailureKind::FunctionMissing,
                _ => FailureKind::Script,
            },
            _ => FailureKind::Other,
        }
    }

    /// An error reply whose code redis-rs has no kind for.
    fn of_code(code: &str) -> FailureKind {
        match code {
            "WRONGTYPE" => FailureKind::WrongType,
            "OOM" => FailureKind::OutOfMemory,
            "NOAUTH" | "WRONGPASS" | "NOPERM" => FailureKind::Auth,
            // A function running past `busy-reply-threshold` (ours are short: treated as a
            // function error, not waited for).
            "BUSY" => FailureKind::Script,
            // A blocking command (our `WAIT` for replica acks) interrupted because the master
            // turned into a replica (`CLUSTER FAILOVER`): the write may or may not have been
            // applied; apply-once makes the retry against the new master safe.
            "UNBLOCKED" => FailureKind::MasterDown,
            _ => FailureKind::Other,
        }
    }
}

/// The reason phrase of an error reply, for the two codes that Redis uses for conditions the
/// worker must tell apart: `CLUSTERDOWN` (the whole cluster, or one unserved slot) and `ERR`
/// (a function's error, or no such function). redis-rs gives each a single kind; the phrases
/// are fixed strings of the server (`clusterRedirectClient` and `fcallCommandGeneric` in
/// Redis's source), compared whole at the start of the detail, not searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerReason {
    /// `CLUSTERDOWN The cluster is down` (also `… and only accepts read commands`): the
    /// cluster's state is `fail`.
    ClusterStateDown,
    /// `CLUSTERDOWN Hash slot not served`: no master has the slot.
    SlotNotServed,
    /// `ERR Function not found`: the node does not have the function library.
    FunctionNotFound,
}

impl ServerReason {
    const PHRASES: [(&'static str, ServerReason); 3] = [
        ("The cluster is down", ServerReason::ClusterStateDown),
        ("Hash slot not served", ServerReason::SlotNotServed),
        ("Function not found", ServerReason::FunctionNotFound),
    ];

    /// The reason of an error reply's detail, if it is one of the known phrases.
    pub fn of(detail: Option<&str>) -> Option<ServerReason> {
        let detail = detail?.trim_start();
        ServerReason::PHRASES
            .iter()
            .find(|(phrase, _)| detail.starts_with(phrase))
            .map(|(_, reason)| *reason)
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

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// The error of a RESP error reply, e.g. `-CLUSTERDOWN The cluster is down`.
    fn reply(line: &str) -> RedisError {
        let wire = format!("-{line}\r\n");
        redis::parse_redis_value(wire.as_bytes())
            .expect("an error reply parses")
            .extract_error()
            .expect_err("an error reply is an error")
    }

    fn io_error(kind: io::ErrorKind) -> RedisError {
        RedisError::from(io::Error::new(kind, "whatever the text says"))
    }

    #[test]
    fn every_server_code_maps_to_its_kind() {
        let cases = [
            ("MOVED 3999 127.0.0.1:7001", FailureKind::Redirect),
            ("ASK 3999 127.0.0.1:7001", FailureKind::Redirect),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                FailureKind::TryAgain,
            ),
            ("CLUSTERDOWN The cluster is down", FailureKind::ClusterDown),
            (
                "CLUSTERDOWN The cluster is down and only accepts read commands",
                FailureKind::ClusterDown,
            ),
            ("CLUSTERDOWN Hash slot not served", FailureKind::SlotDown),
            (
                "MASTERDOWN Link with MASTER is down",
                FailureKind::MasterDown,
            ),
            (
                "READONLY You can't write against a read only replica.",
                FailureKind::MasterDown,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                FailureKind::Loading,
            ),
            ("NOSCRIPT No matching script.", FailureKind::FunctionMissing),
            ("ERR Function not found", FailureKind::FunctionMissing),
            (
                "ERR user_function:12: attempt to index a nil value",
                FailureKind::Script,
            ),
            (
                "NOPERM User fds has no permissions to run 'fcall'",
                FailureKind::Auth,
            ),
            ("NOAUTH Authentication required.", FailureKind::Auth),
            (
                "WRONGPASS invalid username-password pair",
                FailureKind::Auth,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                FailureKind::WrongType,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                FailureKind::OutOfMemory,
            ),
            ("BUSY Redis is busy running a script.", FailureKind::Script),
            (
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
                FailureKind::MasterDown,
            ),
            ("EXECABORT Transaction discarded", FailureKind::Other),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                FailureKind::Other,
            ),
            ("SOMETHINGNEW with any text", FailureKind::Other),
        ];
        for (line, kind) in cases {
            assert_eq!(FailureKind::of(&reply(line)), kind, "{line}");
        }
    }

    #[test]
    fn the_message_text_does_not_decide_the_kind() {
        // Words the old text matching looked for, under codes that say otherwise.
        assert_eq!(
            FailureKind::of(&reply("WRONGTYPE Connection timed out")),
            FailureKind::WrongType
        );
        assert_eq!(
            FailureKind::of(&reply("ERR connection Timeout in script")),
            FailureKind::Script
        );
        assert_eq!(
            FailureKind::of(&reply("SOMECODE the cluster is down, connection timed out")),
            FailureKind::Other
        );
        // The reason phrase counts only where it starts the detail of its own code.
        assert_eq!(
            FailureKind::of(&reply("ERR The cluster is down")),
            FailureKind::Script
        );
        assert_eq!(
            FailureKind::of(&reply("CLUSTERDOWN Function not found")),
            FailureKind::SlotDown
        );
        assert_eq!(
            FailureKind::of(&reply("ERR user_function: Function not found in table")),
            FailureKind::Script
        );
    }

    #[test]
    fn io_errors_are_told_apart_by_their_io_kind() {
        assert_eq!(
            FailureKind::of(&io_error(io::ErrorKind::TimedOut)),
            FailureKind::Timeout
        );
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::Other,
        ] {
            assert_eq!(
                FailureKind::of(&io_error(kind)),
                FailureKind::Connection,
                "{kind:?}"
            );
        }
        let dropped = RedisError::from((ErrorKind::Io, "connection dropped"));
        assert_eq!(FailureKind::of(&dropped), FailureKind::Connection);
        let no_connection =
            RedisError::from((ErrorKind::ClusterConnectionNotFound, "No connections found"));
        assert_eq!(FailureKind::of(&no_connection), FailureKind::Connection);
    }

    #[test]
    fn client_side_errors_have_their_own_kinds() {
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(FailureKind::of(&auth), FailureKind::Auth);
        let shape = RedisError::from((ErrorKind::UnexpectedReturnType, "not a bulk string"));
        assert_eq!(FailureKind::of(&shape), FailureKind::Script);
        let config = RedisError::from((ErrorKind::InvalidClientConfig, "Redis URL did not parse"));
        assert_eq!(FailureKind::of(&config), FailureKind::Other);
        let client = RedisError::from((
            ErrorKind::Client,
            "request wasn't handled due to internal failure",
            "connection timed out".to_owned(),
        ));
        assert_eq!(FailureKind::of(&client), FailureKind::Other);
    }

    #[test]
    fn only_errors_that_can_get_better_are_retried() {
        for kind in [
            FailureKind::WrongType,
            FailureKind::Script,
            FailureKind::Auth,
            FailureKind::Other,
        ] {
            assert!(!kind.retryable(), "{kind:?}");
        }
        for kind in [
            FailureKind::OutOfMemory,
            FailureKind::Redirect,
            FailureKind::TryAgain,
            FailureKind::ClusterDown,
            FailureKind::SlotDown,
            FailureKind::MasterDown,
            FailureKind::Loading,
            FailureKind::Connection,
            FailureKind::Timeout,
            FailureKind::FunctionMissing,
            FailureKind::NotReplicated,
        ] {
            assert!(kind.retryable(), "{kind:?}");
        }
    }

    #[test]
    fn reasons_are_read_from_the_start_of_the_detail() {
        assert_eq!(
            ServerReason::of(Some("Hash slot not served")),
            Some(ServerReason::SlotNotServed)
        );
        assert_eq!(
            ServerReason::of(Some("slot 12: Hash slot not served")),
            None
        );
        assert_eq!(ServerReason::of(None), None);
    }
}
