//! Synthetic sparse binary classification data with power-law feature frequencies and a planted
//! sparse weight vector: what the demo and the benchmarks train on when no data file is given.

/// A small, fast, seedable generator (SplitMix64); statistical quality is ample for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A feature index in [0, n) with probability roughly proportional to 1/(i+1)^s (s > 1),
    /// by inverting the continuous power-law distribution.
    pub fn power_law(&mut self, n: u64, s: f64) -> u64 {
        let a = 1.0 - s;
        let top = ((n as f64) + 1.0).powf(a);
        let x = (1.0 + self.unit() * (top - 1.0)).powf(1.0 / a) - 1.0;
        (x as u64).min(n - 1)
    }
}

/// One example: sorted, unique binary feature keys and a label in {−1, +1}.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub features: Vec<u64>,
    pub label: f32,
}

/// A generated data set's shape.
#[derive(Clone, Copy, Debug)]
pub struct SynthSpec {
    pub features: u64,
    pub examples: usize,
    pub nnz_per_example: usize,
    /// Fraction of features with a nonzero planted weight.
    pub density: f64,
    pub seed: u64,
}

/// The planted weight of feature `j` (deterministic in the seed; mostly zero).
pub fn planted_weight(spec: &SynthSpec, j: u64) -> f32 {
    let mut r = Rng::new(spec.seed ^ j.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    if r.unit() < spec.density {
        (r.normal() * 2.0) as f32
    } else {
        0.0
    }
}

/// The examples of shard `shard` of `shards` (each worker generates its own).
pub fn shard(spec: &SynthSpec, shard: usize, shards: usize) -> Vec<Example> {
    let per = spec.examples / shards.max(1);
    let mut rng = Rng::new(
        spec.seed
            .wrapping_add(1 + shard as u64)
            .wrapping_mul(0xA24B_AED4_963E_E407),
    );
    (0..per)
        .map(|_| {
            let mut features: Vec<u64> = (0..spec.nnz_per_example)
                .map(|_| feature_key(rng.power_law(spec.features, 1.1)))
                .collect();
            features.sort_unstable();
            features.dedup();
            let margin: f32 = features.iter().map(|&j| planted_weight(spec, j)).sum();
            let noisy = margin + (rng.normal() * 0.5) as f32;
            let label = if noisy >= 0.0 { 1.0 } else { -1.0 };
            Example { features, label }
        })
        .collect()
}

/// The key of feature index `j`: multiplying by an odd constant is a bijection on u64, so distinct
/// features keep distinct keys while popular (small) indices spread over the whole key space and
/// hence over every server's range, as hashed features do in real data.
pub fn feature_key(j: u64) -> u64 {
    j.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_favours_small_indices_and_stays_in_range() {
        let mut r = Rng::new(7);
        let draws: Vec<u64> = (0..20_000).map(|_| r.power_law(1000, 1.1)).collect();
        assert!(draws.iter().all(|&d| d < 1000));
        let low = draws.iter().filter(|&&d| d < 10).count();
        let high = draws.iter().filter(|&&d| (500..510).contains(&d)).count();
        assert!(low > 20 * high.max(1), "low {low}, high {high}");
    }

    #[test]
    fn shards_are_deterministic_sorted_and_labelled() {
        let spec = SynthSpec {
            features: 5000,
            examples: 400,
            nnz_per_example: 10,
            density: 0.2,
            seed: 3,
        };
        let a = shard(&spec, 0, 2);
        assert_eq!(a, shard(&spec, 0, 2));
        assert_ne!(a, shard(&spec, 1, 2));
        assert_eq!(a.len(), 200);
        for ex in &a {
            assert!(ex.features.windows(2).all(|w| w[0] < w[1]));
            assert!(ex.label == 1.0 || ex.label == -1.0);
        }
        let positives = a.iter().filter(|e| e.label > 0.0).count();
        assert!(
            positives > 20 && positives < 180,
            "labels are not degenerate: {positives}"
        );
    }
}
