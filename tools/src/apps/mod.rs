//! Applications trained on the parameter server: L1-regularised logistic regression by delayed
//! block proximal gradient (`ferrops train l1lr`, worker job `l1lr`), with its single-process
//! reference solver, trace records, and the PNG plot of a trace.

pub mod blocks;
pub mod l1lr;
pub mod logistic;
pub mod plot;
pub mod reference;
pub mod rica;
pub mod trace;
pub mod train;
