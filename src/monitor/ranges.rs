//! Slot ranges: runs of slots from per-slot flags, and their compact text (`0-5460,10923`).

use crate::slot::Slot;

/// `lo-hi` ranges, comma-separated; a single slot as `n`; at most `limit` ranges, then `…`.
pub fn format_ranges(ranges: &[(Slot, Slot)], limit: usize) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(limit)
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    if ranges.len() > limit {
        parts.push(format!("… ({} more)", ranges.len() - limit));
    }
    parts.join(",")
}

/// Inclusive ranges of the slots whose flag equals `wanted`.
pub(super) fn ranges(flags: &[bool], wanted: bool) -> Vec<(Slot, Slot)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (slot, flag) in flags.iter().chain(std::iter::once(&!wanted)).enumerate() {
        match (*flag == wanted, start) {
            (true, None) => start = Some(slot),
            (false, Some(lo)) => {
                out.push((lo as Slot, (slot - 1) as Slot));
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_their_format() {
        let mut flags = vec![true; 10];
        flags[0] = false;
        flags[4] = false;
        flags[5] = false;
        flags[9] = false;
        assert_eq!(ranges(&flags, false), [(0, 0), (4, 5), (9, 9)]);
        assert_eq!(ranges(&flags, true), [(1, 3), (6, 8)]);
        assert_eq!(
            format_ranges(&[(0, 0), (4, 5), (9, 9)], 2),
            "0,4-5,… (1 more)"
        );
    }
}
