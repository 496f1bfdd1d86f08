//! Numeric kernels of ferrops (placeholder until the kernels land).
