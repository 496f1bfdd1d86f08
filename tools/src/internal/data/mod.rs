//! Training data on disk: the LIBSVM/svmlight reader (streaming, split by byte ranges across
//! workers), the synthetic data generator behind `ferrops data gen`, and the summary behind
//! `ferrops data info`.

pub mod gen;
pub mod info;
pub mod libsvm;
pub mod patches;

pub use libsvm::{read_part, DataError, DimBound, Rows, DEFAULT_MAX_DIM};

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
