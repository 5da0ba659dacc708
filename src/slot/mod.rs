//! Redis Cluster hash slots and the keys fds-worker writes.
//!
//! - [`key_slot`]: CRC16/XMODEM of the key's hash tag, mod 16384 — the same function as
//!   `CLUSTER KEYSLOT` (checked against a real cluster by a property test).
//! - [`keys`]: key builders that encode untrusted ids so a `{` or `}` inside an id cannot move a
//!   key to another entity's slot (hash-tag injection).

pub mod keys;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A hash slot, `0..16384`.
pub type Slot = u16;

/// The part of `key` that is hashed, by Redis's rule: if the key has a `{`, and a `}` somewhere
/// after it, and at least one byte between them, only those bytes are hashed; otherwise the
/// whole key is.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after_open = &key[open + 1..];
    match after_open.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &after_open[..close],
        _ => key,
    }
}

/// The hash slot of `key`: CRC16/XMODEM of [`hash_tag`] mod 16384.
pub fn key_slot(key: &[u8]) -> Slot {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) % SLOT_COUNT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots_match_redis_documentation() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 0x31c3 % SLOT_COUNT);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    #[test]
    fn hash_tag_follows_the_first_brace_pair_rules() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(
            hash_tag(b"foo{}{bar}"),
            b"foo{}{bar}",
            "empty tag hashes whole key"
        );
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{", "unclosed brace hashes whole key");
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b""), b"");
    }
}
