//! A fixed-capacity open-addressing hash table with linear probing and backward-shift deletion.
//!
//! Deterministic (hashing is a fixed function of the key), never reallocates after construction,
//! and never iterated for output, so its layout can never leak into events or snapshots.

use crate::hash;

/// Empty-slot marker in `values`.
const EMPTY: u32 = u32::MAX;

/// A table key: compared exactly, hashed through [`TableKey::hash64`].
pub trait TableKey: Copy + Eq + Default {
    /// A 64-bit digest of the key; the table keeps its top bits.
    fn hash64(&self) -> u64;
}

impl TableKey for u64 {
    #[inline(always)]
    fn hash64(&self) -> u64 {
        *self
    }
}

impl TableKey for u32 {
    #[inline(always)]
    fn hash64(&self) -> u64 {
        u64::from(*self)
    }
}

impl<K: TableKey> Table<K> {
    /// Starts loading the cache line where a lookup of `key` begins.
    #[inline]
    pub fn prefetch(&self, key: K) {
        crate::prefetch::prefetch(&self.entries[hash::slot_of(key.hash64(), self.bits)]);
    }
}

/// Inserts a [`QueuedTable`] holds back before touching its entries (see
/// [`CLIENT_TABLE_PENDING`] for why).
pub const TABLE_PENDING: usize = 8;
const _: () = assert!(TABLE_PENDING.is_power_of_two());

/// A [`Table`] whose inserts are queued: each prefetches its entry and is carried out
/// [`TABLE_PENDING`] inserts later. Lookups and removals check the queue first, so it behaves
/// exactly like the table it wraps.
pub struct QueuedTable<K: TableKey> {
    table: Table<K>,
    /// A ring of queued inserts; an empty place has value `EMPTY`.
    pending: [Entry<K>; TABLE_PENDING],
    /// The oldest place of the ring: the next insert replaces (and first carries out) it.
    pending_next: usize,
    pending_len: u32,
}

impl<K: TableKey> QueuedTable<K> {
    /// A table that holds up to `capacity` entries (queued ones included).
    pub fn new(capacity: u32) -> QueuedTable<K> {
        QueuedTable {
            table: Table::new(capacity),
            pending: [Entry {
                key: K::default(),
                value: EMPTY,
            }; TABLE_PENDING],
            pending_next: 0,
            pending_len: 0,
        }
    }

    /// Entries stored, queued ones included.
    #[inline]
    pub fn len(&self) -> u32 {
        self.table.len() + self.pending_len
    }

    /// The value stored under `key`.
    #[inline]
    pub fn get(&self, key: K) -> Option<u32> {
        for entry in &self.pending {
            if entry.value != EMPTY && entry.key == key {
                return Some(entry.value);
            }
        }
        self.table.get(key)
    }

    /// Queues the insert of a key that must not be present. Panics if full.
    #[inline]
    pub fn insert(&mut self, key: K, value: u32) {
        assert!(value != EMPTY);
        assert!(self.len() < self.table.capacity, "table over capacity");
        self.table.prefetch(key);
        let oldest = core::mem::replace(&mut self.pending[self.pending_next], Entry { key, value });
        self.pending_next = (self.pending_next + 1) % TABLE_PENDING;
        if oldest.value == EMPTY {
            self.pending_len += 1;
        } else {
            self.table.insert(oldest.key, oldest.value);
        }
    }

    /// Removes `key`, which must be present, and returns its value.
    #[inline]
    pub fn remove(&mut self, key: K) -> u32 {
        for entry in &mut self.pending {
            if entry.value != EMPTY && entry.key == key {
                self.pending_len -= 1;
                return core::mem::replace(&mut entry.value, EMPTY);
            }
        }
        self.table.remove(key)
    }
}

/// (account slot, client order id): packed to 12 bytes so that a table entry is 16.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct ClientKey {
    /// Client order id.
    pub client_order_id: u64,
    /// Account slot.
    pub account_slot: u32,
}

impl TableKey for ClientKey {
    #[inline(always)]
    fn hash64(&self) -> u64 {
        let (client_order_id, account_slot) = (self.client_order_id, self.account_slot);
        client_order_id ^ u64::from(account_slot).rotate_left(40)
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry<K> {
    key: K,
    value: u32,
}

/// Maps keys to `u32` values. Key and value share one entry, so a probe touches one cache line.
pub struct Table<K: TableKey> {
    entries: Vec<Entry<K>>,
    bits: u32,
    mask: usize,
    len: u32,
    capacity: u32,
}

impl<K: TableKey> Table<K> {
    /// A table that holds up to `capacity` entries at a load factor of at most one half.
    pub fn new(capacity: u32) -> Table<K> {
        let slots = (u64::from(capacity.max(1)) * 2).next_power_of_two();
        assert!(slots <= 1 << 32, "table capacity {capacity} too large");
        let bits = slots.trailing_zeros().max(1);
        let slots = 1usize << bits;
        Table {
            entries: vec![
                Entry {
                    key: K::default(),
                    value: EMPTY
                };
                slots
            ],
            bits,
            mask: slots - 1,
            len: 0,
            capacity,
        }
    }

    /// Entries stored.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether another entry fits.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// The value stored under `key`.
    #[inline]
    pub fn get(&self, key: K) -> Option<u32> {
        let mut index = hash::slot_of(key.hash64(), self.bits);
        loop {
            let entry = self.entries[index];
            if entry.value == EMPTY {
                return None;
            }
            if entry.key == key {
                return Some(entry.value);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Inserts a key that must not be present. Panics if full (callers check `is_full` first).
    #[inline]
    pub fn insert(&mut self, key: K, value: u32) {
        assert!(value != EMPTY);
        assert!(self.len < self.capacity, "table over capacity");
        let mut index = hash::slot_of(key.hash64(), self.bits);
        loop {
            let entry = &mut self.entries[index];
            if entry.value == EMPTY {
                *entry = Entry { key, value };
                self.len += 1;
                return;
            }
            assert!(entry.key != key, "duplicate table key");
            index = (index + 1) & self.mask;
        }
    }

    /// Removes `key`, which must be present, and returns its value.
    #[inline]
    pub fn remove(&mut self, key: K) -> u32 {
        let mut index = hash::slot_of(key.hash64(), self.bits);
        loop {
            assert!(
                self.entries[index].value != EMPTY,
                "removing an absent table key"
            );
            if self.entries[index].key == key {
                break;
            }
            index = (index + 1) & self.mask;
        }
        let removed = self.entries[index].value;
        // Backward-shift deletion: pull later entries of the probe run into the hole so that
        // lookups never need tombstones.
        let mut hole = index;
        let mut next = (hole + 1) & self.mask;
        while self.entries[next].value != EMPTY {
            let home = hash::slot_of(self.entries[next].key.hash64(), self.bits);
            // Move the entry at `next` into the hole if its home is not cyclically in (hole, next].
            let distance_home = next.wrapping_sub(home) & self.mask;
            let distance_hole = next.wrapping_sub(hole) & self.mask;
            if distance_home >= distance_hole {
                self.entries[hole] = self.entries[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.entries[hole].value = EMPTY;
        self.len -= 1;
        removed
    }
}

/// One [`ClientTable`] entry: 32 bits of the key's hash (the top bits are the home index) and
/// the order slot. 8 bytes, eight to a cache line.
#[derive(Clone, Copy)]
#[repr(C)]
struct ClientEntry {
    hash: u32,
    slot: u32,
}

/// Inserts and removals a [`ClientTable`] holds back before touching its entries. Each one
/// prefetches its entry when it is queued and is carried out this many operations later, so the
/// cache miss (the table is large and read at random) overlaps the work of the commands in
/// between instead of stalling the one that queued it.
pub const CLIENT_TABLE_PENDING: usize = 8;
const _: () = assert!(CLIENT_TABLE_PENDING.is_power_of_two());

/// A queued [`ClientTable`] operation.
#[derive(Clone, Copy)]
struct ClientOperation {
    entry: ClientEntry,
    insert: bool,
}

/// (account slot, client order id) → order slot. The key itself is not stored: it is in the
/// order, and a lookup confirms a hash match against the order through a caller-given check.
/// That halves the entry size of a [`Table`], and with it the cache footprint of the lookup every
/// new order does.
///
/// Inserts and removals are queued ([`CLIENT_TABLE_PENDING`]) and applied in order, so the
/// entries always hold the table as it was some operations ago. A lookup checks the queued
/// inserts first, then the entries; an entry whose removal is still queued can only be returned
/// if the caller's check accepts its slot, that is if the order now in that slot has the key,
/// which is then the right answer (a key belongs to one resting order at most).
pub struct ClientTable {
    entries: Vec<ClientEntry>,
    bits: u32,
    mask: usize,
    /// Entries in `entries` (applied inserts minus applied removals).
    len: u32,
    capacity: u32,
    /// A ring of queued operations; an empty place has slot `EMPTY`.
    pending: [ClientOperation; CLIENT_TABLE_PENDING],
    /// The oldest place of the ring: the next operation replaces (and first applies) it.
    pending_next: usize,
}

impl ClientTable {
    /// A table that holds up to `capacity` keys at a load factor of at most one half (counting
    /// the entries whose removal is queued).
    pub fn new(capacity: u32) -> ClientTable {
        let entries_max = u64::from(capacity.max(1)) + CLIENT_TABLE_PENDING as u64;
        let slots = (entries_max * 2).next_power_of_two();
        let bits = slots.trailing_zeros().max(1);
        assert!(bits <= 31, "client table capacity {capacity} too large");
        let slots = 1usize << bits;
        ClientTable {
            entries: vec![
                ClientEntry {
                    hash: 0,
                    slot: EMPTY
                };
                slots
            ],
            bits,
            mask: slots - 1,
            len: 0,
            capacity,
            pending: [ClientOperation {
                entry: ClientEntry {
                    hash: 0,
                    slot: EMPTY,
                },
                insert: false,
            }; CLIENT_TABLE_PENDING],
            pending_next: 0,
        }
    }

    #[inline(always)]
    fn hash32(key: ClientKey) -> u32 {
        (hash::finalize(key.hash64()) >> 32) as u32
    }

    #[inline(always)]
    fn home(&self, hash32: u32) -> usize {
        (hash32 >> (32 - self.bits)) as usize
    }

    /// The slot stored under `key`; `is_key(slot)` must say whether the order in `slot` has
    /// this key (called only on a 32-bit hash match, possibly with the slot of an entry whose
    /// removal is queued).
    #[inline]
    pub fn get(&self, key: ClientKey, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let hash32 = Self::hash32(key);
        for operation in &self.pending {
            if operation.insert && operation.entry.hash == hash32 && is_key(operation.entry.slot) {
                return Some(operation.entry.slot);
            }
        }
        let mut index = self.home(hash32);
        loop {
            let entry = self.entries[index];
            if entry.slot == EMPTY {
                return None;
            }
            if entry.hash == hash32 && is_key(entry.slot) {
                return Some(entry.slot);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Starts loading the cache line where a lookup of `key` begins.
    #[inline]
    pub fn prefetch(&self, key: ClientKey) {
        crate::prefetch::prefetch(&self.entries[self.home(Self::hash32(key))]);
    }

    /// Queues the insert of a key that must not be present (the caller checks capacity).
    #[inline]
    pub fn insert(&mut self, key: ClientKey, slot: u32) {
        assert!(slot != EMPTY);
        self.queue(ClientOperation {
            entry: ClientEntry {
                hash: Self::hash32(key),
                slot,
            },
            insert: true,
        });
    }

    /// Queues the removal of the entry of `key`, which must map to `slot`.
    #[inline]
    pub fn remove(&mut self, key: ClientKey, slot: u32) {
        self.queue(ClientOperation {
            entry: ClientEntry {
                hash: Self::hash32(key),
                slot,
            },
            insert: false,
        });
    }

    #[inline]
    fn queue(&mut self, operation: ClientOperation) {
        crate::prefetch::prefetch(&self.entries[self.home(operation.entry.hash)]);
        let oldest = core::mem::replace(&mut self.pending[self.pending_next], operation);
        self.pending_next = (self.pending_next + 1) % CLIENT_TABLE_PENDING;
        if oldest.entry.slot != EMPTY {
            self.apply(oldest);
        }
    }

    fn apply(&mut self, operation: ClientOperation) {
        if operation.insert {
            self.apply_insert(operation.entry);
        } else {
            self.apply_remove(operation.entry);
        }
    }

    #[inline]
    fn apply_insert(&mut self, entry: ClientEntry) {
        assert!(
            self.len < self.capacity + CLIENT_TABLE_PENDING as u32,
            "client table over capacity"
        );
        let mut index = self.home(entry.hash);
        while self.entries[index].slot != EMPTY {
            index = (index + 1) & self.mask;
        }
        self.entries[index] = entry;
        self.len += 1;
    }

    #[inline]
    fn apply_remove(&mut self, removed: ClientEntry) {
        let mut index = self.home(removed.hash);
        loop {
            let entry = self.entries[index];
            assert!(entry.slot != EMPTY, "removing an absent client order id");
            if entry.slot == removed.slot {
                assert!(
                    entry.hash == removed.hash,
                    "client order id entry of another key"
                );
                break;
            }
            index = (index + 1) & self.mask;
        }
        // Backward-shift deletion, as in `Table::remove`; homes come from the stored hash bits.
        let mut hole = index;
        let mut next = (hole + 1) & self.mask;
        while self.entries[next].slot != EMPTY {
            let home = self.home(self.entries[next].hash);
            let distance_home = next.wrapping_sub(home) & self.mask;
            let distance_hole = next.wrapping_sub(hole) & self.mask;
            if distance_home >= distance_hole {
                self.entries[hole] = self.entries[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.entries[hole].slot = EMPTY;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn entry_sizes() {
        assert_eq!(core::mem::size_of::<Entry<u32>>(), 8);
        assert_eq!(core::mem::size_of::<Entry<u64>>(), 16);
        assert_eq!(core::mem::size_of::<Entry<ClientKey>>(), 16);
    }

    #[test]
    fn client_table_matches_btreemap() {
        // Keys drawn from a small space so that hash collisions of the home index are common;
        // the "orders" are an array of keys indexed by slot.
        let mut table = ClientTable::new(64);
        let mut model: BTreeMap<(u32, u64), u32> = BTreeMap::new();
        let mut orders: Vec<Option<ClientKey>> = vec![None; 64];
        let mut state = 777u64;
        for step in 0..50_000u64 {
            state = hash::mix2(state, step);
            let key = ClientKey {
                client_order_id: state % 40,
                account_slot: ((state >> 20) % 3) as u32,
            };
            let model_key = (key.account_slot, key.client_order_id);
            let found = table.get(key, |slot| orders[slot as usize] == Some(key));
            assert_eq!(found, model.get(&model_key).copied());
            match found {
                Some(slot) if !state.is_multiple_of(3) => {
                    table.remove(key, slot);
                    model.remove(&model_key);
                    orders[slot as usize] = None;
                }
                None if model.len() < 64 => {
                    let slot = orders.iter().position(Option::is_none).expect("free") as u32;
                    table.insert(key, slot);
                    model.insert(model_key, slot);
                    orders[slot as usize] = Some(key);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn client_table_queued_operations() {
        // A slot reused by the same key while the old entry's removal is still queued, and
        // lookups at every queue depth.
        fn get(table: &ClientTable, orders: &[Option<ClientKey>], key: ClientKey) -> Option<u32> {
            table.get(key, |slot| orders[slot as usize] == Some(key))
        }
        let mut table = ClientTable::new(4);
        let mut orders: Vec<Option<ClientKey>> = vec![None; 4];
        let key = |client_order_id| ClientKey {
            client_order_id,
            account_slot: 1,
        };
        for round in 0..3 * CLIENT_TABLE_PENDING as u64 {
            let other = key(round + 100);
            assert_eq!(get(&table, &orders, key(7)), None);
            table.insert(key(7), 2);
            orders[2] = Some(key(7));
            assert_eq!(get(&table, &orders, key(7)), Some(2));
            table.insert(other, 3);
            orders[3] = Some(other);
            table.remove(key(7), 2);
            orders[2] = None;
            assert_eq!(get(&table, &orders, key(7)), None);
            table.insert(key(7), 2);
            orders[2] = Some(key(7));
            assert_eq!(get(&table, &orders, key(7)), Some(2));
            assert_eq!(get(&table, &orders, other), Some(3));
            table.remove(key(7), 2);
            orders[2] = None;
            table.remove(other, 3);
            orders[3] = None;
        }
        assert!(table.len <= CLIENT_TABLE_PENDING as u32);
    }

    #[test]
    fn queued_table_matches_btreemap() {
        let mut table = QueuedTable::<u64>::new(64);
        let mut model = BTreeMap::new();
        let mut state = 4321u64;
        for step in 0..20_000u32 {
            state = hash::mix2(state, u64::from(step));
            let key = state % 200;
            if let Some(value) = model.get(&key).copied() {
                assert_eq!(table.get(key), Some(value));
                if !state.is_multiple_of(3) {
                    assert_eq!(table.remove(key), value);
                    model.remove(&key);
                }
            } else {
                assert_eq!(table.get(key), None);
                if table.len() < 64 {
                    table.insert(key, step);
                    model.insert(key, step);
                }
            }
            assert_eq!(table.len() as usize, model.len());
        }
        for (key, value) in model {
            assert_eq!(table.get(key), Some(value));
        }
    }

    #[test]
    fn matches_btreemap() {
        let mut table = Table::<u64>::new(64);
        let mut model = BTreeMap::new();
        let mut state = 12345u64;
        for step in 0..20_000u32 {
            state = hash::mix2(state, u64::from(step));
            let key = state % 200;
            if let Some(value) = model.get(&key).copied() {
                assert_eq!(table.get(key), Some(value));
                if !state.is_multiple_of(3) {
                    assert_eq!(table.remove(key), value);
                    model.remove(&key);
                }
            } else {
                assert_eq!(table.get(key), None);
                if !table.is_full() {
                    table.insert(key, step);
                    model.insert(key, step);
                }
            }
            assert_eq!(table.len() as usize, model.len());
        }
        for (key, value) in model {
            assert_eq!(table.get(key), Some(value));
        }
    }
}
