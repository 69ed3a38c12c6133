//! Deterministic 64-bit mixing used by `state_hash` and the open-addressing tables.
//!
//! No randomness and no pointer values: the same inputs give the same outputs on every replica.

/// Starting value of folds.
pub const SEED: u64 = 0x243F_6A88_85A3_08D3;
const MULTIPLIER_A: u64 = 0x9E37_79B9_7F4A_7C15;
const MULTIPLIER_B: u64 = 0xFF51_AFD7_ED55_8CCD;
const MULTIPLIER_C: u64 = 0xC4CE_B9FE_1A85_EC53;

/// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
#[inline(always)]
pub fn finalize(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(MULTIPLIER_B);
    value ^= value >> 33;
    value = value.wrapping_mul(MULTIPLIER_C);
    value ^= value >> 33;
    value
}

/// Folds `value` into `state`. Order-sensitive.
#[inline(always)]
pub fn mix2(state: u64, value: u64) -> u64 {
    finalize(state.rotate_left(23) ^ value.wrapping_mul(MULTIPLIER_A))
}

/// Folds a slice of words, starting from [`SEED`].
pub fn mix_words(words: &[u64]) -> u64 {
    words.iter().fold(SEED, |state, word| mix2(state, *word))
}

/// Fibonacci hashing of a 64-bit key to `bits` bits (`1..=32`).
#[inline(always)]
pub fn slot_of(key: u64, bits: u32) -> usize {
    debug_assert!((1..=32).contains(&bits));
    (key.wrapping_mul(MULTIPLIER_A) >> (64 - bits)) as usize
}
