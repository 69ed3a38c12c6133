//! The book checksum: one 64-bit value over every non-empty price level of every published
//! book, computed the same way by the engine (from the matcher, [`crate::FeedEncoder::book_checksum`])
//! and by a subscriber (from the book it rebuilt, [`crate::Book::checksum`]).
//!
//! Each level contributes [`level_hash`] of (stock locate, side, ITCH price, total shares,
//! order count); the checksum is the wrapping sum of the contributions. A sum does not depend
//! on the order in which levels are visited, so a subscriber keeps it up to date in O(1) per
//! message (subtract the level's old contribution, add its new one) while the engine computes
//! it by walking its levels. It detects divergence; it is not cryptographic.

use crate::itch::BuySell;

/// Starting value of [`level_hash`] (ASCII "ITCHBOOK").
pub const LEVEL_HASH_SEED: u64 = 0x4954_4348_424F_4F4B;

/// MurmurHash3's 64-bit finaliser.
fn finalize(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    value ^= value >> 33;
    value = value.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    value ^= value >> 33;
    value
}

/// The contribution of one non-empty level: starting from [`LEVEL_HASH_SEED`], each of
/// `stock_locate`, side (0 buy, 1 sell), `price`, `shares` and `order_count` (as `u64`) is
/// folded in by `hash = finalize(hash ^ value)`, with `finalize` MurmurHash3's `fmix64`.
pub fn level_hash(
    stock_locate: u16,
    side: BuySell,
    price: u32,
    shares: u64,
    order_count: u32,
) -> u64 {
    [
        u64::from(stock_locate),
        side.index() as u64,
        u64::from(price),
        shares,
        u64::from(order_count),
    ]
    .into_iter()
    .fold(LEVEL_HASH_SEED, |hash, value| finalize(hash ^ value))
}

/// A book checksum with the level and order counts it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// Wrapping sum of [`level_hash`] over the non-empty levels.
    pub value: u64,
    /// Non-empty levels.
    pub level_count: u32,
    /// Resting orders.
    pub order_count: u32,
}

impl Checksum {
    /// Adds a non-empty level.
    pub fn add_level(
        &mut self,
        stock_locate: u16,
        side: BuySell,
        price: u32,
        shares: u64,
        order_count: u32,
    ) {
        debug_assert!(order_count > 0);
        self.value =
            self.value
                .wrapping_add(level_hash(stock_locate, side, price, shares, order_count));
        self.level_count = self.level_count.wrapping_add(1);
        self.order_count = self.order_count.wrapping_add(order_count);
    }

    /// Removes a level added before with the same values.
    pub fn remove_level(
        &mut self,
        stock_locate: u16,
        side: BuySell,
        price: u32,
        shares: u64,
        order_count: u32,
    ) {
        self.value =
            self.value
                .wrapping_sub(level_hash(stock_locate, side, price, shares, order_count));
        self.level_count = self.level_count.wrapping_sub(1);
        self.order_count = self.order_count.wrapping_sub(order_count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_removable() {
        let mut forward = Checksum::default();
        forward.add_level(1, BuySell::Buy, 100, 5, 1);
        forward.add_level(1, BuySell::Sell, 101, 7, 2);
        let mut backward = Checksum::default();
        backward.add_level(1, BuySell::Sell, 101, 7, 2);
        backward.add_level(1, BuySell::Buy, 100, 5, 1);
        assert_eq!(forward, backward);
        backward.remove_level(1, BuySell::Sell, 101, 7, 2);
        backward.remove_level(1, BuySell::Buy, 100, 5, 1);
        assert_eq!(backward, Checksum::default());
        // Every field matters.
        let base = level_hash(1, BuySell::Buy, 100, 5, 1);
        assert_ne!(base, level_hash(2, BuySell::Buy, 100, 5, 1));
        assert_ne!(base, level_hash(1, BuySell::Sell, 100, 5, 1));
        assert_ne!(base, level_hash(1, BuySell::Buy, 101, 5, 1));
        assert_ne!(base, level_hash(1, BuySell::Buy, 100, 6, 1));
        assert_ne!(base, level_hash(1, BuySell::Buy, 100, 5, 2));
    }
}
