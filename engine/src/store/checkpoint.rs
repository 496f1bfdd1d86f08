//! A table's storage to and from a checkpoint file ([`crate::checkpoint::file`]): its key map
//! (sparse tables), its values, its rule's state arrays and Adam's step count. Writing streams
//! through the file's bounded buffer; the arrays go straight from their segments.

use std::path::Path;

use zerocopy::IntoBytes;

use super::{StoreError, TableStore};
use crate::checkpoint::file::{FileHeader, FileReader, FileWriter, Written, CHUNK};
use crate::checkpoint::CheckpointError;

/// Where a saved range sits: the table's id and the range's index and keys in the saving job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaveAs {
    pub table: u32,
    pub range: u32,
    /// The range's first and last key (inclusive).
    pub first: u64,
    pub last: u64,
    /// The clock the job had completed.
    pub clock: u32,
}

impl TableStore {
    /// The header of this store's file.
    fn header(&self, at: &SaveAs) -> FileHeader {
        let (first, last, keys, slots) = match self.dense {
            Some((begin, end)) => {
                let keys = end - begin;
                (begin, end.saturating_sub(1).max(begin), keys, keys)
            }
            None => (
                at.first,
                at.last,
                self.map.len() as u64,
                u64::from(self.slots_used),
            ),
        };
        FileHeader {
            table: at.table,
            range: at.range,
            spec: self.spec.clone(),
            dense: self.dense.is_some(),
            first,
            last,
            clock: at.clock,
            adam_step: self.adam_step,
            keys,
            slots,
        }
    }

    /// Writes the table's values and rule state to `path` (atomically: a temporary file,
    /// synced, renamed): a sparse table's key map a chunk at a time, then every array straight
    /// from its segment. Returns the header written and the file's size and body checksum.
    pub fn save(&self, path: &Path, at: &SaveAs) -> Result<(FileHeader, Written), CheckpointError> {
        let header = self.header(at);
        let mut out = FileWriter::create(path, &header)?;
        if self.dense.is_none() {
            for (key, slot) in self.map.iter() {
                out.write(key.as_bytes())?;
                out.write(slot.as_bytes())?;
            }
        }
        let floats = header.array_floats() as usize;
        for array in self.arrays_for_reading() {
            out.write(array[..floats].as_bytes())?;
        }
        let written = out.finish()?;
        Ok((header, written))
    }

    /// The values and the rule's state arrays, in the order the file holds them.
    fn arrays_for_reading(&self) -> Vec<&[f32]> {
        std::iter::once(self.values.as_f32())
            .chain(self.state.iter().flatten().map(|s| s.as_f32()))
            .collect()
    }

    /// Loads, from the checkpoint file `path`, the keys of `[first, last]` this store holds
    /// (for a dense store: its own key range), reading the whole file and checking its
    /// checksum. The file's table must have this store's spec. Returns the keys loaded.
    pub fn load(&mut self, path: &Path, first: u64, last: u64) -> Result<u64, CheckpointError> {
        let mut file = FileReader::open(path)?;
        if file.header.spec != self.spec {
            return Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                reason: format!(
                    "it holds {:?}, the table is {:?}",
                    file.header.spec, self.spec
                ),
            });
        }
        let loaded = match self.dense {
            Some(own) => self.load_dense(&mut file, own)?,
            None => self.load_sparse(&mut file, first, last)?,
        };
        self.adam_step = self.adam_step.max(file.header.adam_step);
        file.finish()?;
        Ok(loaded)
    }

    /// A dense file's arrays, chunk by chunk, copying the part of each that falls in `own`.
    fn load_dense(
        &mut self,
        file: &mut FileReader,
        own: (u64, u64),
    ) -> Result<u64, CheckpointError> {
        let dim = self.spec.dim as u64;
        let (saved_first, saved_keys) = (file.header.first, file.header.keys);
        // Keys both hold, as offsets into the saved arrays and into this store's.
        let begin = own.0.max(saved_first);
        let end = own.1.min(saved_first + saved_keys);
        let path = file.path().to_path_buf();
        let mut chunk = vec![0f32; (CHUNK / 4).min((saved_keys * dim) as usize).max(1)];
        let arrays = 1 + self.spec.rule.state_len();
        for array in 0..arrays {
            let mut at = 0u64; // floats of this saved array read so far
            while at < saved_keys * dim {
                let n = (chunk.len() as u64).min(saved_keys * dim - at) as usize;
                file.read(chunk[..n].as_mut_bytes())?;
                // Saved floats [at, at + n) hold keys saved_first + at / dim ...
                let lo = ((begin - saved_first.min(begin)) * dim).max(at);
                let hi = (end.saturating_sub(saved_first) * dim).min(at + n as u64);
                if begin < end && lo < hi {
                    let dst = (saved_first * dim + lo - own.0 * dim) as usize;
                    let src = (lo - at) as usize..(hi - at) as usize;
                    let target = self.array_mut(array);
                    let len = src.len();
                    target
                        .get_mut(dst..dst + len)
                        .ok_or_else(|| CheckpointError::corrupt(&path, "keys outside the table"))?
                        .copy_from_slice(&chunk[src]);
                }
                at += n as u64;
            }
        }
        Ok(end.saturating_sub(begin))
    }

    /// A sparse file: its key map, then its arrays. The keys in `[first, last]` get slots here
    /// — the saved ones when the whole file lands in an empty store (the arrays are then read
    /// straight into the segments), new ones otherwise (through a map from saved to new slots,
    /// 4 bytes per saved slot while loading).
    fn load_sparse(
        &mut self,
        file: &mut FileReader,
        first: u64,
        last: u64,
    ) -> Result<u64, CheckpointError> {
        let dim = self.spec.dim as usize;
        let (keys, slots) = (file.header.keys as usize, file.header.slots as usize);
        let path = file.path().to_path_buf();
        let corrupt = |why: &str| CheckpointError::corrupt(&path, why);
        let full = |e: StoreError| CheckpointError::Failed(format!("{}: {e}", path.display()));
        let same_slots = self.map.is_empty()
            && self.slots_used == 0
            && first <= file.header.first
            && file.header.last <= last;
        let mut remap = match same_slots {
            true => Vec::new(),
            false => vec![u32::MAX; slots],
        };
        self.map.reserve(keys);
        // The key map: (key, slot) entries, three words each.
        let per_chunk = CHUNK / FileHeader::KEY_ENTRY as usize;
        let mut words = vec![0u32; per_chunk.min(keys).max(1) * 3];
        let (mut left, mut loaded) = (keys, 0u64);
        while left > 0 {
            let n = left.min(per_chunk);
            file.read(words[..n * 3].as_mut_bytes())?;
            left -= n;
            for e in words[..n * 3].chunks_exact(3) {
                let key = u64::from(e[0]) | (u64::from(e[1]) << 32);
                let saved = e[2];
                if saved as usize >= slots {
                    return Err(corrupt("a key's slot is past the arrays"));
                }
                if !(first..=last).contains(&key) {
                    continue;
                }
                if same_slots {
                    self.map.get_or_insert(key, saved);
                } else {
                    let (slot, inserted) = self.map.get_or_insert(key, self.slots_used);
                    if inserted {
                        self.slots_used = self
                            .slots_used
                            .checked_add(1)
                            .ok_or_else(|| full(StoreError::Full(u32::MAX as usize)))?;
                    }
                    remap[saved as usize] = slot;
                }
                loaded += 1;
            }
        }
        if same_slots {
            self.slots_used = slots as u32;
        }
        self.grow_storage().map_err(full)?;
        let arrays = 1 + self.spec.rule.state_len();
        let mut chunk = Vec::new();
        for array in 0..arrays {
            if same_slots {
                for piece in self.array_mut(array)[..slots * dim].chunks_mut(CHUNK / 4) {
                    file.read(piece.as_mut_bytes())?;
                }
                continue;
            }
            let per_chunk = (CHUNK / 4 / dim).max(1);
            chunk.resize(per_chunk * dim, 0f32);
            let mut at = 0;
            while at < slots {
                let n = (slots - at).min(per_chunk);
                file.read(chunk[..n * dim].as_mut_bytes())?;
                let target = self.array_mut(array);
                for (i, &slot) in remap[at..at + n].iter().enumerate() {
                    if slot != u32::MAX {
                        let to = slot as usize * dim;
                        target[to..to + dim].copy_from_slice(&chunk[i * dim..(i + 1) * dim]);
                    }
                }
                at += n;
            }
        }
        Ok(loaded)
    }

    /// Array `i` as the file orders them: 0 the values, then the state arrays.
    fn array_mut(&mut self, i: usize) -> &mut [f32] {
        let (values, a, b) = self.arrays();
        match i {
            0 => values,
            1 => a,
            _ => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use ferrops_kernels::Rule;

    use super::*;
    use crate::store::StoreOptions;
    use crate::table::TableSpec;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrops-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn contents(s: &mut TableStore, keys: &[u64]) -> Vec<Vec<u32>> {
        let r = s.resolve_for_read(0, keys).unwrap();
        let dim = s.spec.dim as usize;
        (0..1 + s.spec.rule.state_len())
            .map(|i| {
                let a = s.array_mut(i);
                r.slots()
                    .iter()
                    .flat_map(|&slot| a[slot as usize * dim..][..dim].iter().map(|v| v.to_bits()))
                    .collect()
            })
            .collect()
    }

    const ADAM: Rule = Rule::adam(0.01);

    #[test]
    fn a_sparse_table_split_in_two_loads_into_one_and_back() {
        let dir = scratch("sparse");
        let spec = TableSpec::new("w", 3).rule(ADAM);
        let opts = StoreOptions::plain(64 << 20);
        let keys: Vec<u64> = (0..20_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut keys = keys;
        keys.sort_unstable();
        let half = u64::MAX / 2;
        let split = keys.partition_point(|&k| k <= half);
        let inputs: Vec<f32> = (0..keys.len() * 3).map(|i| (i % 13) as f32 - 6.0).collect();
        // Two stores as two servers would hold them, pushed twice each.
        let mut parts = [
            TableStore::new(spec.clone(), &opts).unwrap(),
            TableStore::new(spec.clone(), &opts).unwrap(),
        ];
        let ranges = [(0, half), (half + 1, u64::MAX)];
        for (store, part) in parts.iter_mut().zip([&keys[..split], &keys[split..]]) {
            let start = keys.iter().position(|k| k == &part[0]).unwrap();
            for _ in 0..2 {
                let r = store.resolve(0, part).unwrap();
                store
                    .apply(&r.slots(), &inputs[start * 3..(start + part.len()) * 3])
                    .unwrap();
            }
        }
        let mut files = Vec::new();
        for (i, (store, (first, last))) in parts.iter().zip(ranges).enumerate() {
            let at = SaveAs {
                table: 0,
                range: i as u32,
                first,
                last,
                clock: 4,
            };
            let path = dir.join(format!("r{i}"));
            let (h, _) = store.save(&path, &at).unwrap();
            assert_eq!((h.adam_step, h.clock), (2, 4));
            files.push(path);
        }
        let mut one = TableStore::new(spec.clone(), &opts).unwrap();
        for path in &files {
            one.load(path, 0, u64::MAX).unwrap();
        }
        assert_eq!(one.len(), keys.len());
        let mut whole = contents(&mut parts[0], &keys[..split]);
        for (a, b) in whole
            .iter_mut()
            .zip(contents(&mut parts[1], &keys[split..]))
        {
            a.extend(b);
        }
        assert_eq!(
            contents(&mut one, &keys),
            whole,
            "values and both Adam moments"
        );
        // A further step after the restore equals the same step on the saved stores.
        let r = one.resolve(0, &keys).unwrap();
        one.apply(&r.slots(), &inputs).unwrap();
        let r = parts[0].resolve(0, &keys[..split]).unwrap();
        parts[0].apply(&r.slots(), &inputs[..split * 3]).unwrap();
        let after = contents(&mut one, &keys[..split]);
        assert_eq!(after, contents(&mut parts[0], &keys[..split]));
        // Back to the second range only.
        let one_path = dir.join("one");
        one.save(
            &one_path,
            &SaveAs {
                table: 0,
                range: 0,
                first: 0,
                last: u64::MAX,
                clock: 5,
            },
        )
        .unwrap();
        let mut second = TableStore::new(spec, &opts).unwrap();
        assert_eq!(
            second.load(&one_path, half + 1, u64::MAX).unwrap(),
            (keys.len() - split) as u64
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dense_table_reloads_on_other_bounds() {
        let dir = scratch("dense");
        let opts = StoreOptions::plain(64 << 20);
        let spec = TableSpec::dense("d", 2, 1000).rule(Rule::AdaGrad { lr: 0.5, eps: 1e-6 });
        let mut parts = [
            TableStore::dense(spec.clone(), &opts, 0, 333).unwrap(),
            TableStore::dense(spec.clone(), &opts, 333, 666).unwrap(),
            TableStore::dense(spec.clone(), &opts, 666, 1000).unwrap(),
        ];
        let mut files = Vec::new();
        for (i, store) in parts.iter_mut().enumerate() {
            let (b, e) = store.dense.unwrap();
            let keys: Vec<u64> = (b..e).collect();
            let r = store.resolve(0, &keys).unwrap();
            let g: Vec<f32> = keys
                .iter()
                .flat_map(|&k| [k as f32, -(k as f32) / 7.0])
                .collect();
            store.apply(&r.slots(), &g).unwrap();
            let path = dir.join(format!("r{i}"));
            store
                .save(
                    &path,
                    &SaveAs {
                        table: 1,
                        range: i as u32,
                        first: 0,
                        last: 0,
                        clock: 1,
                    },
                )
                .unwrap();
            files.push(path);
        }
        let mut halves = [
            TableStore::dense(spec.clone(), &opts, 0, 500).unwrap(),
            TableStore::dense(spec, &opts, 500, 1000).unwrap(),
        ];
        for (h, (b, e)) in halves.iter_mut().zip([(0u64, 500u64), (500, 1000)]) {
            let loaded: u64 = files.iter().map(|p| h.load(p, 0, 0).unwrap()).sum();
            assert_eq!(loaded, e - b);
        }
        for k in [0u64, 1, 332, 333, 499, 500, 665, 666, 999] {
            let old = parts.iter_mut().find(|p| p.dense.unwrap().1 > k).unwrap();
            let new = halves.iter_mut().find(|p| p.dense.unwrap().1 > k).unwrap();
            assert_eq!(contents(old, &[k]), contents(new, &[k]), "key {k}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
