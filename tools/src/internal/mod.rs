//! Not API: the pieces the `ferrops` binary shares with the integration tests in `tests/`,
//! which check them directly — the data formats (LIBSVM reader and generator, image patches),
//! the synthetic data of the built-in jobs, the logistic loss, the single-process reference
//! solver the distributed L1-LR run is compared with, and the trace records that run writes, the body of the
//! fuzz target over the LIBSVM reader, and LDA's corpora, sampler and measures (`lda`).
//! Hidden from the documentation and free to change with the binary.

pub mod data;
pub mod fuzzing;
pub mod lda;
pub mod logistic;
pub mod reference;
pub mod synth;
pub mod trace;
