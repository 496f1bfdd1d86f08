//! The `--name value` arguments of built-in worker jobs (passed after `--`, so clap does not
//! see them): splitting them into pairs and parsing a value with an error that names the flag.

use std::str::FromStr;

use anyhow::{Context, Result};

/// The `(flag, value)` pairs of `args`; a flag without a value is an error.
pub fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, value] => Ok((flag.as_str(), value.as_str())),
            [flag] => anyhow::bail!("{flag} needs a value"),
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// `text` parsed as the value of `flag`.
pub fn value<T>(flag: &str, text: &str) -> Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse()
        .with_context(|| format!("bad value `{text}` for {flag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_values_name_what_is_wrong() {
        let args: Vec<String> = ["--a", "1", "--b", "x"].map(String::from).to_vec();
        assert_eq!(pairs(&args).unwrap(), vec![("--a", "1"), ("--b", "x")]);
        let odd: Vec<String> = ["--a", "1", "--b"].map(String::from).to_vec();
        assert!(pairs(&odd)
            .unwrap_err()
            .to_string()
            .contains("--b needs a value"));
        assert_eq!(value::<u32>("--a", "7").unwrap(), 7);
        let err = value::<u32>("--b", "x").unwrap_err();
        assert!(format!("{err:#}").contains("bad value `x` for --b"));
    }
}
