//! How good a topic model is: the collapsed joint log-likelihood log p(w, z) of the training
//! tokens (Griffiths and Steyvers 2004), split into the part that needs the global word–topic
//! counts (computed once, where they all are) and the part each worker computes over its own
//! documents, and the held-out perplexity by document completion (Wallach et al. 2009): half of
//! each held-out document's tokens estimate its topic mixture under the fixed model, the other
//! half are scored.

use super::sampler::draw_from;
use super::Hyper;
use crate::internal::synth::Rng;

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// One Dirichlet–multinomial (Pólya) factor of log p(w, z): for groups of `size` outcomes under
/// a symmetric Dirichlet(`prior`), Σ_groups [ln Γ(size·prior) − ln Γ(size·prior + n_group)] +
/// Σ_counts [ln Γ(prior + n) − ln Γ(prior)], from the groups' totals and every count.
fn polya<T: Copy + Into<f64>>(prior: f64, size: usize, totals: &[T], counts: &[T]) -> f64 {
    let (whole, lg_prior) = (size as f64 * prior, ln_gamma(prior));
    let group = |n: &T| ln_gamma(whole) - ln_gamma(whole + (*n).into().max(0.0));
    let cell = |n: f64| {
        if n > 0.0 {
            ln_gamma(prior + n) - lg_prior
        } else {
            0.0
        }
    };
    totals.iter().map(group).sum::<f64>() + counts.iter().map(|&n| cell(n.into())).sum::<f64>()
}

/// The words' part of log p(w, z), each topic a group over the V words: from every word's row
/// of counts (`rows`: V × K) and the topic totals.
pub fn words_part(h: &Hyper, rows: &[f32], totals: &[f32]) -> f64 {
    polya(h.beta, h.vocab, totals, rows)
}

/// The documents' part, each document a group over the K topics: from their topic counts
/// (`ndk`: docs × K) and lengths.
pub fn docs_part(h: &Hyper, ndk: &[u32], lens: &[u32]) -> f64 {
    polya(h.alpha, h.topics, lens, ndk)
}

/// φ: each topic's distribution over words, from the counts (`rows`: V × K, `totals`: K), as
/// a K × V matrix.
pub fn topic_word(h: &Hyper, rows: &[f32], totals: &[f32]) -> Vec<f64> {
    let (k, v) = (h.topics, h.vocab);
    let mut phi = vec![0.0; k * v];
    for w in 0..v {
        for t in 0..k {
            let n = f64::from(rows[w * k + t].max(0.0));
            phi[t * v + w] = (n + h.beta) / (f64::from(totals[t].max(0.0)) + v as f64 * h.beta);
        }
    }
    phi
}

/// Held-out perplexity of `docs` (bags of `(word, count)`) under φ (K × V), by document
/// completion with `sweeps` Gibbs sweeps over the observed half of each document.
pub fn perplexity(
    h: &Hyper,
    phi: &[f64],
    docs: &[Vec<(u32, u32)>],
    sweeps: usize,
    seed: u64,
) -> f64 {
    let (k, v) = (h.topics, h.vocab);
    let mut rng = Rng::new(seed);
    let (mut log_p, mut scored) = (0.0f64, 0u64);
    let mut weights = vec![0.0; k];
    for doc in docs {
        let tokens: Vec<u32> = doc
            .iter()
            .flat_map(|&(w, c)| std::iter::repeat_n(w, c as usize))
            .collect();
        // Even positions are observed, odd ones scored.
        let observed: Vec<u32> = tokens.iter().copied().step_by(2).collect();
        let tested: Vec<u32> = tokens.iter().copied().skip(1).step_by(2).collect();
        if tested.is_empty() {
            continue;
        }
        let mut ndk = vec![0u32; k];
        let mut z: Vec<usize> = observed
            .iter()
            .map(|_| (rng.next_u64() % k as u64) as usize)
            .collect();
        z.iter().for_each(|&t| ndk[t] += 1);
        for _ in 0..sweeps {
            for (i, &w) in observed.iter().enumerate() {
                ndk[z[i]] -= 1;
                for (t, wt) in weights.iter_mut().enumerate() {
                    *wt = (f64::from(ndk[t]) + h.alpha) * phi[t * v + w as usize];
                }
                z[i] = draw_from(&mut rng, &weights);
                ndk[z[i]] += 1;
            }
        }
        let norm = observed.len() as f64 + k as f64 * h.alpha;
        for &w in &tested {
            let p: f64 = (0..k)
                .map(|t| (f64::from(ndk[t]) + h.alpha) / norm * phi[t * v + w as usize])
                .sum();
            log_p += p.ln();
            scored += 1;
        }
    }
    (-log_p / scored.max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        let mut fact = 1.0f64;
        for n in 1..30u32 {
            // Γ(n + 1) = n!
            fact *= f64::from(n);
            let got = ln_gamma(f64::from(n) + 1.0);
            assert!(
                (got - fact.ln()).abs() < 1e-10 * fact.ln().max(1.0),
                "{n}: {got}"
            );
        }
        let sqrt_pi_ln = std::f64::consts::PI.sqrt().ln();
        assert!((ln_gamma(0.5) - sqrt_pi_ln).abs() < 1e-12);
        // Γ(0.1) = 9.513507698668732
        assert!((ln_gamma(0.1) - 9.513_507_698_668_732_f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn a_perfect_model_has_the_perplexity_of_its_topics() {
        // One topic, uniform over 8 words: every token has probability 1/8.
        let h = Hyper {
            topics: 1,
            vocab: 8,
            alpha: 0.1,
            beta: 0.01,
        };
        let phi = vec![1.0 / 8.0; 8];
        let docs = vec![(0..8).map(|w| (w, 3)).collect::<Vec<_>>()];
        let p = perplexity(&h, &phi, &docs, 5, 1);
        assert!((p - 8.0).abs() < 1e-9, "{p}");
    }
}
