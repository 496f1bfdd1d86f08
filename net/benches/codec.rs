//! Codec throughput: key lists (dense-ish sorted and hashed) through delta-bitpack, and 1M f32
//! through fp16, bf16 and LZ4. Criterion reports GB/s of *input* (raw keys or raw f32 bytes);
//! the compression ratio of each input is printed once before its group.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrops_net::codec::keys::{decode_keys_into, encode_keys, encoded_len};
use ferrops_net::codec::values::{decode_values, encode_values};
use ferrops_net::codec::{choose_key_codec, KeyCodec, ValueCodec};

const N: usize = 1 << 20;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key_sets() -> Vec<(&'static str, Vec<u64>)> {
    // Dense-ish: a sorted sample of about one key in four from a contiguous range (gaps 1..8).
    let mut k = 1u64 << 40;
    let dense: Vec<u64> = (0..N as u64)
        .map(|i| {
            k += 1 + splitmix(i) % 7;
            k
        })
        .collect();
    let mut hashed: Vec<u64> = (0..N as u64).map(splitmix).collect();
    hashed.sort_unstable();
    vec![("dense", dense), ("hashed", hashed)]
}

fn bench_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys");
    g.throughput(Throughput::Bytes((N * 8) as u64));
    for (name, keys) in key_sets() {
        let len = encoded_len(KeyCodec::DeltaBitpack, &keys).unwrap();
        println!(
            "keys/{name}: {} keys, delta-bitpack {len} bytes, ratio {:.2}x, chooser picks {:?}",
            keys.len(),
            (keys.len() * 8) as f64 / len as f64,
            choose_key_codec(&keys)
        );
        let mut buf = Vec::with_capacity(keys.len() * 9);
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                buf.clear();
                encode_keys(KeyCodec::DeltaBitpack, black_box(&keys), &mut buf).unwrap()
            })
        });
        let mut out = vec![0u64; keys.len()];
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| decode_keys_into(KeyCodec::DeltaBitpack, black_box(&buf), &mut out).unwrap())
        });
        assert_eq!(out, keys);
        g.bench_function(BenchmarkId::new("choose", name), |b| {
            b.iter(|| choose_key_codec(black_box(&keys)))
        });
    }
    g.finish();
}

fn value_sets() -> Vec<(&'static str, Vec<f32>)> {
    let gradient: Vec<f32> = (0..N as u64)
        .map(|i| ((splitmix(i) >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-2)
        .collect();
    // 90% zeros, as a sparse gradient pushed densely.
    let sparse: Vec<f32> = gradient
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if splitmix(i as u64 + N as u64).is_multiple_of(10) {
                v
            } else {
                0.0
            }
        })
        .collect();
    vec![("gradient", gradient), ("sparse90", sparse)]
}

fn bench_values(c: &mut Criterion) {
    let mut g = c.benchmark_group("values");
    g.throughput(Throughput::Bytes((N * 4) as u64));
    for (name, values) in value_sets() {
        for codec in [ValueCodec::Fp16, ValueCodec::Bf16, ValueCodec::Lz4] {
            if codec != ValueCodec::Lz4 && name != "gradient" {
                continue;
            }
            let mut buf = Vec::with_capacity(codec.max_encoded_len(N));
            encode_values(codec, &values, &mut buf).unwrap();
            println!(
                "values/{name}/{codec:?}: {} bytes, ratio {:.2}x",
                buf.len(),
                (N * 4) as f64 / buf.len() as f64
            );
            let id = format!("{codec:?}/{name}");
            g.bench_function(BenchmarkId::new("encode", &id), |b| {
                b.iter(|| {
                    buf.clear();
                    encode_values(codec, black_box(&values), &mut buf).unwrap()
                })
            });
            let mut out = vec![0f32; N];
            g.bench_function(BenchmarkId::new("decode", &id), |b| {
                b.iter(|| decode_values(codec, black_box(&buf), &mut out).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_keys, bench_values
}
criterion_main!(benches);
