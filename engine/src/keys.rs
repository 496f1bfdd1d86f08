//! Checks on request key lists.

/// Why a key list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("keys must be sorted and unique: key[{index}] = {key} follows {previous}")]
    NotSortedUnique {
        index: usize,
        previous: u64,
        key: u64,
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
        assert!(check_value_count(3, 5, 2).is_err());
    }
}
