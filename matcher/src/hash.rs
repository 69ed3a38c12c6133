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

/// Odd multipliers for [`mix_parallel`], one per word position.
const LANES: [u64; 8] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
    0xFF51_AFD7_ED55_8CCD,
    0xC4CE_B9FE_1A85_EC53,
    0x2545_F491_4F6C_DD1D,
    0x94D0_49BB_1331_11EB,
];

/// Hashes up to eight words: a sum of per-position odd multiples (independent multiplies, so
/// they run in parallel) followed by one finaliser. Position-sensitive; cheaper than folding
/// with [`mix2`] and good enough to detect divergence (not collision-resistant against an
/// adversary, which `state_hash` does not need).
#[inline(always)]
pub fn mix_parallel(words: &[u64]) -> u64 {
    assert!(words.len() <= LANES.len());
    let mut sum = SEED;
    for (word, lane) in words.iter().zip(LANES) {
        sum = sum.wrapping_add(word.rotate_left(17).wrapping_mul(lane) ^ word);
    }
    finalize(sum)
}

/// A linear hash of up to eight words: the sum of each word times its position's odd
/// multiplier. Two inputs that differ in one word always hash differently (an odd multiplier
/// is invertible modulo 2^64); no mixing beyond that. One multiply and one add per word.
#[inline(always)]
pub fn sum_products(words: &[u64]) -> u64 {
    assert!(words.len() <= LANES.len());
    let mut sum = SEED;
    for (word, lane) in words.iter().zip(LANES) {
        sum = sum.wrapping_add(word.wrapping_mul(lane));
    }
    sum
}

/// Folds `value` into a running `state` with one multiply: for a fixed `value` it is a
/// bijection of `state`, so two streams that differ in one value differ in every state after
/// it. Order-sensitive. No avalanche: for stream digests that are only compared for equality,
/// where [`mix2`]'s finaliser would put three dependent multiplies per value on the chain.
#[inline(always)]
pub fn fold(state: u64, value: u64) -> u64 {
    (state.rotate_left(23) ^ value).wrapping_mul(MULTIPLIER_A)
}

/// Fibonacci hashing of a 64-bit key to `bits` bits (`1..=32`).
#[inline(always)]
pub fn slot_of(key: u64, bits: u32) -> usize {
    debug_assert!((1..=32).contains(&bits));
    (key.wrapping_mul(MULTIPLIER_A) >> (64 - bits)) as usize
}
