//! Scalar references of the filter masks.

/// Pushes `i` for every element whose accumulated change is significant:
/// `!(|delta| <= theta * max(|w|, eps))` — NaN in `delta` or `w` counts as significant, so a NaN
/// is always sent on, never silently dropped. Lengths already checked.
pub(crate) fn significant_ref(delta: &[f32], w: &[f32], theta: f32, eps: f32, out: &mut Vec<u32>) {
    for (i, (d, w)) in delta.iter().zip(w).enumerate() {
        let aw = w.abs();
        let scale = if aw <= eps { eps } else { aw };
        // Written as "not quiet" so NaN (unordered) counts as significant.
        let quiet = d.abs() <= theta * scale;
        if !quiet {
            out.push(i as u32);
        }
    }
}

/// Pushes `i` for every coordinate that fails the L1 KKT skip test, i.e. unless
/// `w == 0 && |g| <= l1 * (1 - margin)`. NaN never passes the test (it stays active).
pub(crate) fn kkt_active_ref(w: &[f32], g: &[f32], l1: f32, margin: f32, out: &mut Vec<u32>) {
    let bound = l1 * (1.0 - margin);
    for (i, (w, g)) in w.iter().zip(g).enumerate() {
        let skippable = *w == 0.0 && g.abs() <= bound;
        if !skippable {
            out.push(i as u32);
        }
    }
}
