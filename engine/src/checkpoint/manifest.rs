//! The manifest of a checkpoint (`manifest.json`): the clock it was taken at, how many key
//! ranges the saving job had, and per table its spec and files (key range, keys, bytes, body
//! checksum). The scheduler writes it once every server has written its files; it is what
//! makes a directory a checkpoint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::file::{FileHeader, Written, FORMAT_VERSION};
use super::CheckpointError;
use crate::table::TableSpec;

/// The manifest's file name in a checkpoint directory.
pub const MANIFEST: &str = "manifest.json";

/// A whole checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// The clock every worker had completed when it was taken.
    pub clock: u32,
    /// Key ranges (server shards) of the job that saved it.
    pub ranges: u32,
    pub tables: Vec<SavedTable>,
}

/// One table of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTable {
    /// The table's id in the job that saved it.
    pub id: u32,
    pub spec: TableSpec,
    /// One file per key range.
    pub files: Vec<SavedFile>,
}

/// One file of a checkpoint: a table's key range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// Its name in the checkpoint directory.
    pub file: String,
    pub range: u32,
    /// First and last key of the range (inclusive).
    pub first: u64,
    pub last: u64,
    pub keys: u64,
    pub bytes: u64,
    pub body_crc32c: u32,
}

impl SavedFile {
    /// The manifest's entry for a file a server wrote.
    pub fn new(file: String, header: &FileHeader, written: Written) -> SavedFile {
        SavedFile {
            file,
            range: header.range,
            first: header.first,
            last: header.last,
            keys: header.keys,
            bytes: written.bytes,
            body_crc32c: written.body_crc32c,
        }
    }

    /// Checks that the file at `path`, read and verified as (`header`, `written`), is the one
    /// this entry of `table` lists.
    pub fn matches(
        &self,
        path: &Path,
        table: &SavedTable,
        header: &FileHeader,
        written: Written,
    ) -> Result<(), CheckpointError> {
        let reason = if header.spec != table.spec {
            Some(format!(
                "it holds table `{}`, the manifest lists `{}`",
                header.spec.name, table.spec.name
            ))
        } else if (header.range, header.first, header.last) != (self.range, self.first, self.last) {
            Some(format!(
                "it holds range {} [{:#x}, {:#x}], the manifest lists range {} [{:#x}, {:#x}]",
                header.range, header.first, header.last, self.range, self.first, self.last
            ))
        } else if (header.keys, written.bytes, written.body_crc32c)
            != (self.keys, self.bytes, self.body_crc32c)
        {
            Some(format!(
                "{} keys, {} bytes, checksum {:#010x}; the manifest lists {} keys, {} bytes, \
                 checksum {:#010x}",
                header.keys,
                written.bytes,
                written.body_crc32c,
                self.keys,
                self.bytes,
                self.body_crc32c
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

impl Manifest {
    /// Reads `dir`'s manifest: the directory must exist and hold one, and every file it names
    /// must be a plain name inside the directory.
    pub fn read(dir: &Path) -> Result<Manifest, CheckpointError> {
        if !dir.is_dir() {
            return Err(CheckpointError::Directory {
                path: dir.to_path_buf(),
                reason: "no such directory".into(),
            });
        }
        let path = dir.join(MANIFEST);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Directory {
                    path: dir.to_path_buf(),
                    reason: format!("no {MANIFEST}: not a complete checkpoint"),
                })
            }
            Err(e) => return Err(CheckpointError::io(&path, e)),
        };
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| CheckpointError::corrupt(&path, e.to_string()))?;
        if manifest.format != FORMAT_VERSION {
            return Err(CheckpointError::corrupt(
                &path,
                format!(
                    "format version {}; this build reads version {FORMAT_VERSION}",
                    manifest.format
                ),
            ));
        }
        let plain =
            |name: &str| !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        for table in &manifest.tables {
            if let Some(bad) = table.files.iter().find(|f| !plain(&f.file)) {
                let reason = format!("file name {:?} is not a plain name", bad.file);
                return Err(CheckpointError::corrupt(&path, reason));
            }
            if let Err(reason) = table.spec.validate() {
                return Err(CheckpointError::corrupt(&path, reason));
            }
        }
        let mut names: Vec<&str> = manifest
            .tables
            .iter()
            .map(|t| t.spec.name.as_str())
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            let reason = format!("table `{}` is listed twice", w[0]);
            return Err(CheckpointError::corrupt(&path, reason));
        }
        Ok(manifest)
    }

    /// Writes the manifest into `dir` under a temporary name, syncs it and renames it into
    /// place: the checkpoint exists from this moment.
    pub fn write(&self, dir: &Path) -> Result<(), CheckpointError> {
        use std::io::Write;
        let path = dir.join(MANIFEST);
        let tmp = super::temp_name(&path);
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| CheckpointError::Failed(format!("cannot encode the manifest: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(CheckpointError::io(&tmp, e));
        }
        super::publish(&tmp, &path)
    }
}
