//! Key builders. Every key of one entity carries the same hash tag, so an entity's velocity
//! counters, blacklist entry and apply-once marks share one slot and one atomic unit:
//!
//! | key | meaning |
//! |---|---|
//! | `vel:{u:<id>}:<window_s>:<bucket>` | velocity counter, `bucket = event_time / window` |
//! | `bl:{u:<id>}` | blacklist entry (JSON), written with its expiry |
//! | `ao:{u:<id>}` | apply-once marks: hash of `<topic>:<partition>` → highest applied offset |
//!
//! The tag prefix is per kind (`u`, `card`, `ip`, `dev`, `email`). A namespace (replay into
//! `shadow`) prefixes the whole key and keeps the tag, so slots do not change.
//!
//! Ids are untrusted. [`encode_id`] percent-encodes `{`, `}`, `%` and bytes outside printable
//! ASCII, so the tag always ends at the `}` we wrote, and different ids never share a key.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::event::EntityKind;

/// An entity whose keys share one hash tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// What the id identifies.
    pub kind: EntityKind,
    /// The raw (untrusted) id.
    pub id: String,
}

impl Entity {
    /// An entity of `kind` with the raw id `id`.
    pub fn new(kind: EntityKind, id: impl Into<String>) -> Entity {
        Entity {
            kind,
            id: id.into(),
        }
    }

    /// The hash tag including braces, e.g. `{u:42}`.
    pub fn tag(&self) -> String {
        let mut tag = String::with_capacity(self.id.len() + 8);
        tag.push('{');
        tag.push_str(self.kind.tag_prefix());
        tag.push(':');
        encode_id_into(&self.id, &mut tag);
        tag.push('}');
        tag
    }
}

/// Builds keys inside an optional namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBuilder {
    prefix: String,
}

impl KeyBuilder {
    /// Keys in the live namespace (no prefix).
    pub fn live() -> KeyBuilder {
        KeyBuilder::default()
    }

    /// Keys in namespace `name` (`<name>:vel:{…}…`); an empty name is the live namespace.
    pub fn namespaced(name: &str) -> KeyBuilder {
        if name.is_empty() {
            return KeyBuilder::live();
        }
        KeyBuilder {
            prefix: format!("{}:", encode_id(name)),
        }
    }

    /// `[ns:]vel:{tag}:<window_s>:<bucket>`.
    pub fn velocity(&self, tag: &str, window_seconds: u64, bucket: i64) -> String {
        let mut key = String::with_capacity(self.prefix.len() + tag.len() + 32);
        key.push_str(&self.prefix);
        key.push_str("vel:");
        key.push_str(tag);
        let _ = write!(key, ":{window_seconds}:{bucket}");
        key
    }

    /// `[ns:]bl:{tag}`.
    pub fn blacklist(&self, tag: &str) -> String {
        format!("{}bl:{tag}", self.prefix)
    }

    /// `[ns:]ao:{tag}`.
    pub fn applied(&self, tag: &str) -> String {
        format!("{}ao:{tag}", self.prefix)
    }
}

/// The bytes [`encode_id`] encodes: controls and space, the hash-tag braces, `%` itself (so the
/// encoding is reversible and two ids never meet), and — always, in `percent-encoding` — every
/// byte outside ASCII. Printable ASCII otherwise stays as it is.
const ID_ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'{').add(b'}').add(b'%');

/// Percent-encodes an id for use inside a key (see the module docs).
pub fn encode_id(id: &str) -> String {
    utf8_percent_encode(id, ID_ENCODED).to_string()
}

fn encode_id_into(id: &str, out: &mut String) {
    out.extend(utf8_percent_encode(id, ID_ENCODED));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::key_slot;
    use proptest::prelude::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let user = Entity::new(EntityKind::User, "42");
        let keys = KeyBuilder::live();
        assert_eq!(user.tag(), "{u:42}");
        assert_eq!(
            keys.velocity(&user.tag(), 60, 29_000_000),
            "vel:{u:42}:60:29000000"
        );
        assert_eq!(keys.blacklist(&user.tag()), "bl:{u:42}");
        assert_eq!(keys.applied(&user.tag()), "ao:{u:42}");
        let shadow = KeyBuilder::namespaced("shadow");
        assert_eq!(shadow.blacklist(&user.tag()), "shadow:bl:{u:42}");
    }

    #[test]
    fn braces_in_ids_are_encoded() {
        let tag = Entity::new(EntityKind::User, "a}b{c%").tag();
        assert_eq!(tag, "{u:a%7Db%7Bc%25}");
        let tag = Entity::new(EntityKind::Ip, "x\ny é").tag();
        assert_eq!(tag, "{ip:x%0Ay%20%C3%A9}");
    }

    /// The encoding as first written by hand: `{`, `}`, `%` and every byte outside `0x21..=0x7e`
    /// as `%XX`. Keys written by earlier versions must keep their names.
    fn encode_by_hand(id: &str) -> String {
        let mut out = String::new();
        for byte in id.bytes() {
            match byte {
                b'{' | b'}' | b'%' => out.push_str(&format!("%{byte:02X}")),
                0x21..=0x7e => out.push(byte as char),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
        out
    }

    #[test]
    fn every_ascii_byte_encodes_as_before() {
        for byte in 0u8..=0x7f {
            let id = (byte as char).to_string();
            assert_eq!(encode_id(&id), encode_by_hand(&id), "byte {byte:#04x}");
        }
    }

    proptest! {
        #[test]
        fn the_encoding_is_unchanged(id in any::<String>()) {
            prop_assert_eq!(encode_id(&id), encode_by_hand(&id));
        }

        #[test]
        fn every_key_of_an_entity_hashes_to_the_slot_of_its_tag(
            id in any::<String>(), ns in "[a-z{}]{0,6}", window in 1u64..100_000, bucket in any::<i64>()
        ) {
            let entity = Entity::new(EntityKind::Device, id.clone());
            let tag = entity.tag();
            let expected = key_slot(&tag.as_bytes()[1..tag.len() - 1]);
            for keys in [KeyBuilder::live(), KeyBuilder::namespaced(&ns)] {
                prop_assert_eq!(key_slot(keys.velocity(&tag, window, bucket).as_bytes()), expected);
                prop_assert_eq!(key_slot(keys.blacklist(&tag).as_bytes()), expected);
                prop_assert_eq!(key_slot(keys.applied(&tag).as_bytes()), expected);
            }
        }

        #[test]
        fn different_ids_never_share_a_tag(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(Entity::new(EntityKind::User, a).tag(), Entity::new(EntityKind::User, b).tag());
        }
    }
}
