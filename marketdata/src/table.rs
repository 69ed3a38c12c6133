//! A fixed-capacity open-addressing map from `u64` keys to `u64` values (linear probing,
//! backward-shift deletion, load at most ½). Allocated once; never grows.

/// Marks an empty slot; it cannot be a key.
pub(crate) const KEY_EMPTY: u64 = u64::MAX;

/// The table is full (its capacity was reached) or the key is the reserved [`KEY_EMPTY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

pub(crate) struct Table {
    keys: Box<[u64]>,
    values: Box<[u64]>,
    mask: usize,
    len: usize,
    capacity: usize,
}

fn home(key: u64, mask: usize) -> usize {
    // Fibonacci hashing: the top bits of the product are well mixed.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl Table {
    /// A table for up to `capacity` entries (2 × capacity slots, rounded up to a power of two).
    pub(crate) fn new(capacity: usize) -> Table {
        let slots = (capacity.max(1) * 2).next_power_of_two();
        Table {
            keys: vec![KEY_EMPTY; slots].into_boxed_slice(),
            values: vec![0; slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clear(&mut self) {
        self.keys.fill(KEY_EMPTY);
        self.len = 0;
    }

    fn find(&self, key: u64) -> Option<usize> {
        if key == KEY_EMPTY {
            return None;
        }
        let mut at = home(key, self.mask);
        loop {
            let found = self.keys[at];
            if found == key {
                return Some(at);
            }
            if found == KEY_EMPTY {
                return None;
            }
            at = (at + 1) & self.mask;
        }
    }

    pub(crate) fn get(&self, key: u64) -> Option<u64> {
        self.find(key).map(|at| self.values[at])
    }

    /// Inserts or overwrites.
    pub(crate) fn insert(&mut self, key: u64, value: u64) -> Result<(), TableFull> {
        if key == KEY_EMPTY {
            return Err(TableFull);
        }
        let mut at = home(key, self.mask);
        loop {
            let found = self.keys[at];
            if found == key {
                self.values[at] = value;
                return Ok(());
            }
            if found == KEY_EMPTY {
                if self.len == self.capacity {
                    return Err(TableFull);
                }
                self.keys[at] = key;
                self.values[at] = value;
                self.len += 1;
                return Ok(());
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Removes a key; returns its value.
    pub(crate) fn remove(&mut self, key: u64) -> Option<u64> {
        let mut hole = self.find(key)?;
        let value = self.values[hole];
        // Backward shift: move later members of the probe run into the hole when their home
        // is not between the hole and their slot (cyclically).
        let mut at = (hole + 1) & self.mask;
        while self.keys[at] != KEY_EMPTY {
            let wanted = home(self.keys[at], self.mask);
            let distance_at = at.wrapping_sub(wanted) & self.mask;
            let distance_hole = hole.wrapping_sub(wanted) & self.mask;
            if distance_hole < distance_at {
                self.keys[hole] = self.keys[at];
                self.values[hole] = self.values[at];
                hole = at;
            }
            at = (at + 1) & self.mask;
        }
        self.keys[hole] = KEY_EMPTY;
        self.len -= 1;
        Some(value)
    }

    /// Every entry, in slot order (tests sort them).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.keys
            .iter()
            .zip(self.values.iter())
            .filter(|(key, _)| **key != KEY_EMPTY)
            .map(|(key, value)| (*key, *value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn behaves_like_a_btree_map(operations in proptest::collection::vec((0u8..3, 0u64..64, any::<u64>()), 0..400)) {
            let mut table = Table::new(40);
            let mut model = BTreeMap::new();
            for (operation, key, value) in operations {
                match operation {
                    0 => {
                        let result = table.insert(key, value);
                        if model.len() < 40 || model.contains_key(&key) {
                            prop_assert_eq!(result, Ok(()));
                            model.insert(key, value);
                        } else {
                            prop_assert_eq!(result, Err(TableFull));
                        }
                    }
                    1 => prop_assert_eq!(table.remove(key), model.remove(&key)),
                    _ => prop_assert_eq!(table.get(key), model.get(&key).copied()),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let mut entries: Vec<_> = table.entries().collect();
            entries.sort_unstable();
            prop_assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn reserved_key_is_refused() {
        let mut table = Table::new(4);
        assert_eq!(table.insert(KEY_EMPTY, 1), Err(TableFull));
        assert_eq!(table.get(KEY_EMPTY), None);
        assert_eq!(table.remove(KEY_EMPTY), None);
    }
}
