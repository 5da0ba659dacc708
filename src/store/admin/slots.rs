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

    fn node(ip: &str, port: i64) -> Value {
        Array(vec![
            BulkString(ip.into()),
            Int(port),
            BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn parses_ranges_and_their_masters() {
        let reply = Array(vec![
            Array(vec![
                Int(0),
                Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Array(vec![Int(5461), Int(16383), node("", 7001)]),
        ]);
        let ranges = parse_cluster_slots(&reply).unwrap();
        assert_eq!(
            ranges[0],
            SlotRange {
                first: 0,
                last: 5460,
                host: "10.0.0.1".into(),
                port: 7000
            }
        );
        assert_eq!((ranges[1].first, ranges[1].last), (5461, 16383));
        assert_eq!((ranges[1].host.as_str(), ranges[1].port), ("", 7001));
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
