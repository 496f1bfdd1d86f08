//! The k-way sum `out = ((bufs[0] + bufs[1]) + ...)`, generic over [`Simd`], adding left to
//! right like the scalar reference so every tier rounds identically.

use crate::simd::{Simd, STREAM_BYTES};

/// `out = ((bufs[0] + bufs[1]) + ...)`, left to right, zeros for no buffer.
///
/// # Safety
/// `V` supported; every buffer as long as `out`.
#[inline(always)]
pub(crate) unsafe fn sum_k<V: Simd>(out: &mut [f32], bufs: &[&[f32]]) {
    let Some((first, rest)) = bufs.split_first() else {
        out.fill(0.0);
        return;
    };
    let n = out.len();
    let scalar = |out: &mut [f32], j: usize| {
        let mut acc = first[j];
        for b in rest {
            acc += b[j];
        }
        out[j] = acc;
    };
    let vec_bytes = V::LANES * 4;
    let stream = n * 4 >= STREAM_BYTES;
    let head = if stream {
        ((vec_bytes - out.as_ptr() as usize % vec_bytes) % vec_bytes / 4).min(n)
    } else {
        0
    };
    for j in 0..head {
        scalar(out, j);
    }
    let mut i = head;
    // SAFETY: `i + LANES <= n` and every buffer holds `n` values; when streaming, `out + i` is
    // vector-aligned (head peeled above) and the fence follows the loop. Feature from the
    // caller.
    unsafe {
        let o = out.as_mut_ptr();
        while i + V::LANES <= n {
            let mut acc = V::load(first.as_ptr().add(i));
            for b in rest {
                acc = acc.add(V::load(b.as_ptr().add(i)));
            }
            if stream {
                acc.stream(o.add(i));
            } else {
                acc.store(o.add(i));
            }
            i += V::LANES;
        }
        if stream {
            V::fence();
        }
    }
    for j in i..n {
        scalar(out, j);
    }
}
