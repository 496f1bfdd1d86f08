//! Latent Dirichlet allocation by collapsed Gibbs sampling: the corpus formats
//! ([`corpus`]: UCI bag-of-words, plain text, synthetic topics), the sampler a worker runs over
//! its documents ([`sampler`]: SparseLDA, with the plain O(K) sampler as its reference), and
//! the measures of a model ([`likelihood`]: log-likelihood, held-out perplexity). The
//! distributed job that puts them on the parameter server is `jobs::lda`.

pub mod corpus;
pub mod likelihood;
pub mod sampler;

/// The model's sizes and Dirichlet priors (symmetric): α on each document's topic mixture, β
/// on each topic's word distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub topics: usize,
    pub vocab: usize,
    pub alpha: f64,
    pub beta: f64,
}
