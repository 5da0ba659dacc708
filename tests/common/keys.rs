//! Redis keys as data: every key of a kind with its value and expiry, and how two such
//! snapshots differ (a replay into a shadow namespace against the live keys).

use std::collections::BTreeMap;

use fds_testkit::demo::LocalStack;

/// Every key matching `pattern` (SCAN) on every master, with the master that holds it.
pub fn keys_matching(stack: &LocalStack, pattern: &str) -> Vec<(usize, String)> {
    let cluster = &stack.cluster;
    let mut keys = Vec::new();
    for master in cluster.masters() {
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = cluster
                .query(
                    master,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .unwrap();
            keys.extend(batch.into_iter().map(|key| (master, key)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    keys
}

/// Every key `<prefix><kind>:*` on every master, prefix stripped, with its value (a hash as
/// its sorted fields) and absolute expiry (`EXPIRETIME`, -1 = none).
pub fn snapshot(stack: &LocalStack, prefix: &str, kind: &str) -> BTreeMap<String, (String, i64)> {
    let cluster = &stack.cluster;
    let mut keys = BTreeMap::new();
    for (master, key) in keys_matching(stack, &format!("{prefix}{kind}:*")) {
        let kind: String = cluster.query(master, redis::cmd("TYPE").arg(&key)).unwrap();
        let value = match kind.as_str() {
            "string" => {
                let bytes: Vec<u8> = cluster.query(master, redis::cmd("GET").arg(&key)).unwrap();
                if bytes.starts_with(b"HYLL") {
                    // A distinct feature's tile: the same members give the same registers, but
                    // not always the same encoding (sparse or dense, by the order they came
                    // in), so a HyperLogLog is compared by its count.
                    let count: i64 = cluster
                        .query(master, redis::cmd("PFCOUNT").arg(&key))
                        .unwrap();
                    format!("hll:{count}")
                } else {
                    String::from_utf8(bytes).unwrap()
                }
            }
            "hash" => {
                let fields: BTreeMap<String, String> = cluster
                    .query(master, redis::cmd("HGETALL").arg(&key))
                    .unwrap();
                format!("{fields:?}")
            }
            other => panic!("{key}: unexpected type {other}"),
        };
        let expire_at: i64 = cluster
            .query(master, redis::cmd("EXPIRETIME").arg(&key))
            .unwrap();
        let stripped = key.strip_prefix(prefix).unwrap().to_owned();
        keys.insert(stripped, (value, expire_at));
    }
    keys
}

/// Keys present on one side only, or with another value or expiry.
pub fn differences(
    live: &BTreeMap<String, (String, i64)>,
    replayed: &BTreeMap<String, (String, i64)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in live {
        match replayed.get(key) {
            None => out.push(format!("{key}: only live {value:?}")),
            Some(other) if other != value => {
                out.push(format!("{key}: live {value:?}, replayed {other:?}"))
            }
            Some(_) => {}
        }
    }
    for (key, value) in replayed {
        if !live.contains_key(key) {
            out.push(format!("{key}: only replayed {value:?}"));
        }
    }
    out
}
