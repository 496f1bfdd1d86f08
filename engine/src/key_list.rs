//! Key lists of requests: the checks a list must pass (sorted and unique, inside a dense range,
//! matched by the right number of values) and its signature, computed in the same pass.

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
}
