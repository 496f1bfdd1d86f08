//! Key lists of requests: the checks a list must pass (sorted and unique, inside a dense range,
//! matched by the right number of values) and its signature, computed in the same pass; and
//! [`KeyList`], a list checked once that a caller passes again and again without either pass.

use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Why a key list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("keys must be sorted and unique: key[{index}] = {key} follows {previous}")]
    NotSortedUnique {
        index: usize,
        previous: u64,
        key: u64,
    },
    #[error("keys [{first}, {last}] are outside this dense range [{begin}, {end})")]
    OutOfRange {
        first: u64,
        last: u64,
        begin: u64,
        end: u64,
    },
    #[error("{values} values do not fit {keys} keys × {per_key} values per key")]
    LengthMismatch {
        keys: usize,
        values: usize,
        per_key: usize,
    },
}

/// Checks that `keys` is strictly increasing.
pub fn check_sorted_unique(keys: &[u64]) -> Result<(), KeyListError> {
    match keys.windows(2).position(|w| w[0] >= w[1]) {
        None => Ok(()),
        Some(i) => Err(KeyListError::NotSortedUnique {
            index: i + 1,
            previous: keys[i],
            key: keys[i + 1],
        }),
    }
}

/// Keys per chunk of [`check_and_sign`]: 64 KiB, so the check and the hash read the chunk from
/// cache rather than from memory twice.
const SIGN_CHUNK: usize = 8192;

/// Checks that `keys` is strictly increasing and computes its signature (equal to
/// `ferrops_net::key_signature`) in one pass over memory.
pub fn check_and_sign(keys: &[u64]) -> Result<u64, KeyListError> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (c, chunk) in keys.chunks(SIGN_CHUNK).enumerate() {
        let base = c * SIGN_CHUNK;
        check_sorted_unique(chunk).map_err(|e| e.shifted(base))?;
        if base > 0 && keys[base - 1] >= chunk[0] {
            return Err(KeyListError::NotSortedUnique {
                index: base,
                previous: keys[base - 1],
                key: chunk[0],
            });
        }
        hasher.update(zerocopy::IntoBytes::as_bytes(chunk));
    }
    Ok(hasher.digest())
}

/// Signatures a [`KeyList`] remembers at most (one per slice some routing cut it into); past
/// that it forgets them all, so a list that outlives many routings holds no more than this.
const REMEMBERED_SIGNATURES: usize = 64;

/// Signatures of slices (key index ranges) of one list.
type SliceSignatures = Vec<(Range<usize>, u64)>;

/// A key list checked once (sorted and unique) that the caller hands over for good: it cannot
/// change afterwards (the keys are shared, immutable), so every request that passes it skips
/// the check, and a list signed for key caching is signed once per slice a routing cuts it
/// into rather than once per request. Cloning is cheap (the keys are shared).
///
/// A worker's plain slice API reads and signs the whole list on every request, because a slice
/// may have changed since the last one; a `KeyList` is what a caller that pushes and pulls the
/// same keys repeatedly passes instead (`Worker::push_list`, `Worker::pull_list_into`).
#[derive(Clone, Debug)]
pub struct KeyList {
    keys: Arc<[u64]>,
    /// Signatures of the slices (key index ranges) requests have used so far.
    signatures: Arc<Mutex<SliceSignatures>>,
}

impl KeyList {
    /// Checks `keys` (strictly increasing) and keeps them.
    pub fn new(keys: impl Into<Arc<[u64]>>) -> Result<KeyList, KeyListError> {
        let keys = keys.into();
        check_sorted_unique(&keys)?;
        Ok(KeyList {
            keys,
            signatures: Arc::default(),
        })
    }

    /// The keys.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the list holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The signature of the keys at `idx` (equal to `ferrops_net::key_signature` of them),
    /// computed the first time a request asks for that slice and remembered.
    ///
    /// # Panics
    /// If `idx` is not a range of the list's indices.
    pub fn signature(&self, idx: Range<usize>) -> u64 {
        let remembered =
            |sigs: &Vec<(Range<usize>, u64)>| sigs.iter().find(|(r, _)| *r == idx).map(|&(_, s)| s);
        if let Some(s) = remembered(&self.lock_signatures()) {
            return s;
        }
        // Signed outside the lock: another clone of the list may be signing another slice.
        let signature = ferrops_net::key_signature(&self.keys[idx.clone()]);
        let mut sigs = self.lock_signatures();
        if remembered(&sigs).is_none() {
            if sigs.len() >= REMEMBERED_SIGNATURES {
                sigs.clear();
            }
            sigs.push((idx, signature));
        }
        signature
    }

    fn lock_signatures(&self) -> std::sync::MutexGuard<'_, SliceSignatures> {
        // A panic while holding the lock cannot leave a wrong entry: entries are pushed whole.
        self.signatures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TryFrom<Vec<u64>> for KeyList {
    type Error = KeyListError;

    fn try_from(keys: Vec<u64>) -> Result<KeyList, KeyListError> {
        KeyList::new(keys)
    }
}

impl KeyListError {
    /// The same error for a list that starts `offset` keys into a longer one.
    pub fn shifted(self, offset: usize) -> KeyListError {
        match self {
            KeyListError::NotSortedUnique {
                index,
                previous,
                key,
            } => KeyListError::NotSortedUnique {
                index: index + offset,
                previous,
                key,
            },
            other => other,
        }
    }
}

/// Checks that `values` holds exactly `per_key` floats for each key.
pub fn check_value_count(keys: usize, values: usize, per_key: usize) -> Result<(), KeyListError> {
    if keys.checked_mul(per_key) == Some(values) {
        Ok(())
    } else {
        Err(KeyListError::LengthMismatch {
            keys,
            values,
            per_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsorted_and_duplicate_keys() {
        assert!(check_sorted_unique(&[]).is_ok());
        assert!(check_sorted_unique(&[1, 2, 9]).is_ok());
        assert_eq!(
            check_sorted_unique(&[1, 3, 3]),
            Err(KeyListError::NotSortedUnique {
                index: 2,
                previous: 3,
                key: 3
            })
        );
        assert!(check_sorted_unique(&[2, 1]).is_err());
        assert!(check_value_count(3, 6, 2).is_ok());
        let long: Vec<u64> = (0..20_000).map(|i| i * 3).collect();
        assert_eq!(check_and_sign(&long), Ok(ferrops_net::key_signature(&long)));
        let mut bad = long.clone();
        bad[SIGN_CHUNK] = bad[SIGN_CHUNK - 1]; // a duplicate across a chunk boundary
        assert!(matches!(
            check_and_sign(&bad),
            Err(KeyListError::NotSortedUnique { index, .. }) if index == SIGN_CHUNK
        ));
        bad = long.clone();
        bad[15_000] = 0;
        assert!(matches!(
            check_and_sign(&bad),
            Err(KeyListError::NotSortedUnique { index: 15_000, .. })
        ));
        assert!(check_value_count(3, 5, 2).is_err());
    }

    #[test]
    fn a_key_list_is_checked_once_and_signs_each_slice_like_the_slice_api() {
        assert!(matches!(
            KeyList::new(vec![1, 5, 5]),
            Err(KeyListError::NotSortedUnique { index: 2, .. })
        ));
        let keys: Vec<u64> = (0..20_000).map(|i| i * 7).collect();
        let list = KeyList::try_from(keys.clone()).unwrap();
        assert_eq!(list.keys(), &keys[..]);
        assert_eq!((list.len(), list.is_empty()), (20_000, false));
        for idx in [0..20_000, 0..9_000, 9_000..20_000, 0..9_000] {
            assert_eq!(
                list.signature(idx.clone()),
                check_and_sign(&keys[idx]).unwrap()
            );
        }
        // Clones share what was signed; many routings never grow the memory past its bound.
        let clone = list.clone();
        for end in 1..=REMEMBERED_SIGNATURES * 2 {
            assert_eq!(
                clone.signature(0..end),
                ferrops_net::key_signature(&keys[..end])
            );
        }
        assert!(list.lock_signatures().len() <= REMEMBERED_SIGNATURES);
        assert!(KeyList::new(Vec::new()).unwrap().is_empty());
    }
}
