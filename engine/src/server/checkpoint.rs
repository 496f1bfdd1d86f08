//! A server's part of checkpoints: writing its range of every table when the scheduler says
//! so (every worker has asked and none is pushing), and creating a table from a checkpoint,
//! loading from each saved range that overlaps its own the keys it now owns.
//!
//! Both run on the shard's event-loop thread, which is what owns the tables; the node's
//! heartbeats go on from their own thread meanwhile, and files are streamed through a bounded
//! buffer ([`crate::checkpoint::file`]).

use std::path::Path;
use std::time::Instant;

use ferrops_net::Io;

use super::Server;
use crate::checkpoint::{file_name, CheckpointError, SavedFile};
use crate::control::{reply_control, Control};
use crate::store::SaveAs;
use crate::table::{KeyLayout, TableId, TableSpec};

impl Server {
    /// Writes this server's range of every table into `dir` and tells the scheduler which
    /// files it wrote (or why it could not).
    pub(super) fn write_checkpoint(
        &mut self,
        dir: &str,
        (clock, attempt): (u32, u32),
        io: &mut Io<'_>,
    ) {
        let started = Instant::now();
        let result = self.save_tables(Path::new(dir), clock, attempt);
        match &result {
            Ok(files) => tracing::info!(
                "checkpoint of {} tables at clock {clock} written to {dir} in {:.3} s",
                files.len(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => tracing::error!("{e}"),
        }
        let result = result.map_err(|e| e.to_string());
        let written = Control::CheckpointWritten { attempt, result };
        reply_control(io, self.scheduler, &written);
    }

    /// Writes the ranges this server heads (their replicas hold the same bits, so one copy per
    /// range is written, by its head).
    fn save_tables(
        &self,
        dir: &Path,
        clock: u32,
        attempt: u32,
    ) -> Result<Vec<(u32, SavedFile)>, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
        let rank = self
            .rank
            .ok_or_else(|| CheckpointError::Failed("the server owns no key range yet".into()))?;
        let mut files = Vec::new();
        for (&(id, index), store) in &self.tables {
            let range = &self.routing.ranges[index as usize];
            if range.server != rank {
                continue;
            }
            let name = file_name(id, index, clock, attempt);
            let at = SaveAs {
                table: id,
                range: index,
                first: range.begin,
                last: range.last,
                clock,
            };
            let (header, written) = store.save(&dir.join(&name), &at)?;
            files.push((id, SavedFile::new(name, &header, written)));
        }
        Ok(files)
    }

    /// Creates table `id` and loads its keys in this server's range from the saved files that
    /// overlap it; answers `TableCreated`, or `TableRefused` naming the file that failed.
    pub(super) fn load_table(
        &mut self,
        id: TableId,
        spec: TableSpec,
        dir: &str,
        files: &[SavedFile],
        io: &mut Io<'_>,
    ) {
        let name = spec.name.clone();
        let held: Vec<usize> = match self.rank {
            Some(rank) => self.routing.held_by(rank).collect(),
            None => Vec::new(),
        };
        let mut restored = 0;
        for range in held {
            match self.load_store(spec.clone(), range, Path::new(dir), files) {
                Ok((store, keys)) => {
                    restored += keys;
                    self.tables.insert((id.0, range as u32), store);
                }
                Err(reason) => {
                    let rank = self.rank.unwrap_or(u32::MAX);
                    let reason = format!("server {rank} cannot restore it: {reason}");
                    tracing::error!("table {} `{name}`: {reason}", id.0);
                    reply_control(io, self.scheduler, &Control::TableRefused { id, reason });
                    return;
                }
            }
        }
        tracing::info!(
            "table {} `{name}`: {restored} keys restored from {dir}",
            id.0
        );
        reply_control(io, self.scheduler, &Control::TableCreated { id });
    }

    /// Key range `index`'s store of `spec`, loaded from the saved files that overlap it.
    fn load_store(
        &self,
        spec: TableSpec,
        index: usize,
        dir: &Path,
        files: &[SavedFile],
    ) -> Result<(crate::store::TableStore, u64), String> {
        let own = &self.routing.ranges[index];
        // The keys of the range, inclusive, in the saved files' terms.
        let (first, last) = match spec.layout {
            KeyLayout::Dense { keys } => {
                let (begin, end) = self.routing.dense_bounds(index, keys);
                if begin == end {
                    (1, 0) // holds nothing
                } else {
                    (begin, end - 1)
                }
            }
            KeyLayout::Sparse => (own.begin, own.last),
        };
        let mut store = self.create_store(spec, index).map_err(|e| e.to_string())?;
        let mut keys = 0;
        for saved in files {
            if saved.keys == 0 || saved.last < first || saved.first > last {
                continue;
            }
            keys += store
                .load(&dir.join(&saved.file), first, last)
                .map_err(|e| e.to_string())?;
        }
        Ok((store, keys))
    }
}
