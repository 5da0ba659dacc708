//! Key builders. Every key of one entity carries the same hash tag, so an entity's velocity
//! counters, blacklist entry and apply-once marks share one slot and one atomic unit:
//!
//! | key | meaning |
//! |---|---|
//! | `ft:{u:<id>}:<feature>` | count feature: hash of tile index → count |
//! | `ft:{u:<id>}:<feature>:<currency>` | sum feature: hash of tile index → sum of minor units |
//! | `fd:{u:<id>}:<feature>:<tile>` | distinct feature: one tile's HyperLogLog |
//! | `bl:{u:<id>}` | blacklist entry (JSON), written with its expiry |
//! | `ao:{u:<id>}` | apply-once marks: hash of `<topic>:<partition>` → the last 8 applied offsets, newest (the mark) first (`812,799,731,`) |
//!
//! The tag prefix is per kind (`u`, `card`, `ip`, `dev`, `email`). A namespace (replay into
//! `shadow`) prefixes the whole key and keeps the tag, so slots do not change.
//!
//! Ids are untrusted. [`encode_id`] percent-encodes `{`, `}`, `%` and bytes outside printable
//! ASCII, so the tag always ends at the `}` we wrote, and different ids never share a key.

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

    /// `[ns:]ft:{tag}:<feature>`: a count feature's tiles (a hash, field = tile index).
    /// Feature names are `[a-z0-9_]` (validated), so they need no encoding.
    pub fn feature(&self, tag: &str, feature: &str) -> String {
        format!("{}ft:{tag}:{feature}", self.prefix)
    }

    /// `[ns:]ft:{tag}:<feature>:<currency>`: a sum feature's tiles in one currency (encoded
    /// like an id: it is untrusted input).
    pub fn feature_sum(&self, tag: &str, feature: &str, currency: &str) -> String {
        format!("{}ft:{tag}:{feature}:{}", self.prefix, encode_id(currency))
    }

    /// `[ns:]fd:{tag}:<feature>:<tile>`: one tile's HyperLogLog of a distinct feature.
    pub fn feature_distinct(&self, tag: &str, feature: &str, tile: i64) -> String {
        format!("{}fd:{tag}:{feature}:{tile}", self.prefix)
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
            keys.feature(&user.tag(), "user_tx_1m"),
            "ft:{u:42}:user_tx_1m"
        );
        assert_eq!(
            keys.feature_sum(&user.tag(), "user_spend_1h", "K{W}"),
            "ft:{u:42}:user_spend_1h:K%7BW%7D"
        );
        assert_eq!(
            keys.feature_distinct(&user.tag(), "user_devices_1h", -3),
            "fd:{u:42}:user_devices_1h:-3"
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
            id in any::<String>(), ns in "[a-z{}]{0,6}", currency in any::<String>(), tile in any::<i64>()
        ) {
            let entity = Entity::new(EntityKind::Device, id.clone());
            let tag = entity.tag();
            let expected = key_slot(&tag.as_bytes()[1..tag.len() - 1]);
            for keys in [KeyBuilder::live(), KeyBuilder::namespaced(&ns)] {
                prop_assert_eq!(key_slot(keys.feature(&tag, "f").as_bytes()), expected);
                prop_assert_eq!(key_slot(keys.feature_sum(&tag, "f", &currency).as_bytes()), expected);
                prop_assert_eq!(key_slot(keys.feature_distinct(&tag, "f", tile).as_bytes()), expected);
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
