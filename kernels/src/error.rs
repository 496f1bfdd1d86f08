//! The one error type of the crate.

/// Why a kernel refused to run. Every check happens before the hot loop; a kernel that returns
/// an error has not modified any output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// An array does not have the length the call implies.
    #[error("{what}: length {got}, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The call passed a different number of state arrays than the rule needs.
    #[error("rule {rule} needs {expected} state array(s), got {got}")]
    StateCount {
        rule: &'static str,
        got: usize,
        expected: usize,
    },
    /// A sparse slot addresses rows past the end of the parameter array.
    #[error("slot {slot} (request position {index}) out of range: {rows} row(s) of dim {dim}")]
    SlotOutOfRange {
        index: usize,
        slot: u32,
        rows: usize,
        dim: usize,
    },
    /// Sparse calls need a row width of at least one element.
    #[error("sparse dim must be at least 1")]
    ZeroDim,
    /// A hyper-parameter makes the rule meaningless (for example an Adam step of 0).
    #[error("invalid hyper-parameter for {rule}: {reason}")]
    InvalidRule {
        rule: &'static str,
        reason: &'static str,
    },
    /// An index list would not fit the u32 indices the filters return.
    #[error("{len} elements exceed the u32 index range of the filters")]
    TooLong { len: usize },
    /// A tier was forced or pinned (`force_isa`, `with_isa`) on a CPU that lacks it.
    #[error("instruction set {0} is not supported by this CPU")]
    Unsupported(&'static str),
}

/// `Ok` when array `what` has the `expected` length, else [`KernelError::Length`].
pub(crate) fn check_len(
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), KernelError> {
    let wrong = KernelError::Length {
        what,
        got,
        expected,
    };
    (got == expected).then_some(()).ok_or(wrong)
}
