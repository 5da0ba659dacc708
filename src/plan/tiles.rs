//! Tile arithmetic of the sliding windows (pure).
//!
//! Tiles are `tile` wide and aligned to the epoch: tile `i` holds event times
//! `[i·tile, (i + 1)·tile)`. A window of `n = window / tile` tiles read at event time `t` adds
//! the tile of `t` and the `n` tiles before it, i.e. the event times
//! `[(tile_of(t) − n)·tile, (tile_of(t) + 1)·tile)`. That interval contains `(t − window, t]`
//! whatever the alignment of `t`, and reaches at most one tile further back:
//!
//! - every event in `(t − window, t]` is counted (no under-count);
//! - an event older than `t − window` is counted only if it is at or after
//!   `(tile_of(t) − n)·tile > t − window − tile`: the over-count is at most one tile of events
//!   older than the window, and an event at or before `t − window − tile` never counts;
//! - events later than `t` in `t`'s own tile are counted only if they were applied before
//!   (out-of-order delivery); later tiles are never read.
//!
//! A tile is read by windows ending in it and in the `n` tiles after it, so it can go
//! `grace` after the end of tile `i + n`: [`expire_at_ms`].

use std::ops::RangeInclusive;

/// The tile index of event time `t_ms` for tiles `tile_ms` wide.
pub fn tile_of(t_ms: i64, tile_ms: i64) -> i64 {
    t_ms.div_euclid(tile_ms)
}

/// The tiles a value at tile `tile` adds, for a window of `n` tiles: `tile − n ..= tile`.
pub fn read_range(tile: i64, n: i64) -> RangeInclusive<i64> {
    tile - n..=tile
}

/// When tile `tile` is read by no window any more, plus `grace_ms`: the end of tile
/// `tile + n`, plus grace (Unix ms).
pub fn expire_at_ms(tile: i64, n: i64, tile_ms: i64, grace_ms: i64) -> i64 {
    (tile + n + 1) * tile_ms + grace_ms
}

/// The most tiles of one entity and feature alive at once: the `n + 1` a window reads, and
/// those still within the grace.
pub fn max_live_tiles(n: i64, tile_ms: i64, grace_ms: i64) -> i64 {
    n + 1 + (grace_ms + tile_ms - 1).div_euclid(tile_ms)
}

/// Whether an event at `s_ms` is in the tiles the value at `t_ms` reads.
pub fn counted(t_ms: i64, s_ms: i64, window_ms: i64, tile_ms: i64) -> bool {
    let n = window_ms / tile_ms;
    let tile = tile_of(s_ms, tile_ms);
    read_range(tile_of(t_ms, tile_ms), n).contains(&tile)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// (window, tile) pairs with window a multiple of tile, in ms.
    fn shape() -> impl Strategy<Value = (i64, i64)> {
        (1i64..=3600, 1i64..=120).prop_map(|(tile_s, n)| (n * tile_s * 1000, tile_s * 1000))
    }

    /// The value at the last event of `times` (sorted), counted through the tiles.
    fn value_at_last(times: &[i64], window_ms: i64, tile_ms: i64) -> usize {
        let t = *times.last().expect("at least one event");
        times
            .iter()
            .filter(|s| counted(t, **s, window_ms, tile_ms))
            .count()
    }

    proptest! {
        /// No under-count: every event in (t − window, t] is counted, at every alignment.
        #[test]
        fn every_event_of_the_window_counts(
            (window, tile) in shape(),
            t in -10_000_000_000i64..10_000_000_000,
            back in 0i64..1_000_000_000,
        ) {
            let s = t - back % window;
            prop_assert!(counted(t, s, window, tile), "s={s} t={t} window={window} tile={tile}");
        }

        /// The over-count is bounded: an event at or before t − window − tile never counts.
        #[test]
        fn nothing_older_than_window_plus_tile_counts(
            (window, tile) in shape(),
            t in -10_000_000_000i64..10_000_000_000,
            older in 0i64..1_000_000_000,
        ) {
            let s = t - window - tile - older;
            prop_assert!(!counted(t, s, window, tile), "s={s} t={t} window={window} tile={tile}");
        }

        /// Later tiles are never read.
        #[test]
        fn later_tiles_never_count(
            (window, tile) in shape(),
            t in -10_000_000_000i64..10_000_000_000,
            ahead in 0i64..1_000_000_000,
        ) {
            let s = (tile_of(t, tile) + 1) * tile + ahead;
            prop_assert!(!counted(t, s, window, tile));
        }

        /// threshold + 1 events within `window − tile` (any placement, any alignment) are
        /// flagged at the last of them.
        #[test]
        fn a_burst_within_window_minus_tile_is_flagged(
            (window, tile) in (2i64..=3600, 2i64..=120)
                .prop_map(|(tile_s, n)| (n * tile_s * 1000, tile_s * 1000)),
            start in -10_000_000_000i64..10_000_000_000,
            threshold in 1usize..20,
            offsets in prop::collection::vec(0i64..1_000_000_000, 20),
        ) {
            let span = window - tile;
            let mut times: Vec<i64> = offsets
                .iter()
                .take(threshold + 1)
                .map(|o| start + o % span)
                .collect();
            times.sort_unstable();
            prop_assert!(value_at_last(&times, window, tile) > threshold);
        }

        /// A tile expires only after the last window that reads it, plus grace.
        #[test]
        fn a_tile_outlives_every_window_that_reads_it(
            (window, tile) in shape(),
            s in -10_000_000_000i64..10_000_000_000,
            later in 0i64..1_000_000_000,
            grace in 0i64..600_000,
        ) {
            let n = window / tile;
            let t = s + later;
            if counted(t, s, window, tile) {
                prop_assert!(expire_at_ms(tile_of(s, tile), n, tile, grace) > t + grace);
            }
        }
    }

    /// The boundary burst: 8 payments by one user within 2.8 s straddling a minute
    /// edge, at every alignment of the edge (in 100 ms steps): the default 1-minute feature
    /// (tile 5 s, threshold 5) flags the 6th, 7th and 8th.
    #[test]
    fn the_boundary_burst_is_flagged_at_every_alignment() {
        let (window, tile, threshold) = (60_000, 5_000, 5);
        for shift in (0..60_000).step_by(100) {
            let edge = 29_000_000 * 60_000_i64;
            let start = edge - 1_400 + shift - 30_000;
            let times: Vec<i64> = (0..8).map(|i| start + i * 400).collect();
            let values: Vec<usize> = (1..=times.len())
                .map(|k| value_at_last(&times[..k], window, tile))
                .collect();
            assert_eq!(values, vec![1, 2, 3, 4, 5, 6, 7, 8], "shift {shift} ms");
            assert_eq!(values.iter().filter(|v| **v > threshold).count(), 3);
        }
    }

    #[test]
    fn live_tiles_are_the_window_and_the_grace() {
        assert_eq!(max_live_tiles(12, 5_000, 60_000), 25);
        assert_eq!(max_live_tiles(12, 5_000, 0), 13);
        assert_eq!(max_live_tiles(24, 3_600_000, 60_000), 26);
    }
}
