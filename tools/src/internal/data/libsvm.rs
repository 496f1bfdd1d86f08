//! A streaming reader of LIBSVM/svmlight text files: `label idx:val idx:val ... [# comment]`,
//! labels ±1 or 0/1 (0 is read as −1), an optional `qid:N` token (ignored), strictly increasing
//! indices. A file can be split by byte ranges: part `r` of `parts` reads exactly the lines that
//! start in `[r·size/parts, (r+1)·size/parts)`, so the parts together read every line once.
//!
//! Bad data is never a panic: it is a [`DataError::Parse`] that prints as `file:line: message`,
//! echoing at most the start of a bad token. Every read is bounded by a [`DimBound`], so one
//! huge feature index cannot make a caller size its arrays by it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::echo;

/// What can go wrong reading a data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line is not valid LIBSVM; `line` is 1-based in the whole file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A part number outside `0..parts`.
    #[error("part {part} of {parts} does not exist")]
    BadPart { part: usize, parts: usize },
}

/// The largest dimension readers accept when the caller does not know the data's dimension:
/// 2^26 features (64 Mi; a worker's arrays over them take a few hundred MB).
pub const DEFAULT_MAX_DIM: u64 = 1 << 26;

/// How wide the data may be: every feature index must be below [`DimBound::limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimBound {
    /// The dimension the caller was given (`--dim`).
    Dim(u64),
    /// The dimension is not known: at most this many features (`--max-dim`).
    Max(u64),
}

impl DimBound {
    /// One past the largest index accepted.
    pub fn limit(self) -> u64 {
        match self {
            DimBound::Dim(n) | DimBound::Max(n) => n,
        }
    }

    fn refuse(self, index: u32) -> String {
        match self {
            DimBound::Dim(n) => format!("feature index {index} is not below --dim {n}"),
            DimBound::Max(n) => format!(
                "feature index {index} is not below the largest dimension accepted, \
                 --max-dim {n} (raise it if the data really is that wide)"
            ),
        }
    }
}

/// Rows in compressed sparse row form: row `i` has indices `idx[ptr[i]..ptr[i+1]]` (strictly
/// increasing) with values `val[..]` and label `labels[i]` in {−1, +1}.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub labels: Vec<f32>,
    pub ptr: Vec<usize>,
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl Rows {
    /// No rows.
    pub fn new() -> Rows {
        Rows {
            ptr: vec![0],
            ..Rows::default()
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Indices and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.ptr[i]..self.ptr[i + 1];
        (&self.idx[r.clone()], &self.val[r])
    }

    /// One past the largest index (0 when there are no nonzeros).
    pub fn dim(&self) -> usize {
        self.idx.iter().max().map_or(0, |&m| m as usize + 1)
    }
}

/// Parses one line: its label (`None` for a blank or comment-only line), its nonzeros appended
/// to caller-owned vectors; an index at or beyond `bound` is an error (public for the `libsvm`
/// fuzz target, `crate::internal::fuzzing`).
pub fn parse_line(
    text: &[u8],
    bound: DimBound,
    idx: &mut Vec<u32>,
    val: &mut Vec<f32>,
) -> Result<Option<f32>, String> {
    let text = match text.iter().position(|&b| b == b'#') {
        Some(hash) => &text[..hash],
        None => text,
    };
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let mut tokens = text.split_ascii_whitespace();
    let Some(label) = tokens.next() else {
        return Ok(None); // blank or comment-only line
    };
    let bad_label = || format!("bad label {} (expected +1, -1, 1 or 0)", echo(label));
    let value: f32 = label.parse().map_err(|_| bad_label())?;
    let label = if value == 1.0 {
        1.0
    } else if value == -1.0 || value == 0.0 {
        -1.0
    } else {
        return Err(bad_label());
    };
    let mut last: Option<u32> = None;
    for token in tokens {
        if token.starts_with("qid:") {
            continue;
        }
        let Some((i, v)) = token.split_once(':') else {
            return Err(format!("bad feature {} (expected idx:val)", echo(token)));
        };
        let i: u32 = i
            .parse()
            .map_err(|_| format!("bad feature index in {}", echo(token)))?;
        if u64::from(i) >= bound.limit() {
            return Err(bound.refuse(i));
        }
        let v: f32 = v
            .parse()
            .ok()
            .filter(|v: &f32| v.is_finite())
            .ok_or_else(|| format!("bad feature value in {}", echo(token)))?;
        if let Some(prev) = last {
            if i <= prev {
                return Err(format!(
                    "feature index {i} after {prev}: indices must be strictly increasing"
                ));
            }
        }
        last = Some(i);
        idx.push(i);
        val.push(v);
    }
    Ok(Some(label))
}

/// The byte range `[start, end)` of part `part` of `parts` of a file of `size` bytes.
pub fn part_range(size: u64, part: usize, parts: usize) -> (u64, u64) {
    let at = |k: usize| (u128::from(size) * k as u128 / parts as u128) as u64;
    (at(part), at(part + 1))
}

/// Streams the lines starting in part `part` of `parts` of `path`, calling `row` with each
/// row's label, indices and values; an index at or beyond `bound` is an error.
pub fn for_each_row(
    path: &Path,
    part: usize,
    parts: usize,
    bound: DimBound,
    mut row: impl FnMut(f32, &[u32], &[f32]),
) -> Result<(), DataError> {
    if parts == 0 || part >= parts {
        return Err(DataError::BadPart { part, parts });
    }
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let (start, end) = part_range(size, part, parts);
    let mut pos = 0u64;
    if start > 0 {
        // The first line of this part is the first one starting at or after `start`: skip to
        // just past the newline at or after `start - 1`.
        file.seek(SeekFrom::Start(start - 1)).map_err(io_err)?;
        pos = start - 1;
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    if start > 0 {
        pos += reader.read_until(b'\n', &mut line).map_err(io_err)? as u64;
    }
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    while pos < end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        let line_start = pos;
        pos += n as u64;
        idx.clear();
        val.clear();
        match parse_line(&line, bound, &mut idx, &mut val) {
            Ok(Some(label)) => row(label, &idx, &val),
            Ok(None) => {}
            Err(message) => {
                return Err(DataError::Parse {
                    path: path.to_path_buf(),
                    line: line_number(path, line_start).map_err(io_err)?,
                    message,
                })
            }
        }
    }
    Ok(())
}

/// The 1-based number of the line starting at byte `offset` (counted only when reporting an
/// error, so a part does not read the file before it otherwise).
fn line_number(path: &Path, offset: u64) -> io::Result<u64> {
    let mut reader = BufReader::new(File::open(path)?).take(offset);
    let mut buf = [0u8; 1 << 16];
    let mut lines = 1;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Reads part `part` of `parts` of `path` into memory; an index at or beyond `bound` is an
/// error.
pub fn read_part(
    path: &Path,
    part: usize,
    parts: usize,
    bound: DimBound,
) -> Result<Rows, DataError> {
    let mut rows = Rows::new();
    for_each_row(path, part, parts, bound, |label, idx, val| {
        rows.labels.push(label);
        rows.idx.extend_from_slice(idx);
        rows.val.extend_from_slice(val);
        rows.ptr.push(rows.idx.len());
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(f32, Vec<u32>, Vec<f32>)>;

    fn parse(text: &str) -> Result<Parsed, String> {
        let (mut i, mut v) = (Vec::new(), Vec::new());
        let bound = DimBound::Max(DEFAULT_MAX_DIM);
        Ok(parse_line(text.as_bytes(), bound, &mut i, &mut v)?.map(|l| (l, i, v)))
    }

    #[test]
    fn parses_labels_qid_comments_and_blank_lines() {
        assert_eq!(
            parse("+1 qid:3 1:0.5 7:2 # note 9:9\n").unwrap(),
            Some((1.0, vec![1, 7], vec![0.5, 2.0]))
        );
        assert_eq!(parse("0 3:1").unwrap(), Some((-1.0, vec![3], vec![1.0])));
        assert_eq!(parse("-1").unwrap(), Some((-1.0, vec![], vec![])));
        assert_eq!(parse("   # only a comment").unwrap(), None);
        assert_eq!(parse("\n").unwrap(), None);
    }

    #[test]
    fn rejects_bad_tokens() {
        for bad in [
            "2 1:1",
            "x 1:1",
            "1 1:1 5",
            "1 a:1",
            "1 1:b",
            "1 3:1 3:2",
            "1 4:1 2:1",
            "1 1:nan",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn indices_are_bounded_and_long_tokens_echoed_in_part() {
        let (mut i, mut v) = (Vec::new(), Vec::new());
        let mut at = |bound, text: &str| parse_line(text.as_bytes(), bound, &mut i, &mut v);
        assert!(at(DimBound::Dim(8), "1 7:1").is_ok());
        let err = at(DimBound::Dim(8), "1 8:1").unwrap_err();
        assert_eq!(err, "feature index 8 is not below --dim 8");
        let err = at(DimBound::Max(DEFAULT_MAX_DIM), "1 4294967295:1").unwrap_err();
        assert!(
            err.contains("4294967295") && err.contains("--max-dim"),
            "{err}"
        );
        let long = format!("{} 1:1", "9".repeat(100_000));
        let err = at(DimBound::Dim(8), &long).unwrap_err();
        assert!(err.len() < 200 && err.contains("100000 bytes"), "{err}");
    }

    #[test]
    fn part_ranges_tile_the_file() {
        for size in [0u64, 1, 7, 1000] {
            for parts in 1..6 {
                let mut next = 0;
                for p in 0..parts {
                    let (a, b) = part_range(size, p, parts);
                    assert_eq!(a, next);
                    assert!(b >= a);
                    next = b;
                }
                assert_eq!(next, size);
            }
        }
    }
}
