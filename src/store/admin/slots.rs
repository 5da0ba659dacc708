//! `CLUSTER SLOTS`: `[[first, last, [ip, port, id, …], replicas…], …]`, the slot ranges and the
//! master serving each.

use redis::{Value, from_redis_value_ref};

use crate::slot::Slot;

/// One range of a `CLUSTER SLOTS` reply and its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot, inclusive.
    pub first: Slot,
    /// Last slot, inclusive.
    pub last: Slot,
    /// The master's IP or hostname as the node announces it; empty means "the address you
    /// reached me on" (Redis docs).
    pub host: String,
    /// The master's client port.
    pub port: u16,
}

/// Parses a `CLUSTER SLOTS` reply; an entry of another shape is an error.
pub fn parse_cluster_slots(reply: &Value) -> Result<Vec<SlotRange>, String> {
    let Value::Array(entries) = reply else {
        return Err(format!("CLUSTER SLOTS: expected an array, got {reply:?}"));
    };
    entries.iter().map(parse_entry).collect()
}

fn parse_entry(entry: &Value) -> Result<SlotRange, String> {
    let fields = match entry {
        Value::Array(fields) => fields.as_slice(),
        _ => &[],
    };
    let [first, last, Value::Array(master), ..] = fields else {
        return Err(format!("unexpected CLUSTER SLOTS entry: {entry:?}"));
    };
    let [host, port, ..] = master.as_slice() else {
        return Err(format!("unexpected CLUSTER SLOTS node: {master:?}"));
    };
    let bad = |e: redis::ParsingError| format!("CLUSTER SLOTS entry {entry:?}: {e}");
    Ok(SlotRange {
        first: from_redis_value_ref(first).map_err(bad)?,
        last: from_redis_value_ref(last).map_err(bad)?,
        host: from_redis_value_ref(host).map_err(bad)?,
        port: from_redis_value_ref(port).map_err(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use redis::Value::{Array, BulkString, Int, SimpleString};

    use super::*;

    #[test]
    fn parses_ranges_and_their_masters_ignoring_replicas() {
        // One range, its master announced as text, a replica after it.
        let master = Array(vec![SimpleString("::1".into()), Int(6379)]);
        let replica = Array(vec![BulkString(b"10.0.0.9".to_vec()), Int(6380)]);
        let reply = Array(vec![Array(vec![Int(42), Int(42), master, replica])]);
        assert_eq!(
            parse_cluster_slots(&reply).unwrap(),
            [SlotRange {
                first: 42,
                last: 42,
                host: "::1".into(),
                port: 6379
            }]
        );
        assert_eq!(parse_cluster_slots(&Array(vec![])).unwrap(), []);
    }

    #[test]
    fn other_shapes_are_errors() {
        assert!(parse_cluster_slots(&Int(1)).is_err());
        assert!(parse_cluster_slots(&Array(vec![Array(vec![Int(0), Int(1)])])).is_err());
        let bad_port = Array(vec![Array(vec![
            Int(0),
            Int(1),
            Array(vec![SimpleString("h".into()), SimpleString("x".into())]),
        ])]);
        assert!(parse_cluster_slots(&bad_port).is_err());
    }
}
