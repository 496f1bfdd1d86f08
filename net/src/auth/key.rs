//! The cluster key: the secret every node of a job shares, or the explicit choice to run
//! without one.

use std::fmt;

/// Bytes of randomness in a generated secret (written out as twice as many hex digits).
const GENERATED_BYTES: usize = 32;

/// A cluster secret. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Why a secret was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the cluster secret is empty")]
    Empty,
    #[error("the system's random source failed: {0}")]
    Random(String),
}

impl Secret {
    /// A secret from its text (as `FERROPS_SECRET` or a secret file holds it; surrounding white
    /// space, such as a file's final newline, is not part of it).
    pub fn new(text: &str) -> Result<Secret, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(text.as_bytes().to_vec()))
    }

    /// A fresh random secret from the operating system's generator, as hex text (what a
    /// launcher hands its children in `FERROPS_SECRET`).
    pub fn generate() -> Result<Secret, SecretError> {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Secret(hex(&bytes).into_bytes()))
    }

    /// The secret's text, for handing to a child process's environment (never for a log).
    pub fn expose(&self) -> &str {
        // Built from a &str or from hex digits: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// How a node proves it belongs to the job, and checks that its peers do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterKey {
    /// Every connection runs the challenge–response with this secret.
    Secret(Secret),
    /// No secret: peers are taken at their word. Only for a single-user machine or a trusted
    /// network; a node with a secret refuses to talk to a node without one.
    Insecure,
}

impl ClusterKey {
    /// A key with a freshly generated secret.
    pub fn generate() -> Result<ClusterKey, SecretError> {
        Secret::generate().map(ClusterKey::Secret)
    }

    /// Whether this key skips authentication.
    pub fn is_insecure(&self) -> bool {
        matches!(self, ClusterKey::Insecure)
    }
}

/// Lower-case hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_never_empty() {
        assert_eq!(Secret::new("  abc\n").unwrap().expose(), "abc");
        assert_eq!(Secret::new(" \n"), Err(SecretError::Empty));
    }

    #[test]
    fn generated_secrets_differ_and_are_hex() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 * GENERATED_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let s = Secret::new("hunter2").unwrap();
        assert!(!format!("{s:?} {:?}", ClusterKey::Secret(s.clone())).contains("hunter2"));
    }
}
