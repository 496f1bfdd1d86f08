//! The applications the command line drives on a local cluster: `train l1lr`, `train rica`
//! (start the cluster with the job, follow it, summarise it) and `train lda` (`lda.rs`), and the
//! PNG plots of their traces and filters. The jobs themselves are in `jobs/`.

pub mod lda;
pub mod plot;
pub mod train;
