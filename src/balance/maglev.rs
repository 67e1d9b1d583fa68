//! Maglev consistent hashing (Google's Maglev paper, section 3.4): a lookup
//! table of a prime size where each endpoint owns an almost equal share of
//! slots, and removing one of N endpoints moves only about 1/N of the keys.

use std::hash::{Hash, Hasher};

/// Table size: a prime well above the endpoint count keeps shares even
/// (within ~1% for up to a few hundred endpoints).
const TABLE_SIZE: usize = 65_537;

/// The lookup table: slot -> endpoint index.
pub(super) struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table from stable endpoint keys (the same key gives the
    /// same permutation in every table, on every replica).
    pub fn new(keys: &[String]) -> Self {
        let n = keys.len();
        if n == 0 {
            return Self { table: Vec::new() };
        }
        let m = TABLE_SIZE as u64;
        let perms: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| {
                let offset = hash_with(k, 0xa5) % m;
                let skip = hash_with(k, 0x5a) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; TABLE_SIZE];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut slot = ((offset + next[i] * skip) % m) as usize;
                while table[slot] != u32::MAX {
                    next[i] += 1;
                    slot = ((offset + next[i] * skip) % m) as usize;
                }
                table[slot] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        Self { table }
    }

    /// The endpoint for a key hash; when that one is unusable, the next
    /// slots are tried, so a key moves only while its endpoint is down.
    pub fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let start = (hash % m as u64) as usize;
        (0..m)
            .map(|k| self.table[(start + k) % m] as usize)
            .find(|&i| usable(i))
    }
}

/// A stable 64-bit hash (SipHash with fixed keys: the same on every
/// replica and across restarts, which consistent hashing needs).
pub fn hash_with(value: impl Hash, seed: u64) -> u64 {
    #[allow(deprecated)]
    // SipHasher is deprecated for HashDoS reasons that do not apply to fixed, non-secret keys
    let mut h = std::hash::SipHasher::new_with_keys(seed, !seed);
    value.hash(&mut h);
    h.finish()
}
