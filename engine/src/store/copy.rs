//! A table's storage read out and written in by rows, for copying a key range to another
//! server while it keeps serving (`server/range_copy.rs`): the keys it holds, each key's row
//! (its values, then each rule state array's floats for it), and Adam's step count.

use super::{StoreError, TableStore};

impl TableStore {
    /// Every key this store holds with its slot, in key order (a dense store: all its keys).
    pub fn key_slots(&self) -> Vec<(u64, u32)> {
        match self.dense {
            Some((begin, _)) => (0..self.slots_used)
                .map(|s| (begin + u64::from(s), s))
                .collect(),
            None => {
                let mut keys: Vec<(u64, u32)> = self.map.iter().collect();
                keys.sort_unstable();
                keys
            }
        }
    }

    /// Floats in one key's row: its values and the rule state's.
    pub fn row_floats(&self) -> usize {
        self.spec.dim as usize * (1 + self.spec.rule.state_len())
    }

    /// Appends the rows of `slots` to `out`: all their values, then all their first state
    /// array's floats, then the second's (each array's part in slot order).
    pub fn export_rows(&self, slots: &[u32], out: &mut Vec<f32>) {
        let dim = self.spec.dim as usize;
        let arrays = std::iter::once(&self.values).chain(self.state.iter().flatten());
        for array in arrays {
            let floats = array.as_f32();
            for &s in slots {
                let at = s as usize * dim;
                out.extend_from_slice(&floats[at..at + dim]);
            }
        }
    }

    /// Overwrites the rows of the sorted, unique `keys` (creating the keys a sparse store does
    /// not hold yet) with `rows`, laid out as [`TableStore::export_rows`] writes them.
    pub fn import_rows(&mut self, keys: &[u64], rows: &[f32]) -> Result<(), StoreError> {
        self.check_rows(keys.len(), rows)?;
        let resolved = self.resolve(0, keys)?;
        self.import_rows_at(&resolved.slots(), rows)
    }

    /// [`TableStore::import_rows`] for keys already resolved to `slots`.
    pub fn import_rows_at(&mut self, slots: &[u32], rows: &[f32]) -> Result<(), StoreError> {
        self.check_rows(slots.len(), rows)?;
        let dim = self.spec.dim as usize;
        let part = slots.len() * dim;
        let (values, a, b) = self.arrays();
        for (i, array) in [values, a, b].into_iter().enumerate() {
            let Some(from) = rows.get(i * part..(i + 1) * part) else {
                break;
            };
            for (row, &slot) in from.chunks_exact(dim).zip(slots) {
                let at = slot as usize * dim;
                array[at..at + dim].copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// Refuses rows that are not exactly `keys` rows.
    fn check_rows(&self, keys: usize, rows: &[f32]) -> Result<(), StoreError> {
        let expected = keys * self.row_floats();
        if rows.len() != expected {
            return Err(StoreError::Rows {
                keys,
                floats: rows.len(),
                expected,
            });
        }
        Ok(())
    }

    /// How many pushes Adam has counted (its bias correction's step).
    pub fn adam_step(&self) -> u32 {
        self.adam_step
    }

    /// Sets Adam's step count to the copied store's.
    pub fn set_adam_step(&mut self, step: u32) {
        self.adam_step = step;
    }
}

#[cfg(test)]
mod tests {
    use ferrops_kernels::Rule;

    use super::*;
    use crate::store::StoreOptions;
    use crate::table::TableSpec;

    fn adagrad(dim: u32) -> TableStore {
        let spec = TableSpec::new("t", dim).rule(Rule::AdaGrad { lr: 0.1, eps: 1e-6 });
        TableStore::new(spec, &StoreOptions::plain(16 << 20)).unwrap()
    }

    #[test]
    fn rows_copied_into_another_store_give_the_same_table() {
        let mut from = adagrad(2);
        for round in 0..3 {
            let keys: Vec<u64> = (0..50).map(|k| k * 3 + round).collect();
            let r = from.resolve(0, &keys).unwrap();
            let inputs: Vec<f32> = (0..100).map(|i| i as f32 * 0.25 - round as f32).collect();
            from.apply(&r.slots(), &inputs).unwrap();
        }
        let mut to = adagrad(2);
        // The copy already holds a stale row for one key and a key the source lacks.
        let stale = to.resolve(0, &[3, 1_000]).unwrap();
        to.apply(&stale.slots(), &[9.0, 9.0, 9.0, 9.0]).unwrap();
        let held = from.key_slots();
        for chunk in held.chunks(17) {
            let keys: Vec<u64> = chunk.iter().map(|&(k, _)| k).collect();
            let slots: Vec<u32> = chunk.iter().map(|&(_, s)| s).collect();
            let mut rows = Vec::new();
            from.export_rows(&slots, &mut rows);
            to.import_rows(&keys, &rows).unwrap();
        }
        let source = from.key_slots();
        let mut copy = to.key_slots();
        copy.retain(|&(k, _)| k != 1_000);
        assert_eq!(source.len(), copy.len());
        for (&(k, s), &(k2, s2)) in source.iter().zip(&copy) {
            assert_eq!(k, k2);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            from.export_rows(&[s], &mut a);
            to.export_rows(&[s2], &mut b);
            assert_eq!(a, b, "row of key {k} (values and AdaGrad state)");
        }
    }

    #[test]
    fn a_row_count_that_does_not_match_the_keys_is_refused() {
        let mut store = adagrad(2);
        let err = store.import_rows(&[1, 2], &[0.0; 7]).unwrap_err();
        assert!(err.to_string().contains("8"), "{err}");
        assert!(store.is_empty());
    }
}
