//! x86-64 fast paths: a [`crate::simd::Simd`] implementation per tier and the
//! `#[target_feature]` entry points that instantiate the generic kernel bodies.

pub(crate) mod avx2;
pub(crate) mod avx512;
