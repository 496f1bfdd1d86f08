//! `clap` value parsers for the numeric flags of every command and job, one per kind of value:
//! counts, non-negative and positive numbers, fractions, delays and seconds (any, or positive).
//! Each refuses NaN, infinities and values outside its range with a short reason; clap adds the
//! flag's name, so a bad flag is a usage error before any work starts.

use std::str::FromStr;
use std::time::Duration;

/// The largest bounded delay τ a job accepts. Clocks advance once per minibatch or block, so a
/// delay this long already waits for nothing in any run this tool makes; larger values only
/// overflow the servers' clock arithmetic (`2τ` for the block jobs).
pub const MAX_DELAY: u32 = 10_000;

/// A floating-point type a flag can hold.
pub trait Real: FromStr + Copy + Into<f64> {}
impl Real for f32 {}
impl Real for f64 {}

/// Parses a count that must be at least 1.
pub fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

/// Parses a bounded delay τ: a whole number from 0 to [`MAX_DELAY`].
pub fn delay(text: &str) -> Result<u32, String> {
    let tau: u64 = text
        .parse()
        .map_err(|_| "not a whole number of steps".to_string())?;
    if tau > u64::from(MAX_DELAY) {
        return Err(format!("must be at most {MAX_DELAY}"));
    }
    Ok(tau as u32)
}

/// Parses a finite number that is not negative.
pub fn non_negative_number<T: Real>(text: &str) -> Result<T, String> {
    let x = finite_number::<T>(text)?;
    if x.into() < 0.0 {
        return Err("must not be negative".to_string());
    }
    Ok(x)
}

/// Parses a finite number greater than zero.
pub fn positive_number<T: Real>(text: &str) -> Result<T, String> {
    let x = finite_number::<T>(text)?;
    if x.into() <= 0.0 {
        return Err("must be greater than 0".to_string());
    }
    Ok(x)
}

/// Parses a number from 0 to 1.
pub fn fraction(text: &str) -> Result<f32, String> {
    let x = finite_number::<f32>(text)?;
    if !(0.0..=1.0).contains(&x) {
        return Err("must be between 0 and 1".to_string());
    }
    Ok(x)
}

/// Parses a non-negative, finite number of seconds.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs = non_negative_number::<f64>(text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| "too many seconds".to_string())
}

/// Parses a finite number of seconds greater than zero (kept as `f64` seconds, so that a job's
/// arguments serialize as one number).
pub fn positive_seconds(text: &str) -> Result<f64, String> {
    let secs = positive_number::<f64>(text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| "too many seconds".to_string())?;
    Ok(secs)
}

fn finite_number<T: Real>(text: &str) -> Result<T, String> {
    let x: T = text.parse().map_err(|_| "not a number".to_string())?;
    let wide: f64 = x.into();
    if !wide.is_finite() {
        return Err(format!("must be a finite number, not {wide}"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_finite_and_in_range() {
        assert_eq!(non_negative_number::<f32>("0"), Ok(0.0));
        assert_eq!(non_negative_number::<f32>("2.5"), Ok(2.5));
        assert_eq!(positive_number::<f32>("1e-3"), Ok(1e-3));
        assert_eq!(positive_number::<f64>("1e-300"), Ok(1e-300));
        for bad in ["nan", "NaN", "inf", "-inf", "1e39"] {
            let err = non_negative_number::<f32>(bad).unwrap_err();
            assert!(err.contains("finite"), "{bad}: {err}");
            assert!(positive_number::<f32>(bad).is_err(), "{bad}");
        }
        assert!(positive_number::<f64>("1e309").is_err());
        assert_eq!(
            non_negative_number::<f32>("-1").unwrap_err(),
            "must not be negative"
        );
        assert_eq!(
            positive_number::<f32>("0").unwrap_err(),
            "must be greater than 0"
        );
        assert_eq!(positive_number::<f32>("x").unwrap_err(), "not a number");
    }

    #[test]
    fn fractions_delays_and_seconds_have_ranges() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        for bad in ["-0.1", "1.5", "nan"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
        assert_eq!(delay("0"), Ok(0));
        assert_eq!(delay(&MAX_DELAY.to_string()), Ok(MAX_DELAY));
        for bad in ["4294967295", "99999999999999999999", "-1", "1.5"] {
            assert!(delay(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["-1", "nan", "inf", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_count("0").unwrap_err(), "must be at least 1");
        assert_eq!(positive_seconds("0.25"), Ok(0.25));
        for bad in ["0", "-1", "nan", "inf", "1e300", "x"] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
    }
}
