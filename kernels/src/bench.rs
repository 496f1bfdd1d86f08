//! Measurement harness (filled in below).
