//! The checkpoints a faulted job wrote (`check --checkpoint-every`), checked after it: the
//! last one must read back whole (`checkpoint::verify`) and hold, on every key the job pushed,
//! exactly `workers × clock` — what a checkpoint at one consistent clock holds, whatever
//! server died, stalled or was cut off while it was written.

use std::path::Path;

use ferrops_engine::checkpoint;
use ferrops_engine::store::{StoreOptions, TableStore};

/// Checks the checkpoint in `dir` of a `check` job of `workers` workers over `keys` keys;
/// returns the clock it was taken at, or what is wrong with it.
pub fn check(dir: &Path, workers: usize, keys: usize) -> Result<u32, String> {
    let manifest = checkpoint::verify(dir).map_err(|e| e.to_string())?;
    let expected = (manifest.clock as usize * workers) as f32;
    let mut seen = 0u64;
    for table in &manifest.tables {
        for file in &table.files {
            let (count, wrong) = read_range(dir, table, file, expected)?;
            seen += count;
            if let Some(value) = wrong {
                return Err(format!(
                    "checkpoint at clock {}: {} holds {value}, expected {expected} ({workers} \
                     workers × clock {})",
                    manifest.clock, file.file, manifest.clock
                ));
            }
        }
    }
    if seen != keys as u64 {
        return Err(format!(
            "checkpoint at clock {}: {seen} keys saved, the job pushed {keys}",
            manifest.clock
        ));
    }
    Ok(manifest.clock)
}

/// Loads one saved range; returns its key count and a value in it other than `expected`, if
/// there is one.
fn read_range(
    dir: &Path,
    table: &checkpoint::SavedTable,
    file: &checkpoint::SavedFile,
    expected: f32,
) -> Result<(u64, Option<f32>), String> {
    let bytes = usize::try_from(file.bytes).unwrap_or(usize::MAX);
    let opts = StoreOptions::plain(bytes.max(1 << 20));
    let mut store = TableStore::new(table.spec.clone(), &opts).map_err(|e| e.to_string())?;
    store
        .load(&dir.join(&file.file), file.first, file.last)
        .map_err(|e| e.to_string())?;
    let slots: Vec<u32> = store.key_slots().into_iter().map(|(_, s)| s).collect();
    let mut rows = Vec::new();
    store.export_rows(&slots, &mut rows);
    let wrong = rows.iter().copied().find(|&v| v != expected);
    Ok((slots.len() as u64, wrong))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrops_engine::checkpoint::{Manifest, SavedFile, SavedTable, FORMAT_VERSION};
    use ferrops_engine::store::SaveAs;
    use ferrops_engine::TableSpec;

    /// A one-range checkpoint at `clock` of a dim-2 table whose keys hold `values` (one per
    /// key, both columns), in a fresh directory.
    fn saved(name: &str, clock: u32, values: &[f32]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrops-saved-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = TableSpec::new("check", 2);
        let mut store = TableStore::new(spec.clone(), &StoreOptions::plain(1 << 20)).unwrap();
        let keys: Vec<u64> = (0..values.len() as u64).map(|k| k * 1000).collect();
        let resolved = store.resolve(0, &keys).unwrap();
        let inputs: Vec<f32> = values.iter().flat_map(|&v| [v, v]).collect();
        store.apply(&resolved.slots(), &inputs).unwrap();
        let at = SaveAs {
            table: 0,
            range: 0,
            first: 0,
            last: u64::MAX,
            clock,
        };
        let file = checkpoint::file_name(0, 0, clock, 1);
        let (header, written) = store.save(&dir.join(&file), &at).unwrap();
        let manifest = Manifest {
            format: FORMAT_VERSION,
            clock,
            ranges: 1,
            tables: vec![SavedTable {
                id: 0,
                spec,
                files: vec![SavedFile::new(file, &header, written)],
            }],
        };
        manifest.write(&dir).unwrap();
        dir
    }

    #[test]
    fn a_checkpoint_holding_workers_times_clock_everywhere_passes() {
        let dir = saved("exact", 3, &[6.0; 5]);
        assert_eq!(check(&dir, 2, 5), Ok(3));
        let err = check(&dir, 2, 6).unwrap_err();
        assert!(err.contains("5 keys saved, the job pushed 6"), "{err}");
    }

    #[test]
    fn one_wrong_value_is_named_with_its_file() {
        let dir = saved("wrong", 3, &[6.0, 6.0, 5.0, 6.0]);
        let err = check(&dir, 2, 4).unwrap_err();
        assert!(
            err.contains("holds 5") && err.contains("expected 6"),
            "{err}"
        );
        assert!(err.contains("table0-range0-clock3-attempt1.ckpt"), "{err}");
    }
}
