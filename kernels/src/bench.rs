//! Measurement harness behind `ferrops bench kernels`: runs every dense kernel on arrays far
//! larger than the last-level cache and on small in-cache arrays, next to a STREAM-style triad
//! floor, and returns the figures (the caller prints them; this crate does no I/O).
//!
//! Traffic counts each array the kernel reads once and each array it writes once (a read-write
//! array counts twice), in bytes, divided by the best wall time of a pass. The triad
//! `a[i] = b[i] + s*c[i]` counts 12 bytes per element. Single thread throughout, as the server
//! applies updates on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::apply::{apply_on, sum_k_on, Rows};
use crate::convert;
use crate::filter::{kkt_active_indices_on, significant_indices_on};
use crate::isa::Isa;
use crate::rule::{Rule, State};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Elements per array for the out-of-cache runs (default 64M f32 = 256 MiB per array).
    pub elements: usize,
    /// Elements per array for the in-cache runs (default 16K = 64 KiB per array).
    pub in_cache_elements: usize,
    /// Timed passes over the large arrays per kernel (best one counts).
    pub passes: usize,
    /// Time spent per in-cache measurement (repetitions until it is used up).
    pub in_cache_time: Duration,
    /// Tier of the fast path (defaults to the active one).
    pub isa: Isa,
}

impl BenchOptions {
    /// Defaults for `elements` out-of-cache elements.
    pub fn new(elements: usize) -> Self {
        BenchOptions {
            elements,
            in_cache_elements: 16 * 1024,
            passes: 3,
            in_cache_time: Duration::from_millis(25),
            isa: crate::isa::active_isa(),
        }
    }

    /// A smoke run for tests: `elements` out of cache, 256 in cache timed for `in_cache_time`,
    /// one pass.
    pub fn smoke(elements: usize, in_cache_time: Duration) -> Self {
        BenchOptions {
            in_cache_elements: 256,
            passes: 1,
            in_cache_time,
            ..BenchOptions::new(elements)
        }
    }
}

/// Which working-set size a result is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    OutOfCache,
    InCache,
}

impl Size {
    /// `"out_of_cache"` or `"in_cache"`.
    pub fn name(self) -> &'static str {
        match self {
            Size::OutOfCache => "out_of_cache",
            Size::InCache => "in_cache",
        }
    }
}

/// One kernel at one size.
#[derive(Clone, Debug)]
pub struct KernelResult {
    pub kernel: &'static str,
    pub isa: Isa,
    pub size: Size,
    pub elements: usize,
    /// Bytes of traffic per element (reads + writes).
    pub bytes_per_element: f64,
    pub gb_per_s: f64,
    pub gelem_per_s: f64,
    /// `gb_per_s` over the triad's GB/s at the same size.
    pub of_triad: f64,
    /// In-cache only: time of the scalar reference over time of the fast path.
    pub speedup_vs_scalar: Option<f64>,
}

impl KernelResult {
    /// `elements` run in `secs`, moving `bytes_per_element` each plus `extra` bytes in all;
    /// `of_triad` and `speedup_vs_scalar` left for the caller.
    fn timed(
        kernel: &'static str,
        isa: Isa,
        size: Size,
        elements: usize,
        bytes_per_element: f64,
        extra: usize,
        secs: f64,
    ) -> Self {
        let total = bytes_per_element * elements as f64 + extra as f64;
        KernelResult {
            kernel,
            isa,
            size,
            elements,
            bytes_per_element: total / elements as f64,
            gb_per_s: total / secs / 1e9,
            gelem_per_s: elements as f64 / secs / 1e9,
            of_triad: 0.0,
            speedup_vs_scalar: None,
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub elements: usize,
    pub in_cache_elements: usize,
    pub isa: Isa,
    /// Triad over `elements`-long arrays (the memory-bandwidth floor).
    pub triad_gb_per_s: f64,
    /// Triad over `in_cache_elements`-long arrays.
    pub triad_in_cache_gb_per_s: f64,
    pub results: Vec<KernelResult>,
}

/// The kernels measured, in report order.
pub const KERNELS: [&str; 17] = [
    "assign",
    "sum",
    "sgd",
    "momentum",
    "adagrad",
    "adam",
    "ftrl",
    "prox_l1",
    "elastic_net",
    "scaled_prox_l1",
    "sum_k4",
    "f32_to_f16",
    "f16_to_f32",
    "f32_to_bf16",
    "bf16_to_f32",
    "significant",
    "kkt_active",
];

/// The working arrays, allocated once at the largest size and sliced.
struct Bufs {
    w: Vec<f32>,
    s0: Vec<f32>,
    s1: Vec<f32>,
    /// Two planar inputs (g, h), also the extra sum_k inputs.
    inp: Vec<f32>,
    /// Weights for the filters, never modified: 1 in 16 non-zero, so the filters emit a
    /// realistic few percent of the indices.
    fw: Vec<f32>,
    half: Vec<u16>,
    idx: Vec<u32>,
}

impl Bufs {
    fn new(n: usize) -> Bufs {
        // Deterministic, moderate values; written once so every page is faulted in before
        // timing.
        let mut x = 0x9e37_79b9u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut w = Vec::with_capacity(n);
        let mut s0 = Vec::with_capacity(n);
        let mut s1 = Vec::with_capacity(n);
        let mut inp = Vec::with_capacity(2 * n);
        let mut fw = Vec::with_capacity(n);
        for i in 0..n {
            let v = next();
            w.push(v);
            s0.push(v * 0.1);
            s1.push(v.abs());
            fw.push(if i % 16 == 0 { v } else { 0.0 });
        }
        for i in 0..2 * n {
            let v = next() * 1e-3;
            inp.push(if i >= n { v.abs() + 0.5 } else { v });
        }
        Bufs {
            w,
            s0,
            s1,
            inp,
            fw,
            half: vec![0x3c00; n],
            idx: Vec::with_capacity(n),
        }
    }
}

/// Every update rule with the hyper-parameters the benchmarks run it with, in [`KERNELS`] order
/// (the criterion benchmarks use the same settings).
pub fn rules() -> impl Iterator<Item = Rule> {
    KERNELS.into_iter().filter_map(rule_of)
}

fn rule_of(kernel: &str) -> Option<Rule> {
    Some(match kernel {
        "assign" => Rule::Assign,
        "sum" => Rule::Sum,
        "sgd" => Rule::Sgd { lr: 0.01 },
        "momentum" => Rule::Momentum { lr: 0.01, mu: 0.9 },
        "adagrad" => Rule::AdaGrad {
            lr: 0.01,
            eps: 1e-8,
        },
        "adam" => Rule::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 10,
        },
        "ftrl" => Rule::Ftrl {
            alpha: 0.1,
            beta: 1.0,
            l1: 1e-3,
            l2: 1e-4,
        },
        "prox_l1" => Rule::ProxL1 { lr: 0.01, l1: 1e-4 },
        "elastic_net" => Rule::ElasticNet {
            lr: 0.01,
            l1: 1e-4,
            l2: 1e-4,
        },
        "scaled_prox_l1" => Rule::ScaledProxL1 {
            l1: 1e-4,
            delta: 1.0,
        },
        _ => return None,
    })
}

/// Bytes per element of `kernel` (each array read once, each array written once).
fn traffic(kernel: &str) -> f64 {
    match rule_of(kernel) {
        Some(Rule::Assign) => 8.0,
        Some(r) => 4.0 * (2.0 * (1 + r.state_len()) as f64 + r.inputs() as f64),
        None => match kernel {
            "sum_k4" => 4.0 * 5.0,
            "f32_to_f16" | "f16_to_f32" | "f32_to_bf16" | "bf16_to_f32" => 6.0,
            // Two f32 arrays read; the (few) indices written are added per run.
            _ => 8.0,
        },
    }
}

/// Runs `kernel` once over the first `n` elements. Returns extra bytes written (filter
/// indices).
fn run_once(kernel: &str, isa: Isa, b: &mut Bufs, n: usize) -> usize {
    let (w, s0, s1) = (&mut b.w[..n], &mut b.s0[..n], &mut b.s1[..n]);
    if let Some(rule) = rule_of(kernel) {
        let state = State::for_rule(rule, s0, s1);
        let inputs = match rule.inputs() {
            1 => &b.inp[..n],
            _ => &b.inp[..2 * n],
        };
        // Arrays are sized by construction; an error here is a harness bug, and the result
        // would show as absurd figures rather than a crash.
        let _ = apply_on(isa, rule, w, state, Rows::All, inputs);
        return 0;
    }
    let (g, h) = b.inp.split_at(b.inp.len() / 2);
    let _ = match kernel {
        "sum_k4" => sum_k_on(isa, w, &[&s0[..], &s1[..], &g[..n], &h[..n]]),
        "f32_to_f16" => convert::f32_to_f16_on(isa, w, &mut b.half[..n]),
        "f16_to_f32" => convert::f16_to_f32_on(isa, &b.half[..n], w),
        "f32_to_bf16" => convert::f32_to_bf16_on(isa, w, &mut b.half[..n]),
        "bf16_to_f32" => convert::bf16_to_f32_on(isa, &b.half[..n], s1),
        // |g| <= 5e-4: about 10% of the zero weights are significant (|g| > 0.5 * 9e-4).
        "significant" => {
            significant_indices_on(isa, &g[..n], &b.fw[..n], 0.5, 9e-4, &mut b.idx).map(|_| ())
        }
        // Zero weights with |g| <= 9e-4 are skippable: only the 1 in 16 non-zero stay.
        "kkt_active" => {
            kkt_active_indices_on(isa, &b.fw[..n], &g[..n], 1e-3, 0.1, &mut b.idx).map(|_| ())
        }
        _ => Ok(()),
    };
    if kernel == "significant" || kernel == "kkt_active" {
        b.idx.len() * 4
    } else {
        0
    }
}

/// STREAM triad `a = b + s*c` over `n` elements, plain code (the compiler vectorises it).
fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = *b + s * *c;
    }
}

/// Best seconds per pass of `f` over `passes` passes.
fn best_of(passes: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// Seconds per call of `f`, repeating it for about `budget` (best of 3 rounds).
fn per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Calibrate the repetition count on one call.
    let t = Instant::now();
    f();
    let one = t.elapsed().as_secs_f64().max(1e-8);
    let reps = ((budget.as_secs_f64() / 3.0 / one) as usize).clamp(1, 1_000_000);
    best_of(3, || {
        for _ in 0..reps {
            f();
        }
    }) / reps as f64
}

/// Runs the whole measurement. Allocates six f32 arrays of `elements` (plus a u16 and a u32
/// one).
pub fn run(opts: &BenchOptions) -> BenchReport {
    let n = opts.elements.max(1);
    let m = opts.in_cache_elements.clamp(1, n);
    let isa = opts.isa;
    let mut b = Bufs::new(n);

    let triad_rate = |len: usize, secs: f64| 12.0 * len as f64 / secs / 1e9;
    // The triad runs on its own arrays (w, s0, s1 are reset below), best of several passes
    // before and after the kernels: on a shared machine a single pass is noisy, and the floor
    // should be the bandwidth the machine can actually deliver.
    let triad_big = |b: &mut Bufs| {
        let (a, c) = (&mut b.s0[..n], &b.s1[..n]);
        best_of(opts.passes.max(3), || {
            triad(a, &b.w[..n], c, 0.5);
            black_box(&a);
        })
    };
    let mut triad_secs = triad_big(&mut b);
    let secs = per_call(opts.in_cache_time, || {
        triad(&mut b.s0[..m], &b.w[..m], &b.s1[..m], 0.5);
        black_box(&b.s0);
    });
    let triad_small_gb = triad_rate(m, secs);
    // Reset the array the triad overwrote.
    b.s0.iter_mut().zip(&b.w).for_each(|(s, w)| *s = 0.1 * *w);

    let mut results = Vec::new();
    for kernel in KERNELS {
        let bytes = traffic(kernel);
        let mut extra = 0;
        let secs = best_of(opts.passes, || {
            extra = run_once(kernel, isa, &mut b, n);
            black_box(&b.w);
        });
        // `of_triad` is set once the triad floor is final.
        results.push(KernelResult::timed(
            kernel,
            isa,
            Size::OutOfCache,
            n,
            bytes,
            extra,
            secs,
        ));

        let fast = per_call(opts.in_cache_time, || {
            extra = run_once(kernel, isa, &mut b, m);
            black_box(&b.w);
        });
        let scalar = per_call(opts.in_cache_time, || {
            run_once(kernel, Isa::Scalar, &mut b, m);
            black_box(&b.w);
        });
        let mut in_cache = KernelResult::timed(kernel, isa, Size::InCache, m, bytes, extra, fast);
        in_cache.of_triad = in_cache.gb_per_s / triad_small_gb;
        in_cache.speedup_vs_scalar = Some(scalar / fast);
        results.push(in_cache);
    }
    triad_secs = triad_secs.min(triad_big(&mut b));
    let triad_gb = triad_rate(n, triad_secs);
    for r in results.iter_mut().filter(|r| r.size == Size::OutOfCache) {
        r.of_triad = r.gb_per_s / triad_gb;
    }
    BenchReport {
        elements: n,
        in_cache_elements: m,
        isa,
        triad_gb_per_s: triad_gb,
        triad_in_cache_gb_per_s: triad_small_gb,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_every_kernel_at_both_sizes() {
        let r = run(&BenchOptions::smoke(4096, Duration::from_micros(200)));
        assert_eq!(r.results.len(), 2 * KERNELS.len());
        for k in &r.results {
            assert!(k.gb_per_s.is_finite() && k.gb_per_s > 0.0, "{k:?}");
            assert!(k.of_triad > 0.0);
            assert_eq!(k.speedup_vs_scalar.is_some(), k.size == Size::InCache);
        }
        assert!(r.triad_gb_per_s > 0.0 && r.triad_in_cache_gb_per_s > 0.0);
    }

    #[test]
    fn traffic_counts_each_array_once() {
        assert_eq!(traffic("sgd"), 12.0); // read w, g; write w
        assert_eq!(traffic("adam"), 28.0); // read w, m, v, g; write w, m, v
        assert_eq!(traffic("scaled_prox_l1"), 16.0); // read w, g, h; write w
        assert_eq!(traffic("assign"), 8.0);
    }
}
