//! `ferrops data info`: one streaming pass over a LIBSVM file counting rows, nonzeros, feature
//! indices (largest + 1, and how many distinct) and the label balance.

use std::fmt;
use std::path::Path;

use super::libsvm::{for_each_row, DataError, DimBound};

/// What `ferrops data info` prints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub rows: u64,
    pub nnz: u64,
    /// Largest index + 1 (0 for no nonzeros).
    pub dim: u64,
    pub distinct_features: u64,
    pub positives: u64,
}

/// Summarises the whole file; an index at or beyond `bound` is an error.
pub fn summarize(path: &Path, bound: DimBound) -> Result<Summary, DataError> {
    let mut s = Summary::default();
    let mut seen: Vec<u64> = Vec::new(); // bitset over indices
    for_each_row(path, 0, 1, bound, |label, idx, _| {
        s.rows += 1;
        s.nnz += idx.len() as u64;
        s.positives += u64::from(label > 0.0);
        for &i in idx {
            let (word, bit) = (i as usize / 64, i % 64);
            if word >= seen.len() {
                seen.resize(word + 1, 0);
            }
            seen[word] |= 1 << bit;
            s.dim = s.dim.max(u64::from(i) + 1);
        }
    })?;
    s.distinct_features = seen.iter().map(|w| u64::from(w.count_ones())).sum();
    Ok(s)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: u64| 100.0 * n as f64 / self.rows.max(1) as f64;
        writeln!(f, "rows       {}", self.rows)?;
        writeln!(
            f,
            "features   {} (largest index + 1), {} distinct",
            self.dim, self.distinct_features
        )?;
        writeln!(
            f,
            "nonzeros   {} ({:.1} per row)",
            self.nnz,
            self.nnz as f64 / self.rows.max(1) as f64
        )?;
        write!(
            f,
            "labels     {} positive ({:.1}%), {} negative ({:.1}%)",
            self.positives,
            pct(self.positives),
            self.rows - self.positives,
            pct(self.rows - self.positives)
        )
    }
}
