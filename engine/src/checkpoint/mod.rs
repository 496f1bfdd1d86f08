//! Checkpoints: every table's values and rule state at a consistent clock, on disk.
//!
//! A checkpoint is a directory holding one file per (table, key range), written by the server
//! that owns the range ([`file`]: a versioned header with the table's spec, the key range, the
//! clock and the counts, checksummed; the body; a footer with the body's CRC-32C; written under
//! a temporary name, synced and renamed into place), and a [`manifest`] the scheduler writes
//! last, the same way, listing every file with its size and checksum. A directory without a
//! manifest is not a checkpoint: a crash while writing leaves the previous one intact.
//!
//! [`verify`] reads a whole checkpoint before a job restores it, so a corrupt or truncated
//! file is refused, by name, before any work starts. A server loading a range reads, from each
//! saved file whose range overlaps its own, the keys it now owns ([`crate::store`]'s
//! `save`/`load`), so a job may restore on a different number of servers.

pub mod file;
pub mod manifest;

use std::path::{Path, PathBuf};

pub use file::{FileHeader, FORMAT_VERSION};
pub use manifest::{Manifest, SavedFile, SavedTable, MANIFEST};

/// Why a checkpoint could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("checkpoint file {} is truncated: {reason}", path.display())]
    Truncated { path: PathBuf, reason: String },
    #[error("checkpoint file {} does not match the manifest: {reason}", path.display())]
    Mismatch { path: PathBuf, reason: String },
    #[error("checkpoint directory {}: {reason}", path.display())]
    Directory { path: PathBuf, reason: String },
    #[error("checkpoint failed: {0}")]
    Failed(String),
}

impl CheckpointError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Reads a checkpoint whole: its manifest, then every file it lists (header, length, body and
/// footer checksums, and agreement with the manifest). Returns the manifest.
pub fn verify(dir: &Path) -> Result<Manifest, CheckpointError> {
    let manifest = Manifest::read(dir)?;
    for table in &manifest.tables {
        for saved in &table.files {
            let path = dir.join(&saved.file);
            let (header, written) = file::verify_file(&path)?;
            saved.matches(&path, table, &header, written)?;
        }
    }
    Ok(manifest)
}

/// The name of the file holding range `range` of table `table`, written at `clock` by write
/// attempt `attempt`: a checkpoint never overwrites the files of the one before it (which
/// stays whole until the new manifest replaces its own), nor a server fenced while writing
/// those of the attempt that replaced it.
pub fn file_name(table: u32, range: u32, clock: u32, attempt: u32) -> String {
    format!("table{table}-range{range}-clock{clock}-attempt{attempt}{FILE_SUFFIX}")
}

/// How every checkpoint file's name ends.
pub const FILE_SUFFIX: &str = ".ckpt";

/// Removes the checkpoint files in `dir` that `manifest` does not list (those of checkpoints
/// before it, and of write attempts it replaced); returns how many it removed. Called once the
/// manifest is in place; files it cannot remove are left (they are not part of it).
pub fn remove_unlisted(dir: &Path, manifest: &Manifest) -> usize {
    let listed: std::collections::BTreeSet<&str> = manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter().map(|f| f.file.as_str()))
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("table") && name.ends_with(FILE_SUFFIX) && !listed.contains(&*name)
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Renames `tmp` to `path` and syncs the directory, so that the rename survives a crash.
pub(crate) fn publish(tmp: &Path, path: &Path) -> Result<(), CheckpointError> {
    std::fs::rename(tmp, path).map_err(|e| CheckpointError::io(path, e))?;
    if let Some(dir) = path.parent() {
        let d = std::fs::File::open(dir).map_err(|e| CheckpointError::io(dir, e))?;
        d.sync_all().map_err(|e| CheckpointError::io(dir, e))?;
    }
    Ok(())
}

/// A temporary name beside `path`, unique to this process and thread.
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    path.with_file_name(format!(".{name}.tmp-{}-{thread}", std::process::id()))
}
