//! A single-process L1-regularised logistic regression solver, the yardstick the distributed
//! solver is checked against: cyclic coordinate descent, each coordinate taking the proximal
//! Newton step of its one-dimensional problem with backtracking until the objective falls
//! (monotone by construction), in f64.

use super::data::Rows;

use super::logistic;

/// Σ log(1 + exp(−y·wᵀx)) + λ‖w‖₁ at `w` (indexed by feature; missing features weigh 0).
pub fn objective(rows: &Rows, w: &[f64], lambda: f64) -> f64 {
    let loss: f64 = (0..rows.len())
        .map(|i| {
            let (idx, val) = rows.row(i);
            let m: f64 = idx
                .iter()
                .zip(val)
                .map(|(&j, &x)| w.get(j as usize).copied().unwrap_or(0.0) * f64::from(x))
                .sum();
            logistic::loss(rows.labels[i], m)
        })
        .sum();
    loss + lambda * w.iter().map(|v| v.abs()).sum::<f64>()
}

/// Minimises the objective over `dim` features by `passes` passes of coordinate descent from
/// zero; returns the weights.
pub fn solve(rows: &Rows, dim: usize, lambda: f64, passes: usize) -> Vec<f64> {
    // Columns of the data.
    let mut col_ptr = vec![0usize; dim + 1];
    for &j in &rows.idx {
        col_ptr[j as usize + 1] += 1;
    }
    for j in 0..dim {
        col_ptr[j + 1] += col_ptr[j];
    }
    let mut fill = col_ptr.clone();
    let (mut col_rows, mut col_vals) = (vec![0u32; rows.idx.len()], vec![0f64; rows.idx.len()]);
    for i in 0..rows.len() {
        let (idx, val) = rows.row(i);
        for (&j, &x) in idx.iter().zip(val) {
            let at = fill[j as usize];
            fill[j as usize] += 1;
            col_rows[at] = i as u32;
            col_vals[at] = f64::from(x);
        }
    }
    let mut w = vec![0f64; dim];
    let mut m = vec![0f64; rows.len()];
    let y = &rows.labels;
    for _ in 0..passes {
        for j in 0..dim {
            let col = col_ptr[j]..col_ptr[j + 1];
            if col.is_empty() {
                continue;
            }
            let (mut g, mut h) = (0.0, 1e-12);
            for e in col.clone() {
                let i = col_rows[e] as usize;
                let (d1, d2) = logistic::derivatives(y[i], m[i]);
                g += d1 * col_vals[e];
                h += d2 * col_vals[e] * col_vals[e];
            }
            let target = w[j] - g / h;
            let proposed = logistic::soft_threshold(target, lambda / h);
            let mut d = proposed - w[j];
            if d == 0.0 {
                continue;
            }
            let before = lambda * w[j].abs()
                + col
                    .clone()
                    .map(|e| logistic::loss(y[col_rows[e] as usize], m[col_rows[e] as usize]))
                    .sum::<f64>();
            for _ in 0..30 {
                let after = lambda * (w[j] + d).abs()
                    + col
                        .clone()
                        .map(|e| {
                            let i = col_rows[e] as usize;
                            logistic::loss(y[i], m[i] + d * col_vals[e])
                        })
                        .sum::<f64>();
                if after <= before {
                    break;
                }
                d *= 0.5;
            }
            w[j] += d;
            for e in col {
                m[col_rows[e] as usize] += d * col_vals[e];
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::data::gen::{self, GenSpec};

    #[test]
    fn coordinate_descent_lowers_the_objective_and_is_sparse() {
        let spec = GenSpec {
            rows: 400,
            features: 300,
            nnz_per_row: 8,
            seed: 9,
        };
        let mut text = Vec::new();
        gen::write(&spec, &mut text).unwrap();
        let dir = std::env::temp_dir().join(format!("ferrops-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.svm");
        std::fs::write(&path, &text).unwrap();
        let rows = crate::internal::data::read_part(
            &path,
            0,
            1,
            crate::internal::data::DimBound::Max(crate::internal::data::DEFAULT_MAX_DIM),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let dim = rows.dim();
        let lambda = 2.0;
        let zero = objective(&rows, &vec![0.0; dim], lambda);
        let w5 = solve(&rows, dim, lambda, 5);
        let w50 = solve(&rows, dim, lambda, 50);
        let (f5, f50) = (
            objective(&rows, &w5, lambda),
            objective(&rows, &w50, lambda),
        );
        assert!(f5 < zero && f50 <= f5 + 1e-9, "{zero} {f5} {f50}");
        let nnz = w50.iter().filter(|v| **v != 0.0).count();
        assert!(nnz > 0 && nnz < dim, "nnz {nnz} of {dim}");
    }
}
