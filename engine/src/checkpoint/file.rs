//! One checkpoint file: a header, the body, a footer.
//!
//! ```text
//! | magic "FRPSCKPT" | version u32 | header length u32 | table u32 | range u32 | dense u8 |
//! | state arrays u8 | 0 u16 | dim u32 | first key u64 | last key u64 | clock u32 |
//! | Adam step u32 | keys u64 | slots u64 | spec length u32 | spec (postcard) |
//! | header CRC-32C u32 | body | body CRC-32C u32 | 0 u32 | "FRPSCEND" |
//! ```
//!
//! Little-endian throughout. The body holds the values, then each state array, `slots × dim`
//! floats each, in slot order: straight from the table's segments. A dense table's slot is its
//! key's offset from `first`; a sparse table's body starts with its key map, `keys` pairs of
//! key (u64) and slot (u32), in the map's order. Writing and reading go through a buffer of
//! [`CHUNK`] bytes: writing holds nothing in proportion to the table.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::CheckpointError;
use crate::table::TableSpec;

/// The first bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"FRPSCKPT";
/// The last bytes of every complete checkpoint file.
pub const END: [u8; 8] = *b"FRPSCEND";
/// The version of the format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes buffered between the table and the file, either way.
pub const CHUNK: usize = 1 << 20;
/// Bytes of the footer.
pub const FOOTER: u64 = 16;
/// The largest header a reader accepts (a spec is a few dozen bytes).
const MAX_HEADER: u32 = 64 << 10;
/// Bytes of the header before the spec.
const FIXED: usize = 8 + 4 + 4 + 56 + 4;

// The body is written straight from memory as little-endian values.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "checkpoints assume little-endian"
);

/// What a checkpoint file holds, from its header.
#[derive(Clone, Debug, PartialEq)]
pub struct FileHeader {
    /// The table's id when it was saved.
    pub table: u32,
    /// The index of the key range in the routing table of the job that saved it.
    pub range: u32,
    pub spec: TableSpec,
    /// Whether the body is a dense table's (keys implied) or a sparse table's (keyed rows).
    pub dense: bool,
    /// The range's first and last key (inclusive). A dense file holds keys `first..first+keys`.
    pub first: u64,
    pub last: u64,
    /// The clock the job had completed when it was saved.
    pub clock: u32,
    /// Adam's step count on the saving server (pushes applied to this table there).
    pub adam_step: u32,
    /// Keys in the body.
    pub keys: u64,
    /// Slots of each array in the body (a sparse table's slots may outnumber its keys: the
    /// slot unset keys read holds no key).
    pub slots: u64,
}

impl FileHeader {
    /// Rule state arrays per value.
    pub fn states(&self) -> usize {
        self.spec.rule.state_len()
    }

    /// Bytes of one entry of a sparse body's key map (key, slot).
    pub const KEY_ENTRY: u64 = 12;

    /// Bytes of the key map at the start of the body (none for a dense table).
    pub fn key_map_bytes(&self) -> u64 {
        match self.dense {
            true => 0,
            false => self.keys * FileHeader::KEY_ENTRY,
        }
    }

    /// Floats of each array in the body.
    pub fn array_floats(&self) -> u64 {
        self.slots * u64::from(self.spec.dim)
    }

    /// Bytes of the body the header announces.
    pub fn body_bytes(&self) -> u64 {
        self.key_map_bytes() + self.array_floats() * 4 * (1 + self.states() as u64)
    }

    fn encode(&self) -> Vec<u8> {
        let spec = postcard::to_stdvec(&self.spec).unwrap_or_default();
        let mut h = Vec::with_capacity(FIXED + spec.len() + 4);
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&((FIXED + spec.len() + 4) as u32).to_le_bytes());
        h.extend_from_slice(&self.table.to_le_bytes());
        h.extend_from_slice(&self.range.to_le_bytes());
        h.extend_from_slice(&[u8::from(self.dense), self.states() as u8, 0, 0]);
        h.extend_from_slice(&self.spec.dim.to_le_bytes());
        h.extend_from_slice(&self.first.to_le_bytes());
        h.extend_from_slice(&self.last.to_le_bytes());
        h.extend_from_slice(&self.clock.to_le_bytes());
        h.extend_from_slice(&self.adam_step.to_le_bytes());
        h.extend_from_slice(&self.keys.to_le_bytes());
        h.extend_from_slice(&self.slots.to_le_bytes());
        h.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        h.extend_from_slice(&spec);
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads and checks a header: magic, version, length, checksum, and that its fields agree
    /// with its spec.
    fn read(path: &Path, file: &mut File) -> Result<(FileHeader, u64), CheckpointError> {
        let mut start = [0u8; 16];
        read_or_truncated(path, file, &mut start, "the header")?;
        if start[..8] != MAGIC {
            return Err(CheckpointError::corrupt(
                path,
                "not a ferrops checkpoint file (bad magic)",
            ));
        }
        let version = u32_at(&start, 8);
        if version != FORMAT_VERSION {
            return Err(CheckpointError::corrupt(
                path,
                format!("format version {version}; this build reads version {FORMAT_VERSION}"),
            ));
        }
        let len = u32_at(&start, 12);
        if !(FIXED as u32 + 4..=MAX_HEADER).contains(&len) {
            return Err(CheckpointError::corrupt(
                path,
                format!("header length {len}"),
            ));
        }
        let mut h = start.to_vec();
        h.resize(len as usize, 0);
        read_or_truncated(path, file, &mut h[16..], "the header")?;
        let body = h.len() - 4;
        if crc32c::crc32c(&h[..body]) != u32_at(&h, body) {
            return Err(CheckpointError::corrupt(path, "header checksum mismatch"));
        }
        let spec_len = u32_at(&h, FIXED - 4) as usize;
        if FIXED + spec_len + 4 != h.len() {
            return Err(CheckpointError::corrupt(
                path,
                "spec length disagrees with the header",
            ));
        }
        let spec: TableSpec = postcard::from_bytes(&h[FIXED..FIXED + spec_len])
            .map_err(|e| CheckpointError::corrupt(path, format!("undecodable table spec: {e}")))?;
        let header = FileHeader {
            table: u32_at(&h, 16),
            range: u32_at(&h, 20),
            dense: h[24] == 1,
            first: u64_at(&h, 32),
            last: u64_at(&h, 40),
            clock: u32_at(&h, 48),
            adam_step: u32_at(&h, 52),
            keys: u64_at(&h, 56),
            slots: u64_at(&h, 64),
            spec,
        };
        let states = h[25] as usize;
        if h[24] > 1 || states != header.states() || u32_at(&h, 28) != header.spec.dim {
            return Err(CheckpointError::corrupt(
                path,
                "header fields disagree with its spec",
            ));
        }
        let counts_fit = header
            .slots
            .checked_mul(u64::from(header.spec.dim) * 4 * (1 + states as u64))
            .zip(header.keys.checked_mul(FileHeader::KEY_ENTRY))
            .is_some_and(|(a, k)| a.checked_add(k).is_some());
        let keys_fit = match header.dense {
            true => header.keys == header.slots,
            false => header.keys <= header.slots && header.slots <= u64::from(u32::MAX),
        };
        if !counts_fit || !keys_fit {
            return Err(CheckpointError::corrupt(
                path,
                "impossible key or slot counts",
            ));
        }
        if let Err(reason) = header.spec.validate() {
            return Err(CheckpointError::corrupt(path, reason));
        }
        Ok((header, len as u64))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn read_or_truncated(
    path: &Path,
    file: &mut File,
    buf: &mut [u8],
    what: &str,
) -> Result<(), CheckpointError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CheckpointError::Truncated {
            path: path.to_path_buf(),
            reason: format!("it ends inside {what}"),
        },
        _ => CheckpointError::io(path, e),
    })
}

/// What [`FileWriter::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes of the whole file.
    pub bytes: u64,
    /// CRC-32C of the body (as in the footer).
    pub body_crc32c: u32,
}

/// Writes one checkpoint file under a temporary name; [`FileWriter::finish`] checks the body
/// has the announced length, adds the footer, syncs and renames it into place.
pub struct FileWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    staged: Vec<u8>,
    crc: u32,
    body: u64,
    expected: u64,
    header_bytes: u64,
}

impl FileWriter {
    /// Starts `path` (under a temporary name) with `header`.
    pub fn create(path: &Path, header: &FileHeader) -> Result<FileWriter, CheckpointError> {
        let tmp = super::temp_name(path);
        let mut file = File::create(&tmp).map_err(|e| CheckpointError::io(&tmp, e))?;
        let encoded = header.encode();
        file.write_all(&encoded)
            .map_err(|e| CheckpointError::io(&tmp, e))?;
        Ok(FileWriter {
            path: path.to_path_buf(),
            tmp,
            file,
            staged: Vec::with_capacity(CHUNK),
            crc: 0,
            body: 0,
            expected: header.body_bytes(),
            header_bytes: encoded.len() as u64,
        })
    }

    /// Appends body bytes. Small pieces are gathered into one buffer; large ones go straight
    /// to the file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        if self.staged.len() + bytes.len() > CHUNK {
            self.flush_staged()?;
        }
        if bytes.len() >= CHUNK {
            self.put(bytes)
        } else {
            self.staged.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn flush_staged(&mut self) -> Result<(), CheckpointError> {
        let staged = std::mem::take(&mut self.staged);
        let result = self.put(&staged);
        self.staged = staged;
        self.staged.clear();
        result
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.body += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| CheckpointError::io(&self.tmp, e))
    }

    /// Ends the body, writes the footer, syncs the file and renames it into place.
    pub fn finish(mut self) -> Result<Written, CheckpointError> {
        self.flush_staged()?;
        if self.body != self.expected {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(CheckpointError::Failed(format!(
                "{}: wrote {} body bytes, the header announces {}",
                self.path.display(),
                self.body,
                self.expected
            )));
        }
        let mut footer = [0u8; FOOTER as usize];
        footer[..4].copy_from_slice(&self.crc.to_le_bytes());
        footer[8..].copy_from_slice(&END);
        let io = |e| CheckpointError::io(&self.tmp, e);
        self.file.write_all(&footer).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        super::publish(&self.tmp, &self.path)?;
        Ok(Written {
            bytes: self.header_bytes + self.body + FOOTER,
            body_crc32c: self.crc,
        })
    }
}

impl Drop for FileWriter {
    /// An unfinished file is removed (`finish` renamed a finished one away already).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Reads one checkpoint file's body in chunks, checking its length up front and its checksum
/// at the end ([`FileReader::finish`]).
pub struct FileReader {
    path: PathBuf,
    file: std::io::BufReader<File>,
    pub header: FileHeader,
    header_bytes: u64,
    left: u64,
    crc: u32,
}

impl FileReader {
    /// Opens `path` and checks its header and its length.
    pub fn open(path: &Path) -> Result<FileReader, CheckpointError> {
        let mut file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        let (header, header_bytes) = FileHeader::read(path, &mut file)?;
        let len = file
            .metadata()
            .map_err(|e| CheckpointError::io(path, e))?
            .len();
        let expected = header_bytes + header.body_bytes() + FOOTER;
        if len != expected {
            let reason = format!("{len} bytes, its header announces {expected}");
            return Err(match len < expected {
                true => CheckpointError::Truncated {
                    path: path.to_path_buf(),
                    reason,
                },
                false => CheckpointError::corrupt(path, reason),
            });
        }
        Ok(FileReader {
            path: path.to_path_buf(),
            file: std::io::BufReader::with_capacity(CHUNK, file),
            left: header.body_bytes(),
            header_bytes,
            header,
            crc: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Body bytes not read yet.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Fills `buf` with the next body bytes (it must not reach past the body).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), CheckpointError> {
        if buf.len() as u64 > self.left {
            return Err(CheckpointError::corrupt(&self.path, "the body ends early"));
        }
        read_buffered(&self.path, &mut self.file, buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.left -= buf.len() as u64;
        Ok(())
    }

    /// Reads the rest of the body (discarding it) and the footer, and checks the checksum.
    pub fn finish(mut self) -> Result<(FileHeader, Written), CheckpointError> {
        let mut scratch = vec![0u8; CHUNK.min(self.left as usize)];
        while self.left > 0 {
            let n = scratch.len().min(self.left as usize);
            self.read(&mut scratch[..n])?;
        }
        let mut footer = [0u8; FOOTER as usize];
        read_buffered(&self.path, &mut self.file, &mut footer)?;
        if footer[8..] != END || footer[4..8] != [0; 4] {
            return Err(CheckpointError::corrupt(&self.path, "bad footer"));
        }
        if u32_at(&footer, 0) != self.crc {
            return Err(CheckpointError::corrupt(
                &self.path,
                "body checksum mismatch",
            ));
        }
        let written = Written {
            bytes: self.header_bytes + self.header.body_bytes() + FOOTER,
            body_crc32c: self.crc,
        };
        Ok((self.header, written))
    }
}

fn read_buffered(
    path: &Path,
    file: &mut std::io::BufReader<File>,
    buf: &mut [u8],
) -> Result<(), CheckpointError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CheckpointError::Truncated {
            path: path.to_path_buf(),
            reason: "it ends inside the body".into(),
        },
        _ => CheckpointError::io(path, e),
    })
}

/// Reads a whole file and checks it: header, length, body checksum, footer.
pub fn verify_file(path: &Path) -> Result<(FileHeader, Written), CheckpointError> {
    FileReader::open(path)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrops_kernels::Rule;

    fn header(keys: u64) -> FileHeader {
        FileHeader {
            table: 3,
            range: 1,
            spec: TableSpec::new("w", 2).rule(Rule::AdaGrad { lr: 0.1, eps: 1e-6 }),
            dense: false,
            first: 10,
            last: 1000,
            clock: 7,
            adam_step: 0,
            keys,
            slots: keys,
        }
    }

    fn write(dir: &Path, h: &FileHeader) -> PathBuf {
        let path = dir.join("f.ckpt");
        let mut w = FileWriter::create(&path, h).unwrap();
        let row = vec![0x5au8; (h.body_bytes() / h.keys) as usize];
        for _ in 0..h.keys {
            w.write(&row).unwrap();
        }
        w.finish().unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrops-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_reads_back_its_header_and_every_flipped_byte_is_caught() {
        let dir = scratch("flip");
        let h = header(5);
        let path = write(&dir, &h);
        assert_eq!(verify_file(&path).unwrap().0, h);
        let good = std::fs::read(&path).unwrap();
        assert_eq!(
            good.len() as u64,
            h.encode().len() as u64 + h.body_bytes() + FOOTER
        );
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let err = verify_file(&path).expect_err(&format!("byte {at} flipped"));
            assert!(err.to_string().contains("f.ckpt"), "{err}");
        }
        for len in [0, 7, 30, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            let err = verify_file(&path).unwrap_err();
            assert!(
                matches!(err, CheckpointError::Truncated { .. }),
                "{len}: {err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_short_body_is_not_published() {
        let dir = scratch("short");
        let path = dir.join("f.ckpt");
        let mut w = FileWriter::create(&path, &header(2)).unwrap();
        w.write(&[0; 8]).unwrap();
        assert!(w.finish().is_err());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing left behind"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
