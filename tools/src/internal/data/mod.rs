//! Training data on disk: the LIBSVM/svmlight reader (streaming, split by byte ranges across
//! workers), the synthetic data generator behind `ferrops data gen`, and the summary behind
//! `ferrops data info`.

pub mod gen;
pub mod info;
pub mod libsvm;
pub mod patches;

pub use libsvm::{read_part, DataError, Rows};
