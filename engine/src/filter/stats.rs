//! Counters of the bandwidth reducers: coordinates per filter and bytes per codec.

/// Coordinates seen by one filter. What "delayed" and "dropped" mean depends on the filter:
/// the significantly-modified filter delays (sends later) and never drops; the KKT filter
/// drops (never sends that round); `ChangedSince` drops unchanged values from a pull reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub offered: u64,
    pub sent: u64,
    pub delayed: u64,
    pub dropped: u64,
}
