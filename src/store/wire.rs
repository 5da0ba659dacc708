//! The contract with `fds.lua`: a [`SlotUnit`] as `FCALL` arguments, and its reply as a
//! [`UnitAnswer`].

use redis::Value;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::event::ThreatLevel;
use crate::plan::{
    BlacklistAdd, BlacklistEntry, EventOp, FeatureWrite, OpAnswer, SlotUnit, UnitAnswer,
};

/// The Lua library's source as written (library `fds`, function `fds_apply_v1`).
pub const LIBRARY_SOURCE: &str = include_str!("fds.lua");

/// The library name in [`LIBRARY_SOURCE`], and the default of `redis.function_library`.
pub use crate::config::DEFAULT_LIBRARY;

/// The function's name after the library's: function names are global on a Redis server, so
/// two deployments sharing a cluster under different library names do not collide. The
/// version suffix lets an upgraded worker load a new library while old workers still run.
const FUNCTION_SUFFIX: &str = "_apply_v1";

/// The function library under a configured name (`redis.function_library`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The library's name (`FUNCTION LIST LIBRARYNAME`).
    pub name: String,
    /// The function every unit calls.
    pub function: String,
    /// The source to `FUNCTION LOAD REPLACE`.
    pub source: String,
}

impl Library {
    /// The library named `name` (letters, digits and `_`, checked by the config).
    pub fn named(name: &str) -> Library {
        let function = format!("{name}{FUNCTION_SUFFIX}");
        let source = LIBRARY_SOURCE
            .replacen(
                &format!("#!lua name={DEFAULT_LIBRARY}\n"),
                &format!("#!lua name={name}\n"),
                1,
            )
            .replacen(
                &format!("redis.register_function('{DEFAULT_LIBRARY}{FUNCTION_SUFFIX}'"),
                &format!("redis.register_function('{function}'"),
                1,
            );
        Library {
            name: name.to_owned(),
            function,
            source,
        }
    }
}

impl Default for Library {
    fn default() -> Library {
        Library::named(DEFAULT_LIBRARY)
    }
}

/// The `FCALL` of `function` for `unit`.
pub fn unit_command(unit: &SlotUnit, function: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function).arg(unit.keys.len());
    for key in &unit.keys {
        cmd.arg(key.as_str());
    }
    cmd.arg(unit_json(unit));
    cmd
}

/// The unit's operations as the JSON `fds.lua` reads (keys by index).
pub fn unit_json(unit: &SlotUnit) -> String {
    serde_json::to_string(&WireUnit(unit)).expect("a unit always serializes")
}

struct WireUnit<'a>(&'a SlotUnit);

impl Serialize for WireUnit<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Unit<'a> {
            e: Vec<Entity<'a>>,
        }
        #[derive(Serialize)]
        struct Entity<'a> {
            m: u32,
            b: u32,
            o: Vec<Op<'a>>,
        }
        let unit = Unit {
            e: self
                .0
                .entities
                .iter()
                .map(|entity| Entity {
                    m: entity.marks_key,
                    b: entity.blacklist_key,
                    o: entity.ops.iter().map(Op::from).collect(),
                })
                .collect(),
        };
        unit.serialize(serializer)
    }
}

#[derive(Serialize)]
struct Op<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    f: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on: Option<i64>,
    #[serde(skip_serializing_if = "Features::is_empty")]
    v: Features<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    br: Option<Add<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<Add<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<i64>,
    #[serde(skip_serializing_if = "is_zero")]
    k: u8,
}

impl<'a> From<&'a EventOp> for Op<'a> {
    fn from(op: &'a EventOp) -> Op<'a> {
        Op {
            f: op.mark.as_ref().map(|(field, _)| field.as_str()),
            n: op.mark.as_ref().map(|(_, offset)| *offset),
            of: op.origin.as_ref().map(|(field, _)| field.as_str()),
            on: op.origin.as_ref().map(|(_, offset)| *offset),
            v: Features(op),
            br: op.breach.as_ref().map(Add),
            a: op.add.as_ref().map(Add),
            d: op.remove_before_ms,
            k: u8::from(op.lookup),
        }
    }
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

struct Features<'a>(&'a EventOp);

impl Features<'_> {
    fn is_empty(&self) -> bool {
        self.0.features.is_empty()
    }
}

impl Serialize for Features<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// One feature op as `fds.lua` reads it (see the header of the library).
        #[derive(Serialize)]
        struct Wire<'a> {
            g: &'static str,
            k: u32,
            #[serde(skip_serializing_if = "<[u32]>::is_empty")]
            p: &'a [u32],
            t: i64,
            n: u32,
            s: u64,
            x: i64,
            c: u32,
            h: u64,
            w: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            a: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            m: Option<&'a str>,
        }
        let mut seq = serializer.serialize_seq(Some(self.0.features.len()))?;
        for f in &self.0.features {
            let (g, a, m) = match &f.write {
                FeatureWrite::Count => ("count", Some(1), None),
                FeatureWrite::Sum { amount } => ("sum", Some(*amount), None),
                FeatureWrite::Distinct { member } => ("distinct", None, Some(member.as_str())),
            };
            seq.serialize_element(&Wire {
                g,
                k: f.key,
                p: &f.tile_keys,
                t: f.tile,
                n: f.window_tiles,
                s: f.tile_seconds,
                x: f.expire_at_s,
                c: f.max_tiles,
                h: f.threshold,
                w: f.window_seconds,
                a,
                m,
            })?;
        }
        seq.end()
    }
}

struct Add<'a>(&'a BlacklistAdd);

impl Serialize for Add<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            l: &'static str,
            x: i64,
            re: &'a str,
            s: &'a str,
            t: i64,
        }
        Wire {
            l: self.0.level.as_str(),
            x: self.0.expire_at_s,
            re: &self.0.reason,
            s: &self.0.source,
            t: self.0.added_at_ms,
        }
        .serialize(serializer)
    }
}

/// A reply that does not have the shape `fds.lua` returns (a version mismatch or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the fds function: {0}")]
pub struct ReplyShapeError(pub String);

/// Decodes the reply of [`unit_command`] for `unit`.
pub fn decode_reply(unit: &SlotUnit, reply: Value) -> Result<UnitAnswer, ReplyShapeError> {
    let entities = into_array(reply, "reply")?;
    if entities.len() != unit.entities.len() {
        return Err(ReplyShapeError(format!(
            "{} entities answered, {} sent",
            entities.len(),
            unit.entities.len()
        )));
    }
    let mut answer = UnitAnswer {
        entities: Vec::with_capacity(entities.len()),
    };
    for (entity, sent) in entities.into_iter().zip(&unit.entities) {
        let ops = into_array(entity, "entity")?;
        if ops.len() != sent.ops.len() {
            return Err(ReplyShapeError(format!(
                "{} ops answered, {} sent for {}",
                ops.len(),
                sent.ops.len(),
                sent.tag
            )));
        }
        let answers = ops
            .into_iter()
            .map(decode_op)
            .collect::<Result<Vec<_>, _>>()?;
        answer.entities.push(answers);
    }
    Ok(answer)
}

fn decode_op(op: Value) -> Result<OpAnswer, ReplyShapeError> {
    let mut fields = into_array(op, "op")?.into_iter();
    let applied = as_int(fields.next().unwrap_or(Value::Nil), "applied")? == 1;
    let counts = into_array(fields.next().unwrap_or(Value::Nil), "counts")?
        .into_iter()
        .map(|count| as_int(count, "count"))
        .collect::<Result<Vec<_>, _>>()?;
    let breached = as_int(fields.next().unwrap_or(Value::Nil), "breached")? == 1;
    let raw_entry = as_text(fields.next().unwrap_or(Value::Nil));
    let ttl = fields.next().unwrap_or(Value::Nil);
    let entry = match raw_entry {
        Some(raw) => parse_entry(&raw, as_int(ttl, "pttl")?),
        None => None,
    };
    let error = as_text(fields.next().unwrap_or(Value::Nil));
    Ok(OpAnswer {
        applied,
        counts,
        breached,
        entry,
        error,
    })
}

/// Parses a blacklist entry's JSON; `pttl` is Redis's PTTL (-1 = no expiry). An entry that is
/// not ours (unparseable) reads as no entry.
pub fn parse_entry(raw: &str, pttl: i64) -> Option<BlacklistEntry> {
    #[derive(serde::Deserialize)]
    struct Stored {
        threat_level: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        source: String,
        #[serde(default)]
        added_at: f64,
    }
    let stored: Stored = serde_json::from_str(raw).ok()?;
    Some(BlacklistEntry {
        threat_level: ThreatLevel::parse(&stored.threat_level)?,
        reason: stored.reason,
        source: stored.source,
        added_at_ms: stored.added_at as i64,
        ttl_ms: (pttl >= 0).then_some(pttl),
    })
}

fn into_array(value: Value, what: &str) -> Result<Vec<Value>, ReplyShapeError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        // Lua's empty table comes back as an empty array, but be lenient with a nil.
        Value::Nil => Ok(Vec::new()),
        other => Err(ReplyShapeError(format!(
            "{what}: expected array, got {other:?}"
        ))),
    }
}

fn as_int(value: Value, what: &str) -> Result<i64, ReplyShapeError> {
    match value {
        Value::Int(number) => Ok(number),
        Value::Nil => Ok(0),
        other => Err(ReplyShapeError(format!(
            "{what}: expected integer, got {other:?}"
        ))),
    }
}

fn as_text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_name_renames_the_library_and_its_function() {
        assert_eq!(Library::default().source, LIBRARY_SOURCE);
        assert_eq!(Library::default().function, "fds_apply_v1");
        let shadow = Library::named("fds_shadow");
        assert_eq!(shadow.function, "fds_shadow_apply_v1");
        assert!(shadow.source.starts_with("#!lua name=fds_shadow\n"));
        assert!(
            shadow
                .source
                .contains("redis.register_function('fds_shadow_apply_v1', apply)")
        );
        assert!(!shadow.source.contains("'fds_apply_v1'"));
    }
}
