//! Training data on disk: the LIBSVM/svmlight reader (streaming, split by byte ranges across
//! workers), the synthetic data generator behind `ferrops data gen`, and the summary behind
//! `ferrops data info`.

pub mod gen;
pub mod info;
pub mod libsvm;
pub mod patches;

pub use libsvm::{read_part, DataError, DimBound, Rows, DEFAULT_MAX_DIM};

/// `--max-dim`: the widest LIBSVM data a command reads when it is not told the dimension.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MaxDimArg {
    /// Refuse data with a feature index at or above this (every worker sizes its arrays by the
    /// largest index).
    #[arg(long = "max-dim", value_name = "D", default_value_t = DEFAULT_MAX_DIM,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
}

impl MaxDimArg {
    /// The bound for data of unknown dimension.
    pub fn bound(&self) -> DimBound {
        DimBound::Max(self.limit)
    }
}

/// How wide training data may be: `--dim D` (exactly D features) or else `--max-dim`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DataWidth {
    /// Number of features: every index must be below it (default: the largest index + 1,
    /// within --max-dim).
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u64).range(1..))]
    pub dim: Option<u64>,

    #[command(flatten)]
    pub max_dim: MaxDimArg,
}

impl DataWidth {
    /// Exactly `dim` features.
    pub fn exactly(dim: u64) -> DataWidth {
        DataWidth {
            dim: Some(dim),
            max_dim: MaxDimArg {
                limit: DEFAULT_MAX_DIM,
            },
        }
    }

    /// The bound these flags set.
    pub fn bound(&self) -> DimBound {
        self.dim.map_or(self.max_dim.bound(), DimBound::Dim)
    }
}

/// The longest token error messages quote whole; longer ones are cut (a bad token can be a
/// whole line of hundreds of megabytes).
const ECHO_CHARS: usize = 40;

/// `token` in backquotes for an error message: whole when short, else its start, an ellipsis
/// and its length in bytes.
pub fn echo(token: &str) -> String {
    if token.chars().count() <= ECHO_CHARS {
        return format!("`{token}`");
    }
    let start: String = token.chars().take(ECHO_CHARS).collect();
    format!("`{start}…` ({} bytes)", token.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn echo_cuts_long_tokens_on_character_boundaries() {
        assert_eq!(super::echo("abc"), "`abc`");
        let long = "é".repeat(50);
        assert_eq!(
            super::echo(&long),
            format!("`{}…` (100 bytes)", "é".repeat(40))
        );
    }
}
