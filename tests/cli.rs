//! The `fds-worker` binary: `keyslot` (checked against a real cluster-enabled `redis-server`),
//! `check-config` exit codes, and `--help` of every subcommand.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fds_worker::slot::key_slot;

/// Keys whose slots are compared with Redis, chosen for the hash-tag edge cases.
const KEYS: &[&str] = &[
    "{user:42}:x",
    "foo",
    "somekey",
    "vel:{u:42}:60:29000000",
    "bl:{ip:10.0.0.1}",
    "foo{}{bar}",
    "foo{{bar}}zap",
    "foo{bar}{zap}",
    "{",
    "}{",
    "{}",
    "ключ{ü}",
    "",
];

/// Runs the binary in an empty directory (no `config/`), so built-in defaults apply.
fn fds_worker(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_fds-worker"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("FDS_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `keyslot --json` rows as (key, hash_tag, slot, node).
fn keyslot_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["keyslot", "--json"];
    all.extend_from_slice(args);
    stdout(&fds_worker(&all))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn keyslot_prints_key_hash_tag_and_slot_in_a_table() {
    let text = stdout(&fds_worker(&["keyslot", "{user:42}:x", "foo"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("KEY"), "{text}");
    let expected = key_slot(b"{user:42}:x");
    assert_eq!(expected, key_slot(b"user:42"));
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, vec!["{user:42}:x", "user:42", &expected.to_string()]);
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row, vec!["foo", "-", "12182"]);
    // Columns line up: the slot column ends at the same offset on every line.
    let ends: Vec<usize> = lines.iter().map(|l| l.len()).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
}

#[test]
fn keyslot_json_matches_the_library() {
    for (row, key) in keyslot_json(KEYS).iter().zip(KEYS) {
        assert_eq!(row["key"], *key);
        assert_eq!(row["slot"], key_slot(key.as_bytes()), "{key}");
    }
    let rows = keyslot_json(&["{user:42}:x", "foo"]);
    assert_eq!(rows[0]["hash_tag"], "user:42");
    assert!(rows[1]["hash_tag"].is_null());
}

#[test]
fn keyslot_needs_a_key() {
    assert_eq!(fds_worker(&["keyslot"]).status.code(), Some(2));
}

/// A `redis-server --cluster-enabled yes` on a free port in a temp dir, killed on drop.
struct RedisNode {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisNode {
    /// `None` (with a note) when `redis-server` is not installed.
    fn start() -> RedisNode {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot start redis-server ({e}); install it with `apt-get install -y redis-server`"
            ),
        };
        let node = RedisNode {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// `redis-cli -p PORT args…`, trimmed stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn keyslot_agrees_with_redis_cluster_keyslot_and_finds_the_owner() {
    let node = RedisNode::start();
    let rows = keyslot_json(KEYS);
    for (row, key) in rows.iter().zip(KEYS) {
        let redis_slot: u64 = node
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key:?}: {e}"));
        assert_eq!(row["slot"], redis_slot, "slot of {key:?}");
    }

    // With no slots assigned, --cluster reports them unassigned; then the node takes them all.
    let url = format!("redis://127.0.0.1:{}", node.port);
    let rows = keyslot_json(&["--cluster", &url, "{user:42}:x"]);
    assert_eq!(rows[0]["node"], "(unassigned)");
    assert_eq!(node.cli(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]), "OK");
    let rows = keyslot_json(&["--cluster", &url, "{user:42}:x", "foo"]);
    for row in &rows {
        assert_eq!(row["node"], format!("127.0.0.1:{}", node.port), "{row}");
    }
    let table = stdout(&fds_worker(&["keyslot", "--cluster", &url, "foo"]));
    assert!(table.lines().next().unwrap().contains("NODE"), "{table}");
}

#[test]
fn keyslot_cluster_reports_an_unreachable_node_as_an_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = fds_worker(&["keyslot", "--cluster", &url, "foo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("fds.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_config_accepts_defaults_and_the_repository_file() {
    assert!(stdout(&fds_worker(&["check-config"])).contains("config OK"));
    let repo_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fds-worker.toml");
    let out = fds_worker(&["--config", repo_file.to_str().unwrap(), "check-config"]);
    assert!(stdout(&out).contains("config OK"));
}

#[test]
fn check_config_with_a_bad_file_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[features]]\nname = \"user_tx_1m\"\nentity = \"user\"\nwindow = \"1m\"\n\
         tile = \"5s\"\nthreshold = 0\n",
    );
    let out = fds_worker(&["check-config", "--config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`features[0].threshold`"), "{stderr}");
    assert!(stderr.contains("at least 1"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    let path = write_config(dir.path(), "[redis]\nnodes = [\"localhost\"]\n");
    let out = fds_worker(&["--config", &path, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`redis.nodes[0]`"), "{stderr}");

    let path = write_config(dir.path(), "[redis\nnodes = 1\n");
    let out = fds_worker(&["--config", &path, "check-config"]);
    assert_eq!(out.status.code(), Some(2), "TOML syntax error");
}

#[test]
fn check_config_with_a_missing_file_exits_2() {
    let out = fds_worker(&["--config", "/nonexistent/fds.toml", "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/fds.toml"), "{stderr}");
}

#[test]
fn check_config_print_shows_the_effective_config() {
    let text = stdout(&fds_worker(&["check-config", "--print"]));
    assert!(text.contains("[redis.retry]"), "{text}");
    assert!(text.contains("suspicious_email = \"90d\""), "{text}");
    assert!(
        text.trim_end()
            .ends_with("config OK: built-in defaults (no config file)")
    );
}

#[test]
fn help_of_every_subcommand_works_and_shows_examples() {
    for args in [
        &["--help"][..],
        &["keyslot", "--help"],
        &["check-config", "--help"],
        &["bench", "--help"],
        &["help", "keyslot"],
    ] {
        let text = stdout(&fds_worker(args));
        assert!(text.contains("Usage: fds-worker"), "{args:?}: {text}");
        assert!(text.contains("Examples:"), "{args:?}: {text}");
    }
    let top = stdout(&fds_worker(&["--help"]));
    for sub in ["keyslot", "check-config", "--config"] {
        assert!(top.contains(sub), "{top}");
    }
}

#[test]
fn rules_check_validates_a_rules_file_offline() {
    let text = stdout(&fds_worker(&["rules", "--help"]));
    assert!(text.contains("fds-worker rules check"), "{text}");
    assert!(text.contains("SIGHUP"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "version = \"v7\"\n[thresholds]\nuser_tx_1m = 4\n").unwrap();
    let out = fds_worker(&["rules", "check", good.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("rules OK") && text.contains("(version v7)"),
        "{text}"
    );
    assert!(text.contains("user_tx_1m > 4"), "{text}");
    assert!(text.contains("ip_tx_1m (no threshold)"), "{text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[thresholds]\nuser_tx_1m = 0\nuser_tx_1s = 3\n").unwrap();
    let out = fds_worker(&["rules", "check", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`thresholds.user_tx_1m`: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`thresholds.user_tx_1s`: no feature"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn help_of_the_ops_commands_shows_examples() {
    for args in [
        &["run", "--help"][..],
        &["cluster", "status", "--help"],
        &["blacklist", "check", "--help"],
        &["blacklist", "add", "--help"],
        &["blacklist", "remove", "--help"],
        &["tail", "--help"],
    ] {
        let text = stdout(&fds_worker(args));
        assert!(text.contains("Usage: fds-worker"), "{args:?}: {text}");
        assert!(text.contains("Examples:"), "{args:?}: {text}");
        assert!(
            text.contains(&format!("fds-worker {}", args[0])),
            "{args:?}: {text}"
        );
    }
    let top = stdout(&fds_worker(&["--help"]));
    for sub in ["cluster", "blacklist", "tail"] {
        assert!(top.contains(sub), "{top}");
    }
    for args in [&["cluster", "--help"][..], &["blacklist", "--help"]] {
        let text = stdout(&fds_worker(args));
        assert!(text.contains("Commands:"), "{args:?}: {text}");
    }
}

#[test]
fn blacklist_rejects_unknown_kinds_and_levels_naming_the_choices() {
    let out = fds_worker(&["blacklist", "check", "phone", "123"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("user, card_bin, ip, device, email"),
        "{stderr}"
    );
    let out = fds_worker(&["blacklist", "add", "ip", "1.2.3.4", "--level", "HIGH"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PERMANENT"), "{stderr}");
}

#[test]
fn replay_help_documents_every_flag_and_bad_bounds_are_refused() {
    let text = stdout(&fds_worker(&["replay", "--help"]));
    for expected in [
        "--topic",
        "--from",
        "--to",
        "--namespace",
        "--rate",
        "--max-lateness",
        "--dry-run",
        "--publish-enrichment",
        "--json",
        "Examples:",
        "fds-worker replay --from",
        "fds.replay",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(stdout(&fds_worker(&["--help"])).contains("replay"));

    let out = fds_worker(&["replay", "--from", "yesterday"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");
    // Refused before anything is contacted.
    for (args, reason) in [
        (
            &["--to", "2024-05-01T00:00:00Z", "--namespace", "shadow"][..],
            "must be after",
        ),
        (&["--namespace", "sh:adow"][..], "namespace `sh:adow`"),
        (
            &["--topic", "transactions-enriched"][..],
            "not a source topic",
        ),
    ] {
        let mut all = vec!["replay", "--from", "2024-05-02T00:00:00Z"];
        all.extend_from_slice(args);
        let out = fds_worker(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
