//! The hash-slot function against the real thing: `CLUSTER KEYSLOT` on the 6-node test
//! cluster, for thousands of generated keys (braces, empty tags, unicode, binary bytes), and
//! the key builders' injection safety checked by the cluster too.

mod common;

use std::sync::OnceLock;

use fds_worker::event::EntityKind;
use fds_worker::slot::key_slot;
use fds_worker::slot::keys::{Entity, KeyBuilder};
use proptest::prelude::*;
use redis::Connection;

/// One connection to a node of the shared cluster for the whole binary.
fn redis() -> std::sync::MutexGuard<'static, Connection> {
    static CONNECTION: OnceLock<std::sync::Mutex<Connection>> = OnceLock::new();
    CONNECTION
        .get_or_init(|| {
            // Leaked on purpose: the cluster lives as long as the test binary.
            let cluster = Box::leak(Box::new(common::shared_cluster()));
            let url = cluster.seed_urls()[0].clone();
            let connection = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("connect to the test cluster");
            std::sync::Mutex::new(connection)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `CLUSTER KEYSLOT` of each key, in one pipelined round trip.
fn redis_slots(keys: &[Vec<u8>]) -> Vec<u16> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key.as_slice());
    }
    pipe.query(&mut *redis()).expect("CLUSTER KEYSLOT")
}

/// Keys shaped to hit every branch of the hash-tag rule.
fn tricky_key() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"{{".to_vec()),
        Just(b"}}".to_vec()),
        "[a-z0-9:]{0,6}".prop_map(String::into_bytes),
        "\\PC{0,4}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// 40 cases × 100 keys: thousands of keys per run.
    #[test]
    fn key_slot_equals_cluster_keyslot(keys in prop::collection::vec(tricky_key(), 100)) {
        let ours: Vec<u16> = keys.iter().map(|k| key_slot(k)).collect();
        prop_assert_eq!(ours, redis_slots(&keys));
    }

    /// Ids with braces, newlines, percent signs or binary-ish text never leave their entity's
    /// slot: every key built for an entity hashes (by Redis's own rule) to the slot of its tag.
    #[test]
    fn built_keys_stay_in_their_entitys_slot(id in "\\PC{0,12}|[{}%\\n\\x00-\\x1f]{1,12}") {
        let keys = KeyBuilder::live();
        let shadow = KeyBuilder::namespaced("shadow");
        let tag = Entity::new(EntityKind::User, &id).tag();
        let built: Vec<Vec<u8>> = vec![
            keys.feature(&tag, "user_tx_1m").into_bytes(),
            keys.feature_sum(&tag, "user_spend_1h", &id).into_bytes(),
            keys.feature_distinct(&tag, "user_devices_1h", 123).into_bytes(),
            keys.blacklist(&tag).into_bytes(),
            keys.applied(&tag).into_bytes(),
            shadow.feature(&tag, "user_tx_1h").into_bytes(),
            shadow.blacklist(&tag).into_bytes(),
        ];
        let slots = redis_slots(&built);
        let expected = key_slot(tag.as_bytes());
        for (key, slot) in built.iter().zip(slots) {
            prop_assert_eq!(slot, expected, "{}", String::from_utf8_lossy(key));
        }
    }
}

#[test]
fn documented_example_matches_redis() {
    let key = b"{user:42}:x".to_vec();
    assert_eq!(
        redis_slots(std::slice::from_ref(&key)),
        vec![key_slot(&key)]
    );
    assert_eq!(key_slot(&key), 15880);
}
