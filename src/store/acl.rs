//! The least-privilege Redis ACL for the worker: exactly the commands it sends and the keys it
//! writes. `README.md` ("Security") shows the rule [`worker_acl_rule`] produces; a test keeps
//! the command list in step with `fds.lua`.
//!
//! Commands from a Redis Function are checked against the *caller's* ACL, so the user needs the
//! commands `fds.lua` calls as well as `FCALL`.

/// Commands (and subcommands) the worker sends, by who sends them:
/// - the store: `FUNCTION LOAD` (at start, on every master), `FCALL`, `ASKING` (after an `ASK`
///   redirect), `WAIT` (with `redis.wait_replicas`), `CLUSTER SLOTS` (slot map), `CLUSTER INFO`
///   (is the whole cluster down?);
/// - redis-rs: `PING` (connection check), `CLUSTER SLOTS`;
/// - the cluster monitor: `CLUSTER MYID`, `CLUSTER INFO`, `CLUSTER SHARDS`, `INFO`;
/// - `fds.lua`: `GET`, `SET`, `DEL`, `EXPIREAT`, `EXPIRETIME`, `HGET`, `HSET`, `HINCRBY`,
///   `HMGET`, `HLEN`, `HGETALL`, `HDEL`, `PFADD`, `PFCOUNT`, `PERSIST`, `PTTL`, `TIME`
///   (`HINCRBY` and `HKEYS` stay granted for the previous library, which a worker of the
///   previous version may load during a rolling upgrade).
///
/// `AUTH` and `HELLO` need no permission. redis-rs also sends `CLIENT SETINFO` and ignores its
/// failure; on Redis ≥ 7.2 add `+client|setinfo` to keep `NOPERM`s out of the ACL log.
pub const WORKER_COMMANDS: &[&str] = &[
    "fcall",
    "function|load",
    "asking",
    "wait",
    "ping",
    "cluster|slots",
    "cluster|info",
    "cluster|myid",
    "cluster|shards",
    "info",
    "get",
    "set",
    "del",
    "expireat",
    "expiretime",
    "hget",
    "hset",
    "hincrby",
    "hmget",
    "hlen",
    "hkeys",
    "hgetall",
    "hdel",
    "pfadd",
    "pfcount",
    "persist",
    "pttl",
    "time",
];

/// Key patterns the worker touches: feature tiles (`ft:` hashes, `fd:` HyperLogLogs), blacklist
/// entries and apply-once marks, live (`ft:{u:42}:…`) and in a replay namespace
/// (`shadow:ft:{u:42}:…`).
pub const WORKER_KEY_PATTERNS: &[&str] = &[
    "ft:*", "fd:*", "bl:*", "ao:*", "*:ft:*", "*:fd:*", "*:bl:*", "*:ao:*",
];

/// The worker user's permissions: only [`WORKER_KEY_PATTERNS`], no Pub/Sub channels, only
/// [`WORKER_COMMANDS`]: `resetkeys ~ft:* … resetchannels -@all +fcall …`. This is the part of
/// the rule that deployments keep in their own files (the chart's `redisCluster.workerAcl`,
/// `docker-compose.yml`); `tests/security.rs` checks they are equal to it.
pub fn worker_acl_permissions() -> String {
    let mut rule = String::from("resetkeys");
    for pattern in WORKER_KEY_PATTERNS {
        rule.push_str(" ~");
        rule.push_str(pattern);
    }
    rule.push_str(" resetchannels -@all");
    for command in WORKER_COMMANDS {
        rule.push_str(" +");
        rule.push_str(command);
    }
    rule
}

/// The whole ACL rule for a worker user (the part after `ACL SETUSER` or `user` in
/// `redis.conf` / an ACL file): `<user> on >password` then [`worker_acl_permissions`].
///
/// The password is in the rule as `>password`: build it where secrets may be (a Kubernetes
/// Secret, an ACL file with mode 0600), never log it. Use `#<sha256-hex>` instead of
/// `>password` to keep the clear text out of the file.
pub fn worker_acl_rule(user: &str, password: &str) -> String {
    format!("{user} on >{password} {}", worker_acl_permissions())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command `fds.lua` calls is granted: a new `redis.call` without its ACL entry
    /// would fail only on ACL-protected clusters, in production.
    #[test]
    fn every_command_of_the_function_library_is_granted() {
        let source = super::super::wire::LIBRARY_SOURCE;
        let mut called = Vec::new();
        for call in ["redis.call('", "redis.pcall('"] {
            for (at, _) in source.match_indices(call) {
                let rest = &source[at + call.len()..];
                let name = &rest[..rest.find('\'').expect("closing quote")];
                called.push(name.to_ascii_lowercase());
            }
        }
        assert!(called.len() >= 10, "found the calls: {called:?}");
        for command in called {
            assert!(
                WORKER_COMMANDS.contains(&command.as_str()),
                "fds.lua calls {command}, which the worker ACL does not grant"
            );
        }
    }

    #[test]
    fn the_rule_denies_everything_else() {
        let rule = worker_acl_rule("fds-worker", "pw");
        assert!(rule.starts_with("fds-worker on >pw resetkeys ~ft:* ~fd:* ~bl:* ~ao:* "));
        assert!(rule.contains(" resetchannels -@all +fcall +function|load "));
        for dangerous in [
            "flushall",
            "config",
            "keys",
            "@all",
            "eval",
            "function|delete",
        ] {
            assert!(!rule.contains(&format!("+{dangerous}")), "{dangerous}");
        }
    }
}
