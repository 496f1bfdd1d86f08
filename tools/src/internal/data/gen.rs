//! `ferrops data gen`: writes a synthetic sparse binary classification set in LIBSVM format.
//! Feature frequencies follow a power law (a few features in most rows, a long tail of rare
//! ones), labels come from a planted sparse weight vector plus Gaussian noise, indices are
//! 1-based as LIBSVM and liblinear expect, and each value is +1 or −1 at random (so the frequent
//! features do not push every label the same way and the classes stay balanced).

use std::io::{self, Write};

use crate::internal::synth::Rng;

/// The shape of a generated set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenSpec {
    pub rows: u64,
    /// Feature indices are 1..=features.
    pub features: u64,
    /// Draws per row before duplicates are removed (rows have at most this many nonzeros).
    pub nnz_per_row: usize,
    pub seed: u64,
}

/// Fraction of features with a nonzero planted weight.
const PLANTED_DENSITY: f64 = 0.1;
/// Power-law exponent of the feature frequencies.
const ZIPF_EXPONENT: f64 = 1.1;
/// Standard deviation of the label noise added to the planted margin.
const LABEL_NOISE: f64 = 0.5;

/// The planted weight of 0-based feature `j` (mostly zero; deterministic in the seed).
pub fn planted_weight(seed: u64, j: u64) -> f64 {
    let mut r = Rng::new(seed ^ j.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x51ED_270B);
    if r.unit() < PLANTED_DENSITY {
        r.normal() * 2.0
    } else {
        0.0
    }
}

/// Writes the set to `out` (wrap files in a `BufWriter`); returns the number of nonzeros.
pub fn write(spec: &GenSpec, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Rng::new(
        spec.seed
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .wrapping_add(17),
    );
    let mut features: Vec<u64> = Vec::with_capacity(spec.nnz_per_row);
    let mut signs: Vec<bool> = Vec::with_capacity(spec.nnz_per_row);
    let mut line: Vec<u8> = Vec::with_capacity(16 * spec.nnz_per_row + 8);
    let mut nnz = 0;
    let features_count = spec.features.max(1);
    for _ in 0..spec.rows {
        features.clear();
        features
            .extend((0..spec.nnz_per_row).map(|_| rng.power_law(features_count, ZIPF_EXPONENT)));
        features.sort_unstable();
        features.dedup();
        signs.clear();
        signs.extend(features.iter().map(|_| rng.next_u64() & 1 == 0));
        let margin: f64 = features
            .iter()
            .zip(&signs)
            .map(|(&j, &plus)| planted_weight(spec.seed, j) * if plus { 1.0 } else { -1.0 })
            .sum();
        let label = margin + rng.normal() * LABEL_NOISE >= 0.0;
        line.clear();
        line.extend_from_slice(if label { b"+1" } else { b"-1" });
        for (&j, &plus) in features.iter().zip(&signs) {
            line.push(b' ');
            push_decimal(&mut line, j + 1);
            line.extend_from_slice(if plus { b":1" } else { b":-1" });
        }
        line.push(b'\n');
        out.write_all(&line)?;
        nnz += features.len() as u64;
    }
    out.flush()?;
    Ok(nnz)
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formatting() {
        let mut v = Vec::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            v.clear();
            push_decimal(&mut v, n);
            assert_eq!(String::from_utf8(v.clone()).unwrap(), n.to_string());
        }
    }

    #[test]
    fn generated_rows_are_deterministic_and_balanced_enough() {
        let spec = GenSpec {
            rows: 500,
            features: 2000,
            nnz_per_row: 10,
            seed: 4,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let nnz = write(&spec, &mut a).unwrap();
        write(&spec, &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 500);
        let pos = text.lines().filter(|l| l.starts_with("+1")).count();
        assert!((50..450).contains(&pos), "{pos} positives");
        assert!(nnz > 500 * 5 && nnz <= 500 * 10, "{nnz}");
    }
}
