//! Injected stragglers: a worker that computes K times slower in a fraction P of its block
//! steps, as a busy or slow machine does, to measure what bounded delay buys on a machine with
//! too few cores to have real stragglers (`--straggler P,K`, docs/experiments.md §2).

use std::time::Duration;

use crate::synth::Rng;

/// How and when this worker straggles.
#[derive(Clone, Debug)]
pub struct Straggler {
    p: f64,
    k: f64,
    rng: Rng,
    /// Steps seen, and how many of them were slowed, and by how much in all.
    steps: u64,
    slowed: u64,
    added: Duration,
}

/// Reads `P,K`: a probability 0 < P ≤ 1 and a slowdown K ≥ 1 (clap value parser; the text is
/// kept as given, so the launcher hands it on unchanged).
pub fn parse(text: &str) -> Result<String, String> {
    split(text).map(|_| text.trim().to_string())
}

fn split(text: &str) -> Result<(f64, f64), String> {
    let (p, k) = text
        .split_once(',')
        .ok_or_else(|| "expected P,K (e.g. 0.25,4)".to_string())?;
    let number = |s: &str, what: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{what} `{}` is not a finite number", s.trim()))
    };
    let (p, k) = (number(p, "P")?, number(k, "K")?);
    if !(p > 0.0 && p <= 1.0) {
        return Err(format!("P must be in (0, 1], not {p}"));
    }
    if !(1.0..=1000.0).contains(&k) {
        return Err(format!("K must be from 1 to 1000, not {k}"));
    }
    Ok((p, k))
}

impl Straggler {
    /// The straggler `spec` ([`parse`]d) describes, drawing from `seed` (each worker its own).
    pub fn new(spec: &str, seed: u64) -> Straggler {
        let (p, k) = split(spec).expect("checked by the flag's parser");
        Straggler {
            p,
            k,
            rng: Rng::new(seed),
            steps: 0,
            slowed: 0,
            added: Duration::ZERO,
        }
    }

    /// After a block step's computation, which took `took`: in a fraction P of the calls, how
    /// much longer the step takes, (K − 1) × `took`; otherwise zero.
    pub fn extra(&mut self, took: Duration) -> Duration {
        self.steps += 1;
        if self.rng.unit() >= self.p {
            return Duration::ZERO;
        }
        let extra = took.mul_f64(self.k - 1.0);
        self.slowed += 1;
        self.added += extra;
        extra
    }

    /// What this worker's straggling amounted to, for its last words.
    pub fn summary(&self, rank: usize) -> String {
        format!(
            "worker {rank}: straggled in {} of {} block steps ({:.2} s added)",
            self.slowed,
            self.steps,
            self.added.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_a_probability_and_a_slowdown() {
        assert_eq!(parse(" 0.25,4 ").unwrap(), "0.25,4");
        for (bad, says) in [
            ("0.25", "expected P,K"),
            ("0,4", "P must be in (0, 1]"),
            ("1.5,4", "P must be in (0, 1]"),
            ("0.5,0.5", "K must be from 1"),
            ("nan,2", "not a finite number"),
            ("0.5,inf", "not a finite number"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_fraction_p_of_steps_take_k_times_as_long() {
        let mut s = Straggler::new("0.25,4", 9);
        let took = Duration::from_millis(10);
        let extras: Vec<Duration> = (0..4000).map(|_| s.extra(took)).collect();
        let slow = extras.iter().filter(|d| !d.is_zero()).count();
        assert!((900..1100).contains(&slow), "{slow} of 4000 slowed");
        assert!(extras
            .iter()
            .all(|d| d.is_zero() || *d == Duration::from_millis(30)));
    }
}
