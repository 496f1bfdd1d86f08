//! The body of the fuzz target that tests this crate's input (`fuzz/fuzz_targets/libsvm.rs`,
//! see docs/fuzzing.md), shared with the test that replays its committed corpus.

use super::data::libsvm::parse_line;
use super::data::{DimBound, DEFAULT_MAX_DIM};

/// The longest error a bad line may produce: a few quoted token starts and the limit.
const MAX_ERROR_LEN: usize = 400;

/// Target `libsvm`: any line parses to an error or to a ±1 label with strictly increasing
/// indices below the bound and finite values, and an error quotes only the start of a token.
pub fn libsvm_line(data: &[u8]) {
    let Some((&b, line)) = data.split_first() else {
        return;
    };
    let bound = match b & 1 {
        0 => DimBound::Dim(u64::from(b >> 1) * 1000 + 1),
        _ => DimBound::Max(DEFAULT_MAX_DIM),
    };
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    match parse_line(line, bound, &mut idx, &mut val) {
        Ok(Some(label)) => {
            assert!(label == 1.0 || label == -1.0, "label {label}");
            assert_eq!(idx.len(), val.len());
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
            assert!(idx.iter().all(|&i| u64::from(i) < bound.limit()));
            assert!(val.iter().all(|v| v.is_finite()));
        }
        Ok(None) => assert!(idx.is_empty()),
        Err(message) => assert!(
            message.len() < MAX_ERROR_LEN,
            "{} bytes of error",
            message.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    ferrops_net::corpus_replay_test!("libsvm" => libsvm_line);
}
