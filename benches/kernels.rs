//! Criterion benchmarks of the update kernels: every rule dense on an in-cache array (dispatched
//! tier vs the scalar reference), the sparse form at two row widths, the k-way sum, the
//! conversions and the filters. The full out-of-cache / triad comparison is
//! `ferrops bench kernels`; this file is for tracking regressions of single kernels.
//!
//! Run: `cargo bench -p ferrops-kernels --bench kernels` (add a filter such as `-- prox_l1`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrops_kernels::{
    active_isa, apply_dense, apply_sparse, convert, kkt_active_indices, significant_indices, sum_k,
    with_isa, Isa, Rule, State,
};

const N: usize = 4096;

/// Every rule with `ferrops bench kernels`' hyper-parameters.
fn rules() -> Vec<Rule> {
    ferrops_kernels::bench::rules().collect()
}

fn values(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * scale)
        .collect()
}

fn tiers() -> Vec<Isa> {
    let mut t = vec![Isa::Scalar];
    if active_isa() != Isa::Scalar {
        t.push(active_isa());
    }
    t
}

fn dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense");
    group.throughput(Throughput::Elements(N as u64));
    let mut w = values(N, 1.0);
    let mut s0 = values(N, 0.1);
    let mut s1: Vec<f32> = values(N, 1.0).iter().map(|x| x.abs()).collect();
    let mut inputs = values(N, 1e-3);
    inputs.extend(values(N, 1.0).iter().map(|x| x.abs() + 0.5));
    for rule in rules() {
        for isa in tiers() {
            group.bench_function(BenchmarkId::new(rule.name(), isa), |b| {
                b.iter(|| {
                    let state = State::for_rule(rule, &mut s0, &mut s1);
                    with_isa(isa, || {
                        apply_dense(rule, &mut w, state, &inputs[..N * rule.inputs()])
                    })
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn sparse(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparse");
    let rows = 4096;
    for dim in [8usize, 64] {
        let mut w = values(rows * dim, 1.0);
        let slots: Vec<u32> = (0..512u32).map(|i| i * 2654435761 % rows as u32).collect();
        let g = values(slots.len() * dim, 1e-3);
        group.throughput(Throughput::Elements((slots.len() * dim) as u64));
        for isa in tiers() {
            let id = BenchmarkId::new(format!("prox_l1/dim{dim}"), isa);
            group.bench_function(id, |b| {
                b.iter(|| {
                    let rule = Rule::ProxL1 { lr: 0.01, l1: 1e-4 };
                    with_isa(isa, || {
                        apply_sparse(rule, &mut w, State::none(), &slots, dim, &g)
                    })
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn misc(c: &mut Criterion) {
    let mut group = c.benchmark_group("misc");
    group.throughput(Throughput::Elements(N as u64));
    let bufs: Vec<Vec<f32>> = (0..4).map(|k| values(N, k as f32 + 1.0)).collect();
    let refs: Vec<&[f32]> = bufs.iter().map(|b| b.as_slice()).collect();
    let mut out = vec![0.0f32; N];
    let mut half = vec![0u16; N];
    let mut idx = Vec::with_capacity(N);
    let w: Vec<f32> = values(N, 1.0)
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 16 == 0 { *x } else { 0.0 })
        .collect();
    for isa in tiers() {
        group.bench_function(BenchmarkId::new("sum_k4", isa), |b| {
            b.iter(|| with_isa(isa, || sum_k(&mut out, &refs)).unwrap())
        });
        group.bench_function(BenchmarkId::new("f32_to_f16", isa), |b| {
            b.iter(|| with_isa(isa, || convert::f32_to_f16(&bufs[0], &mut half)).unwrap())
        });
        group.bench_function(BenchmarkId::new("f16_to_f32", isa), |b| {
            b.iter(|| with_isa(isa, || convert::f16_to_f32(&half, &mut out)).unwrap())
        });
        group.bench_function(BenchmarkId::new("f32_to_bf16", isa), |b| {
            b.iter(|| with_isa(isa, || convert::f32_to_bf16(&bufs[0], &mut half)).unwrap())
        });
        group.bench_function(BenchmarkId::new("bf16_to_f32", isa), |b| {
            b.iter(|| with_isa(isa, || convert::bf16_to_f32(&half, &mut out)).unwrap())
        });
        group.bench_function(BenchmarkId::new("significant", isa), |b| {
            b.iter(|| {
                with_isa(isa, || {
                    significant_indices(&bufs[0], &w, 0.5, 1e-3, &mut idx)
                })
                .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("kkt_active", isa), |b| {
            b.iter(|| {
                with_isa(isa, || kkt_active_indices(&w, &bufs[0], 1.0, 0.1, &mut idx)).unwrap()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the machine is shared; raise these locally for publication-grade numbers.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = dense, sparse, misc }
criterion_main!(benches);
