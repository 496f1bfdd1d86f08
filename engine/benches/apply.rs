//! Dense apply throughput over 16M f32 parameters held in a pinned, hugepage-backed segment
//! versus a plain `Vec<f32>`, measured in the same run with the same kernel
//! (`ferrops_kernels::apply_dense`) and the same gradient buffer.
//!
//!     cargo bench -p ferrops-engine --bench apply
//!
//! Throughput is reported in bytes touched per element: sum and sgd read w and g and write w
//! (12 bytes). The segment's backing (hugetlb pages when the machine has them reserved, THP
//! advice otherwise; locked when the memlock limit allows) is printed first.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrops_engine::memory::{HugePolicy, LockPolicy, Segment, SegmentOptions};
use ferrops_kernels::{apply_dense, Rule, State};

const PARAMS: usize = 16 << 20;

fn pinned_segment() -> Segment {
    let opts = SegmentOptions {
        lock: LockPolicy::BestEffort,
        hugepages: HugePolicy::Auto,
        numa_node: None,
    };
    let mut seg = Segment::reserve(PARAMS * 4, &opts).expect("reserve segment");
    seg.grow_to(PARAMS * 4).expect("commit segment");
    seg
}

fn gradient() -> Vec<f32> {
    (0..PARAMS)
        .map(|i| ((i % 1000) as f32 - 500.0) * 1e-6)
        .collect()
}

fn bench_apply(c: &mut Criterion) {
    let mut segment = pinned_segment();
    eprintln!("segment backing: {:?}", segment.backing());
    let mut plain = vec![0.0f32; PARAMS];
    let g = gradient();

    let mut group = c.benchmark_group("apply_dense_16M");
    group.throughput(Throughput::Bytes((PARAMS * 12) as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    for (name, rule) in [("sum", Rule::Sum), ("sgd", Rule::Sgd { lr: 0.01 })] {
        group.bench_function(format!("{name}/pinned_segment"), |b| {
            b.iter(|| {
                apply_dense(rule, segment.as_f32_mut(), State::none(), black_box(&g))
                    .expect("apply")
            })
        });
        group.bench_function(format!("{name}/vec"), |b| {
            b.iter(|| apply_dense(rule, &mut plain, State::none(), black_box(&g)).expect("apply"))
        });
    }
    group.finish();
    black_box((segment.as_f32()[PARAMS - 1], plain[PARAMS - 1]));
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
