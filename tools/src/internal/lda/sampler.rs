//! Collapsed Gibbs sampling for LDA over one worker's documents.
//!
//! [`Shard`] holds a worker's tokens word-major (every token of a word together, so a word's
//! row of counts is read once per sweep), their topics, and its documents' topic counts.
//! [`Shard::sweep`] resamples every token with the SparseLDA decomposition (Yao, Mimno and
//! McCallum 2009) of the full conditional
//!
//! ```text
//! p(z = k) ∝ (α + n_dk)(β + n_wk) / (Vβ + n_k)
//!          = αβ/(Vβ + n_k)  +  n_dk β/(Vβ + n_k)  +  (α + n_dk) n_wk/(Vβ + n_k)
//!            └─ s: all k ─┘    └ r: k in the doc ┘    └─ q: k the word has ──┘
//! ```
//!
//! so a draw costs the topics its document and its word have, not K: s is kept up to date as
//! the totals change, r and q are summed over the non-zero topics only, and most draws land in
//! q. [`Shard::sweep_dense`] is the plain O(K) sampler, the reference the tests compare with.
//! Word–topic counts come from the servers: the caller passes them in [`Counts`] (the rows of
//! the shard's words and the topic totals) and gets back, in the same, the counts after the
//! sweep and what changed (to push).

use crate::internal::synth::Rng;

use super::Hyper;

/// Word–topic counts: a row of K per word of [`Shard::words`], and the K topic totals.
#[derive(Clone, Debug, PartialEq)]
pub struct WordTopic {
    pub rows: Vec<f32>,
    pub totals: Vec<f32>,
}

/// The counts a shard samples against (`now`: they include the shard's own tokens and follow
/// them as they move) and what the last sweep changed in them (`moved`: what a worker pushes).
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    pub now: WordTopic,
    pub moved: WordTopic,
}

impl Counts {
    /// A token of word row `i` moved from topic `old` to `new`.
    fn token_moved(&mut self, k: usize, i: usize, old: usize, new: usize) {
        let m = &mut self.moved;
        for (cells, step) in [([i * k + old, old], -1.0), ([i * k + new, new], 1.0)] {
            m.rows[cells[0]] += step;
            m.totals[cells[1]] += step;
        }
    }
}

/// One worker's tokens, their topics, and its documents' topic counts.
#[derive(Clone, Debug)]
pub struct Shard {
    topics: usize,
    /// The distinct words of the shard, ascending (global ids).
    words: Vec<u32>,
    /// Tokens of `words[i]` are `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
    /// The document (shard index) of each token.
    token_doc: Vec<u32>,
    /// The topic of each token.
    z: Vec<u16>,
    /// Topic counts per document, docs × K.
    ndk: Vec<u32>,
    /// Topics with a non-zero count, per document.
    doc_topics: Vec<Vec<u16>>,
    /// Tokens per document.
    lens: Vec<u32>,
}

impl Shard {
    /// The shard of `docs` with every token's topic drawn uniformly; at most 65,536 topics.
    pub fn new(docs: &[&[(u32, u32)]], topics: usize, rng: &mut Rng) -> Shard {
        assert!((1..=1 << 16).contains(&topics), "1 to 65536 topics");
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (d, doc) in docs.iter().enumerate() {
            for &(w, c) in doc.iter() {
                pairs.extend(std::iter::repeat_n((w, d as u32), c as usize));
            }
        }
        pairs.sort_unstable();
        let (mut words, mut starts) = (Vec::new(), Vec::new());
        for (i, &(w, _)) in pairs.iter().enumerate() {
            if words.last() != Some(&w) {
                words.push(w);
                starts.push(i);
            }
        }
        starts.push(pairs.len());
        let token_doc: Vec<u32> = pairs.iter().map(|&(_, d)| d).collect();
        let z: Vec<u16> = (0..pairs.len())
            .map(|_| (rng.next_u64() % topics as u64) as u16)
            .collect();
        let mut ndk = vec![0u32; docs.len() * topics];
        let mut lens = vec![0u32; docs.len()];
        for (&d, &t) in token_doc.iter().zip(&z) {
            ndk[d as usize * topics + t as usize] += 1;
            lens[d as usize] += 1;
        }
        let doc_topics = ndk
            .chunks(topics)
            .map(|row| {
                (0..topics)
                    .filter(|&t| row[t] > 0)
                    .map(|t| t as u16)
                    .collect()
            })
            .collect();
        Shard {
            topics,
            words,
            starts,
            token_doc,
            z,
            ndk,
            doc_topics,
            lens,
        }
    }

    /// The shard's distinct words, ascending.
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Tokens in the shard.
    pub fn tokens(&self) -> usize {
        self.z.len()
    }

    /// Topic counts per document (docs × K) and document lengths.
    pub fn doc_counts(&self) -> (&[u32], &[u32]) {
        (&self.ndk, &self.lens)
    }

    /// The shard's own counts (no changes yet).
    pub fn counts(&self) -> Counts {
        let (rows, totals) = self.word_counts();
        let moved = WordTopic {
            rows: vec![0.0; rows.len()],
            totals: vec![0.0; totals.len()],
        };
        let now = WordTopic { rows, totals };
        Counts { now, moved }
    }

    /// The shard's own counts: per word of [`Shard::words`] a row of K, and the K totals.
    pub fn word_counts(&self) -> (Vec<f32>, Vec<f32>) {
        let k = self.topics;
        let mut rows = vec![0f32; self.words.len() * k];
        let mut totals = vec![0f32; k];
        for i in 0..self.words.len() {
            for &t in &self.z[self.starts[i]..self.starts[i + 1]] {
                rows[i * k + t as usize] += 1.0;
                totals[t as usize] += 1.0;
            }
        }
        (rows, totals)
    }

    /// Resamples every token by SparseLDA against `c`, which follows the tokens and records
    /// what moved.
    pub fn sweep(&mut self, h: &Hyper, c: &mut Counts, rng: &mut Rng) {
        let k = self.start_sweep(c);
        let (alpha, beta, vb) = (h.alpha, h.beta, h.vocab as f64 * h.beta);
        // 1/(Vβ + n_k) per topic, and s = Σ αβ/(Vβ + n_k), kept up to date as totals move.
        let mut inv: Vec<f64> = c
            .now
            .totals
            .iter()
            .map(|&n| 1.0 / (vb + f64::from(n.max(0.0))))
            .collect();
        let mut q_terms: Vec<(u16, f64)> = Vec::with_capacity(k);
        // The topics the current word has had in this sweep (a count that falls to zero stays
        // listed, with no mass, so that none is listed twice).
        let mut word_topics: Vec<u16> = Vec::with_capacity(k);
        let mut listed = vec![false; k];
        for i in 0..self.words.len() {
            word_topics.iter().for_each(|&t| listed[t as usize] = false);
            word_topics.clear();
            for t in (0..k).filter(|&t| c.now.rows[i * k + t] > 0.0) {
                word_topics.push(t as u16);
                listed[t] = true;
            }
            // Summed afresh per word so that rounding cannot drift across the sweep.
            let mut s: f64 = alpha * beta * inv.iter().sum::<f64>();
            for tok in self.starts[i]..self.starts[i + 1] {
                let d = self.token_doc[tok] as usize;
                let old = self.z[tok] as usize;
                let ndk = &mut self.ndk[d * k..(d + 1) * k];
                // Take the token out.
                ndk[old] -= 1;
                if ndk[old] == 0 {
                    let topics = &mut self.doc_topics[d];
                    if let Some(p) = topics.iter().position(|&t| t as usize == old) {
                        topics.swap_remove(p);
                    }
                }
                c.now.rows[i * k + old] -= 1.0;
                c.now.totals[old] -= 1.0;
                let fresh = 1.0 / (vb + f64::from(c.now.totals[old].max(0.0)));
                s += alpha * beta * (fresh - inv[old]);
                inv[old] = fresh;
                // The r and q buckets over the non-zero topics of the document and the word.
                let r: f64 = self.doc_topics[d]
                    .iter()
                    .map(|&t| f64::from(ndk[t as usize]) * beta * inv[t as usize])
                    .sum();
                q_terms.clear();
                let mut q = 0.0;
                for &t in &word_topics {
                    let n = f64::from(c.now.rows[i * k + t as usize].max(0.0));
                    if n > 0.0 {
                        let mass = (alpha + f64::from(ndk[t as usize])) * n * inv[t as usize];
                        q += mass;
                        q_terms.push((t, mass));
                    }
                }
                let mut u = rng.unit() * (s + r + q);
                let new = if u < q {
                    pick(&q_terms, u)
                } else {
                    u -= q;
                    if u < r {
                        let doc = self.doc_topics[d]
                            .iter()
                            .map(|&t| (t, f64::from(ndk[t as usize]) * beta * inv[t as usize]));
                        pick_iter(doc, u)
                    } else {
                        u -= r;
                        let all = (0..k).map(|t| (t as u16, alpha * beta * inv[t]));
                        pick_iter(all, u)
                    }
                } as usize;
                // Put it back under its new topic.
                if ndk[new] == 0 {
                    self.doc_topics[d].push(new as u16);
                }
                ndk[new] += 1;
                if !listed[new] {
                    word_topics.push(new as u16);
                    listed[new] = true;
                }
                c.now.rows[i * k + new] += 1.0;
                c.now.totals[new] += 1.0;
                let fresh = 1.0 / (vb + f64::from(c.now.totals[new].max(0.0)));
                s += alpha * beta * (fresh - inv[new]);
                inv[new] = fresh;
                if new != old {
                    c.token_moved(k, i, old, new);
                }
                self.z[tok] = new as u16;
            }
        }
    }

    /// [`Shard::sweep`] with the plain sampler: all K probabilities per token.
    pub fn sweep_dense(&mut self, h: &Hyper, c: &mut Counts, rng: &mut Rng) {
        let k = self.start_sweep(c);
        let vb = h.vocab as f64 * h.beta;
        let mut p = vec![0.0; k];
        for i in 0..self.words.len() {
            for tok in self.starts[i]..self.starts[i + 1] {
                let d = self.token_doc[tok] as usize;
                let old = self.z[tok] as usize;
                self.ndk[d * k + old] -= 1;
                c.now.rows[i * k + old] -= 1.0;
                c.now.totals[old] -= 1.0;
                for (t, pt) in p.iter_mut().enumerate() {
                    *pt = (h.alpha + f64::from(self.ndk[d * k + t]))
                        * (h.beta + f64::from(c.now.rows[i * k + t].max(0.0)))
                        / (vb + f64::from(c.now.totals[t].max(0.0)));
                }
                let new = draw_from(rng, &p);
                self.ndk[d * k + new] += 1;
                c.now.rows[i * k + new] += 1.0;
                c.now.totals[new] += 1.0;
                c.token_moved(k, i, old, new);
                self.z[tok] = new as u16;
            }
        }
        for (d, topics) in self.doc_topics.iter_mut().enumerate() {
            let row = &self.ndk[d * k..(d + 1) * k];
            *topics = (0..k).filter(|&t| row[t] > 0).map(|t| t as u16).collect();
        }
    }

    /// Checks `c` fits the shard and clears its changes; returns K.
    fn start_sweep(&self, c: &mut Counts) -> usize {
        let (k, n) = (self.topics, self.words.len() * self.topics);
        for t in [&c.now, &c.moved] {
            assert!(t.rows.len() == n, "a row of K counts per word of the shard");
            assert!(t.totals.len() == k, "K topic totals");
        }
        c.moved.rows.fill(0.0);
        c.moved.totals.fill(0.0);
        k
    }
}

/// The topic whose cumulative mass passes `u`.
fn pick(terms: &[(u16, f64)], u: f64) -> u16 {
    pick_iter(terms.iter().copied(), u)
}

fn pick_iter(terms: impl Iterator<Item = (u16, f64)>, mut u: f64) -> u16 {
    let mut last = 0;
    for (t, mass) in terms {
        if u < mass {
            return t;
        }
        u -= mass;
        last = t;
    }
    // Rounding left u at the very end: the last topic with mass.
    last
}

/// An index drawn with probability proportional to `weights`.
pub fn draw_from(rng: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.unit() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::super::corpus::{bars, synthetic};
    use super::super::likelihood::{docs_part, words_part};
    use super::*;

    fn hyper(topics: usize, vocab: usize) -> Hyper {
        Hyper {
            topics,
            vocab,
            alpha: 0.1,
            beta: 0.01,
        }
    }

    /// Log-likelihood per token after `sweeps` sweeps of one shard holding the whole corpus.
    fn run(dense: bool, sweeps: usize, seed: u64) -> f64 {
        let corpus = synthetic(&bars(4), 150, 40, 0.2, 11);
        let docs: Vec<&[(u32, u32)]> = corpus.docs.iter().map(Vec::as_slice).collect();
        let h = hyper(8, 16);
        let mut rng = Rng::new(seed);
        let mut shard = Shard::new(&docs, h.topics, &mut rng);
        let mut c = shard.counts();
        for _ in 0..sweeps {
            if dense {
                shard.sweep_dense(&h, &mut c, &mut rng);
            } else {
                shard.sweep(&h, &mut c, &mut rng);
            }
        }
        assert_eq!(
            (c.now.rows.clone(), c.now.totals.clone()),
            shard.word_counts(),
            "the counts passed in follow the tokens"
        );
        let WordTopic { rows, totals } = c.now;
        let (ndk, lens) = shard.doc_counts();
        let mut full = vec![0f32; 16 * 8];
        for (i, &w) in shard.words().iter().enumerate() {
            full[w as usize * 8..(w as usize + 1) * 8].copy_from_slice(&rows[i * 8..(i + 1) * 8]);
        }
        (words_part(&h, &full, &totals) + docs_part(&h, ndk, lens)) / shard.tokens() as f64
    }

    #[test]
    fn sparse_and_dense_samplers_converge_to_the_same_likelihood() {
        let start = run(false, 0, 1);
        let sparse: Vec<f64> = (1..4).map(|s| run(false, 60, s)).collect();
        let dense: Vec<f64> = (1..4).map(|s| run(true, 60, s)).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (s, d) = (mean(&sparse), mean(&dense));
        assert!(
            s > start + 0.3,
            "sampling improves the likelihood: {start} → {s}"
        );
        assert!(
            (s - d).abs() < 0.02 * d.abs(),
            "sparse {sparse:?} vs dense {dense:?} per token"
        );
    }

    #[test]
    fn deltas_are_exactly_what_moved() {
        let corpus = synthetic(&bars(3), 30, 20, 0.3, 2);
        let docs: Vec<&[(u32, u32)]> = corpus.docs.iter().map(Vec::as_slice).collect();
        let h = hyper(6, 9);
        let mut rng = Rng::new(4);
        let mut shard = Shard::new(&docs, h.topics, &mut rng);
        let mut c = shard.counts();
        let before = c.clone();
        shard.sweep(&h, &mut c, &mut rng);
        for i in 0..c.now.rows.len() {
            assert_eq!(before.now.rows[i] + c.moved.rows[i], c.now.rows[i]);
        }
        for t in 0..c.now.totals.len() {
            assert_eq!(before.now.totals[t] + c.moved.totals[t], c.now.totals[t]);
        }
        assert!(
            c.moved.rows.iter().any(|&d| d != 0.0),
            "a sweep moves tokens"
        );
        let moved: f32 = c.moved.totals.iter().sum();
        assert_eq!(moved, 0.0, "tokens move, none appear or vanish");
    }
}
