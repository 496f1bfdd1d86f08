//! Upper bounds on what a peer may make this node allocate.

/// Largest sections a node accepts in one frame. Checked against the header before any buffer is
/// allocated, so a peer that lies about lengths costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest keys section, in bytes.
    pub max_keys_bytes: u64,
    /// Largest values section, in bytes.
    pub max_values_bytes: u64,
    /// Largest extra section (control messages, error text), in bytes.
    pub max_extra_bytes: u64,
}

impl Default for FrameLimits {
    /// 1 GiB of keys (128M u64 keys), 2 GiB of values, 16 MiB of extra.
    fn default() -> Self {
        Self {
            max_keys_bytes: 1 << 30,
            max_values_bytes: 2 << 30,
            max_extra_bytes: 16 << 20,
        }
    }
}
