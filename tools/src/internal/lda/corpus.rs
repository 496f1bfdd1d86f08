//! Corpora for LDA: the UCI bag-of-words format (`docword` + `vocab`, as the NIPS, KOS and
//! NYTimes collections are distributed), a converter from plain text into it, and synthetic
//! corpora drawn from known topics (for the tests that check recovered topics).
//!
//! `docword`: three header lines D (documents), W (vocabulary size) and NNZ (lines that
//! follow), then NNZ lines `docID wordID count`, both ids from 1. `vocab`: W lines, the word
//! of id i on line i. Every malformed line is an error naming the file and the line.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use super::sampler::draw_from;
use crate::internal::synth::Rng;

/// Topic counts travel as f32 sums on the servers, exact only below 2^24: a corpus whose
/// tokens could push one count past that is refused.
pub const MAX_TOKENS: u64 = 1 << 24;

/// A bag-of-words corpus: per document, its distinct words with their counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Corpus {
    /// Words of the vocabulary, by id (from 0).
    pub vocab: Vec<String>,
    /// Per document, `(word id, count)` pairs with ascending ids.
    pub docs: Vec<Vec<(u32, u32)>>,
}

impl Corpus {
    /// Tokens in the whole corpus.
    pub fn tokens(&self) -> u64 {
        self.docs
            .iter()
            .flat_map(|d| d.iter().map(|&(_, c)| u64::from(c)))
            .sum()
    }
}

/// A corpus file that could not be read, naming the file and, where it applies, the line.
#[derive(Debug)]
pub struct CorpusError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub why: String,
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.file.display(), self.why),
            None => write!(f, "{}: {}", self.file.display(), self.why),
        }
    }
}

impl std::error::Error for CorpusError {}

/// Reads a UCI bag-of-words corpus from its `docword` and `vocab` files.
pub fn read_uci(docword: &Path, vocab: &Path) -> Result<Corpus, CorpusError> {
    let words = read_vocab(vocab)?;
    let fail = |line: Option<usize>, why: String| CorpusError {
        file: docword.to_path_buf(),
        line,
        why,
    };
    let file = std::fs::File::open(docword).map_err(|e| fail(None, e.to_string()))?;
    let mut lines = io::BufReader::new(file).lines().enumerate();
    let mut header = [0u64; 3];
    for (i, name) in ["the number of documents", "the vocabulary size", "NNZ"]
        .iter()
        .enumerate()
    {
        let (n, line) = lines
            .next()
            .ok_or_else(|| fail(None, format!("ends before its header gives {name}")))?;
        let line = line.map_err(|e| fail(Some(n + 1), e.to_string()))?;
        header[i] = line.trim().parse().map_err(|_| {
            fail(
                Some(n + 1),
                format!("{name} must be a whole number: `{line}`"),
            )
        })?;
    }
    let [d, w, nnz] = header;
    if w != words.len() as u64 {
        return Err(fail(
            Some(2),
            format!(
                "the vocabulary size {w} does not match {} words in {}",
                words.len(),
                vocab.display()
            ),
        ));
    }
    let d = usize::try_from(d)
        .ok()
        .filter(|&d| d <= u32::MAX as usize)
        .ok_or_else(|| fail(Some(1), format!("{d} documents is too many")))?;
    let mut docs: Vec<Vec<(u32, u32)>> = vec![Vec::new(); d];
    let mut seen = 0u64;
    let mut tokens = 0u64;
    for (n, line) in lines {
        let number = n + 1;
        let line = line.map_err(|e| fail(Some(number), e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (doc, word, count) = parse_triple(&line).ok_or_else(|| {
            fail(
                Some(number),
                format!("expected `docID wordID count`: `{line}`"),
            )
        })?;
        if doc == 0 || doc as usize > d {
            return Err(fail(
                Some(number),
                format!("document id {doc} is not in 1..={d}"),
            ));
        }
        if word == 0 || u64::from(word) > w {
            return Err(fail(
                Some(number),
                format!("word id {word} is not in 1..={w}"),
            ));
        }
        if count == 0 {
            return Err(fail(Some(number), "a count of 0".to_string()));
        }
        docs[doc as usize - 1].push((word - 1, count));
        seen += 1;
        tokens += u64::from(count);
        if tokens >= MAX_TOKENS {
            return Err(fail(
                Some(number),
                format!(
                    "the corpus has more than {MAX_TOKENS} tokens, past which topic counts held \
                     as f32 on the servers are no longer exact"
                ),
            ));
        }
    }
    if seen != nnz {
        return Err(fail(
            None,
            format!("the header promises {nnz} entries but the file has {seen}"),
        ));
    }
    for (i, doc) in docs.iter_mut().enumerate() {
        doc.sort_unstable();
        if let Some(pair) = doc.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(fail(
                None,
                format!("document {} lists word {} twice", i + 1, pair[0].0 + 1),
            ));
        }
    }
    Ok(Corpus { vocab: words, docs })
}

fn parse_triple(line: &str) -> Option<(u32, u32, u32)> {
    let mut it = line.split_ascii_whitespace().map(str::parse::<u32>);
    let t = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    it.next().is_none().then_some(t)
}

fn read_vocab(vocab: &Path) -> Result<Vec<String>, CorpusError> {
    let fail = |line: Option<usize>, why: String| CorpusError {
        file: vocab.to_path_buf(),
        line,
        why,
    };
    let text = std::fs::read_to_string(vocab).map_err(|e| fail(None, e.to_string()))?;
    let words: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if let Some(i) = words.iter().position(String::is_empty) {
        return Err(fail(Some(i + 1), "an empty word".to_string()));
    }
    Ok(words)
}

/// Writes `corpus` as `docword` and `vocab` files.
pub fn write_uci(
    corpus: &Corpus,
    docword: &mut impl Write,
    vocab: &mut impl Write,
) -> io::Result<()> {
    let nnz: usize = corpus.docs.iter().map(Vec::len).sum();
    writeln!(
        docword,
        "{}\n{}\n{nnz}",
        corpus.docs.len(),
        corpus.vocab.len()
    )?;
    for (d, doc) in corpus.docs.iter().enumerate() {
        for &(w, c) in doc {
            writeln!(docword, "{} {} {c}", d + 1, w + 1)?;
        }
    }
    for word in &corpus.vocab {
        writeln!(vocab, "{word}")?;
    }
    docword.flush()?;
    vocab.flush()
}

/// Common English words that carry no topic.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "has", "have", "his", "how", "its", "may", "new", "now", "see", "two",
    "who", "did", "get", "use", "that", "with", "this", "from", "they", "will", "would", "there",
    "their", "what", "about", "which", "when", "make", "like", "than", "then", "them", "these",
    "some", "into", "only", "other", "such", "also", "been", "were", "more", "most", "each",
    "should", "could", "does", "used", "using", "must", "where", "there", "here", "very", "your",
    "yours", "shall", "being", "both", "same", "many", "much", "over", "under", "upon", "while",
    "those", "through", "between", "after", "before", "because", "without", "within",
];

/// How plain text becomes a corpus.
#[derive(Clone, Copy, Debug)]
pub struct TextOptions {
    /// Words shorter than this are dropped.
    pub min_word_len: usize,
    /// Words in fewer documents than this are dropped.
    pub min_docs: usize,
    /// Words in more than this fraction of documents are dropped.
    pub max_doc_fraction: f64,
    /// Documents with fewer tokens than this (after dropping words) are dropped.
    pub min_doc_tokens: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            min_word_len: 3,
            min_docs: 3,
            max_doc_fraction: 0.5,
            min_doc_tokens: 10,
        }
    }
}

/// A corpus from plain-text documents: lower-cased alphabetic words, stop words, too short,
/// too rare and too common words dropped; the vocabulary in alphabetical order.
pub fn from_text(docs: &[String], opts: &TextOptions) -> Corpus {
    let tokenized: Vec<Vec<String>> = docs
        .iter()
        .map(|text| {
            text.split(|c: char| !c.is_alphabetic())
                .filter(|w| w.chars().count() >= opts.min_word_len)
                .map(str::to_lowercase)
                .filter(|w| !STOPWORDS.contains(&w.as_str()))
                .collect()
        })
        .collect();
    let mut doc_freq: HashMap<&str, usize> = HashMap::new();
    for doc in &tokenized {
        let mut distinct: Vec<&str> = doc.iter().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for w in distinct {
            *doc_freq.entry(w).or_default() += 1;
        }
    }
    let most = (opts.max_doc_fraction * tokenized.len() as f64).floor() as usize;
    let mut vocab: Vec<&str> = doc_freq
        .iter()
        .filter(|&(_, &n)| n >= opts.min_docs && n <= most.max(opts.min_docs))
        .map(|(&w, _)| w)
        .collect();
    vocab.sort_unstable();
    let ids: HashMap<&str, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, &w)| (w, i as u32))
        .collect();
    let mut out = Corpus {
        vocab: vocab.iter().map(|w| w.to_string()).collect(),
        docs: Vec::new(),
    };
    for doc in &tokenized {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for w in doc {
            if let Some(&id) = ids.get(w.as_str()) {
                *counts.entry(id).or_default() += 1;
            }
        }
        if counts.values().sum::<u32>() as usize >= opts.min_doc_tokens {
            let mut bag: Vec<(u32, u32)> = counts.into_iter().collect();
            bag.sort_unstable();
            out.docs.push(bag);
        }
    }
    out
}

/// Splits text into documents: paragraphs (runs of non-blank lines) of at least `min_chars`
/// characters; shorter ones are joined to the next.
pub fn paragraphs(text: &str, min_chars: usize) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if current.len() >= min_chars {
                docs.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        docs.push(current);
    }
    docs
}

/// A corpus drawn from `topics` known word distributions (rows of `phi`, each over the same
/// vocabulary): each document draws its topic mixture from a symmetric Dirichlet(`alpha`) and
/// each of its `doc_len` tokens a topic from the mixture and a word from that topic.
pub fn synthetic(phi: &[Vec<f64>], docs: usize, doc_len: usize, alpha: f64, seed: u64) -> Corpus {
    let mut rng = Rng::new(seed);
    let v = phi[0].len();
    let mut out = Corpus {
        vocab: (0..v).map(|i| format!("w{i}")).collect(),
        docs: Vec::with_capacity(docs),
    };
    for _ in 0..docs {
        let theta = dirichlet(&mut rng, phi.len(), alpha);
        let mut counts = vec![0u32; v];
        for _ in 0..doc_len {
            let k = draw_from(&mut rng, &theta);
            counts[draw_from(&mut rng, &phi[k])] += 1;
        }
        let bag = counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(w, &c)| (w as u32, c))
            .collect();
        out.docs.push(bag);
    }
    out
}

/// The "bars" topics of Griffiths and Steyvers (2004): a `side`×`side` grid of words, one
/// topic per row and one per column, each uniform over its bar.
pub fn bars(side: usize) -> Vec<Vec<f64>> {
    let v = side * side;
    let mut topics = Vec::with_capacity(2 * side);
    for r in 0..side {
        let mut t = vec![0.0; v];
        (0..side).for_each(|c| t[r * side + c] = 1.0 / side as f64);
        topics.push(t);
    }
    for c in 0..side {
        let mut t = vec![0.0; v];
        (0..side).for_each(|r| t[r * side + c] = 1.0 / side as f64);
        topics.push(t);
    }
    topics
}

/// A draw from the symmetric Dirichlet(`alpha`) over `k` outcomes (normalised gammas).
fn dirichlet(rng: &mut Rng, k: usize, alpha: f64) -> Vec<f64> {
    let g: Vec<f64> = (0..k).map(|_| gamma(rng, alpha)).collect();
    let sum: f64 = g.iter().sum();
    g.iter().map(|x| x / sum.max(f64::MIN_POSITIVE)).collect()
}

/// A Gamma(`shape`, 1) draw (Marsaglia and Tsang; shapes below 1 by the boost U^(1/shape)).
fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        return gamma(rng, shape + 1.0) * rng.unit().max(1e-300).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.unit();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_files(dir: &Path, docword: &str, vocab: &str) -> (PathBuf, PathBuf) {
        let (d, v) = (dir.join("docword.txt"), dir.join("vocab.txt"));
        std::fs::write(&d, docword).unwrap();
        std::fs::write(&v, vocab).unwrap();
        (d, v)
    }

    #[test]
    fn uci_round_trips() {
        let corpus = synthetic(&bars(3), 20, 30, 0.5, 7);
        let (mut d, mut v) = (Vec::new(), Vec::new());
        write_uci(&corpus, &mut d, &mut v).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (dp, vp) = write_files(
            dir.path(),
            std::str::from_utf8(&d).unwrap(),
            std::str::from_utf8(&v).unwrap(),
        );
        assert_eq!(read_uci(&dp, &vp).unwrap(), corpus);
        assert_eq!(corpus.tokens(), 20 * 30);
    }

    #[test]
    fn malformed_files_are_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        // A docword file over the vocabulary a, b, c, and what its error must say.
        let cases = [
            ("2\n3\n1\n1 4 1\n", "line 4: word id 4 is not in 1..=3"),
            ("2\n3\n1\n3 1 1\n", "line 4: document id 3"),
            ("2\n3\n1\n1 1 0\n", "line 4: a count of 0"),
            (
                "2\n3\n2\n1 1 1\n",
                "docword.txt: the header promises 2 entries",
            ),
            (
                "2\n4\n1\n1 1 1\n",
                "line 2: the vocabulary size 4 does not match 3 words",
            ),
            (
                "2\nthree\n1\n",
                "line 2: the vocabulary size must be a whole number",
            ),
            ("2\n3\n1\n1 1\n", "line 4: expected `docID wordID count`"),
            (
                "2\n3\n2\n1 1 1\n1 1 2\n",
                "docword.txt: document 1 lists word 1 twice",
            ),
        ];
        for (docword, says) in cases {
            let (d, v) = write_files(dir.path(), docword, "a\nb\nc\n");
            let err = read_uci(&d, &v).unwrap_err().to_string();
            assert!(err.contains(says), "{docword:?}: {err}");
        }
        let (d, v) = write_files(dir.path(), "1\n2\n1\n1 1 1\n", "a\n\n");
        let err = read_uci(&d, &v).unwrap_err().to_string();
        assert!(
            err.contains("vocab.txt line 2") && err.contains("empty word"),
            "{err}"
        );
    }

    #[test]
    fn text_becomes_a_bag_of_words_without_stop_words_or_rare_words() {
        let docs: Vec<String> = (b'a'..b'g')
            .map(|c| {
                let c = c as char;
                format!(
                    "The kernel schedules threads; the kernel maps memory. Paging {c}. \
                     kernel scheduler memory threads paging rare{c} and the"
                )
            })
            .collect();
        let opts = TextOptions {
            min_docs: 2,
            max_doc_fraction: 1.0,
            min_doc_tokens: 1,
            ..TextOptions::default()
        };
        let corpus = from_text(&docs, &opts);
        assert_eq!(
            corpus.vocab,
            [
                "kernel",
                "maps",
                "memory",
                "paging",
                "scheduler",
                "schedules",
                "threads"
            ]
        );
        assert_eq!(corpus.docs.len(), 6);
        let kernel = corpus.docs[0].iter().find(|&&(w, _)| w == 0).unwrap();
        assert_eq!(kernel.1, 3, "kernel appears three times in each document");
    }

    #[test]
    fn paragraphs_split_on_blank_lines_and_join_short_ones() {
        let text =
            "a long first paragraph here\nstill first\n\nshort\n\nthird one is long enough\n";
        let docs = paragraphs(text, 10);
        assert_eq!(docs.len(), 2);
        assert!(docs[1].contains("short") && docs[1].contains("third"));
    }

    #[test]
    fn synthetic_documents_use_only_words_of_their_topics() {
        let topics = bars(4);
        let corpus = synthetic(&topics, 50, 40, 0.1, 3);
        assert_eq!(corpus.vocab.len(), 16);
        assert!(corpus
            .docs
            .iter()
            .all(|d| d.iter().map(|p| p.1).sum::<u32>() == 40));
    }
}
