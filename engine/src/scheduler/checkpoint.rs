//! The scheduler's part of checkpoints.
//!
//! **Writing** is collective, like a barrier: each worker waits until its pushes are
//! acknowledged, then asks (`Checkpoint`). Once every live worker has asked, no push is in
//! flight and none will come until they are answered, so the tables are at one consistent
//! clock: the servers are told to write (`WriteCheckpoint`), each answers with its files, and
//! the scheduler writes the manifest last (the checkpoint exists from then on), removes the
//! files it does not list, and answers the workers (`CheckpointDone`).
//!
//! **A routing change while the servers write** (a server died or was fenced, a copy or a
//! move finished) starts the write again as a new *attempt*, under the new routing, once every
//! node has it: the heads it names write every range (nothing was pushed meanwhile, so every
//! replica holds the same values), answers to an older attempt are ignored, and each attempt
//! writes files of its own name, so a fenced server that finishes writing late overwrites
//! nothing the manifest lists.
//!
//! **Restoring** (`SchedulerConfig::restore`): the whole checkpoint is read and checked before
//! the scheduler listens; once the servers are welcomed, every saved table is created on
//! every server from the saved files (`LoadTable`), before any worker is released, and a
//! worker's declaration of it finds it. A server that cannot load its part ends the job.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ferrops_net::{Io, PeerId};

use super::{Scheduler, TableState};
use crate::checkpoint::{Manifest, SavedFile, SavedTable, FORMAT_VERSION};
use crate::control::{reply_control, Control};
use crate::table::TableId;

/// A checkpoint being taken.
#[derive(Debug, Default)]
pub(super) struct Collective {
    dir: String,
    /// The smallest clock among the workers that asked.
    clock: u32,
    /// Workers that asked (and wait for the answer).
    asked: BTreeSet<PeerId>,
    /// Whether the servers were told to write, and how many have not answered.
    writing: bool,
    servers_left: usize,
    /// The write attempt the servers were last asked for, and the routing version it was
    /// asked under.
    attempt: u32,
    version: u32,
    files: Vec<(u32, SavedFile)>,
    failure: Option<String>,
    /// The `ferrops ctl` connection that asked, when no worker did (see `ctl`).
    ctl: Option<PeerId>,
}

impl Collective {
    /// The checkpoint `ferrops ctl` asked for on connection `ctl`, while every live worker
    /// waits at a barrier.
    pub(super) fn for_ctl(dir: String, clock: u32, ctl: PeerId) -> Collective {
        Collective {
            dir,
            clock,
            ctl: Some(ctl),
            ..Collective::default()
        }
    }
}

/// A checkpoint to start from: where, and what it holds.
#[derive(Debug)]
pub(super) struct Restore {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Scheduler {
    /// A worker asks for a checkpoint into `dir` at its clock `clock`.
    pub(super) fn checkpoint_asked(
        &mut self,
        peer: PeerId,
        dir: String,
        clock: u32,
        io: &mut Io<'_>,
    ) {
        let c = self.checkpoint.get_or_insert_with(|| Collective {
            dir: dir.clone(),
            clock,
            ..Collective::default()
        });
        if c.dir != dir && c.failure.is_none() {
            c.failure = Some(format!(
                "workers asked for different directories ({} and {dir})",
                c.dir
            ));
        }
        c.clock = c.clock.min(clock);
        c.asked.insert(peer);
        self.maybe_write_checkpoint(io);
    }

    /// Once every live worker has asked, tells the servers to write (or answers at once when
    /// the request already failed).
    pub(super) fn maybe_write_checkpoint(&mut self, io: &mut Io<'_>) {
        let Some(c) = self.checkpoint.as_mut() else {
            return;
        };
        if c.writing || (c.ctl.is_none() && !self.live_workers.is_subset(&c.asked)) {
            return;
        }
        if c.failure.is_some() {
            return self.finish_checkpoint(io);
        }
        c.writing = true;
        tracing::info!("checkpoint at clock {} into {}", c.clock, c.dir);
        self.ask_servers_to_write(io);
    }

    /// Asks every server to write the checkpoint being taken, as a new attempt under the
    /// current routing.
    fn ask_servers_to_write(&mut self, io: &mut Io<'_>) {
        let Some(c) = self.checkpoint.as_mut() else {
            return;
        };
        self.checkpoint_attempts += 1;
        c.attempt = self.checkpoint_attempts;
        c.version = self.routing.version;
        c.files.clear();
        c.servers_left = self.servers.len();
        let msg = Control::WriteCheckpoint {
            dir: c.dir.clone(),
            clock: c.clock,
            attempt: c.attempt,
        };
        for (server, _) in self.servers.clone() {
            reply_control(io, server, &msg);
        }
    }

    /// Every node has routing version `self.routing.version`: a checkpoint whose servers were
    /// asked to write under an older one is asked again (see the module's documentation).
    pub(super) fn checkpoint_under_new_routing(&mut self, io: &mut Io<'_>) {
        let Some(c) = self.checkpoint.as_ref().filter(|c| c.writing) else {
            return;
        };
        if c.version == self.routing.version {
            return;
        }
        tracing::warn!(
            "checkpoint at clock {}: the routing changed while the servers wrote (version {} \
             to {}); writing it again",
            c.clock,
            c.version,
            self.routing.version
        );
        self.ask_servers_to_write(io);
    }

    /// A server wrote its files for write attempt `attempt` (or could not).
    pub(super) fn checkpoint_written(
        &mut self,
        attempt: u32,
        result: Result<Vec<(u32, SavedFile)>, String>,
        io: &mut Io<'_>,
    ) {
        let Some(c) = self.checkpoint.as_mut().filter(|c| c.writing) else {
            return;
        };
        if attempt != c.attempt {
            return; // an attempt a routing change replaced
        }
        match result {
            Ok(files) => c.files.extend(files),
            Err(reason) => {
                c.failure.get_or_insert(reason);
            }
        }
        c.servers_left = c.servers_left.saturating_sub(1);
        if c.servers_left == 0 {
            self.finish_checkpoint(io);
        }
    }

    /// Writes the manifest (when every server wrote its files) and answers the workers.
    fn finish_checkpoint(&mut self, io: &mut Io<'_>) {
        let Some(mut c) = self.checkpoint.take() else {
            return;
        };
        let result = match c.failure.take() {
            Some(reason) => Err(reason),
            None => self.write_manifest(&mut c),
        };
        match &result {
            Ok(()) => tracing::info!("checkpoint at clock {} complete in {}", c.clock, c.dir),
            Err(e) => tracing::error!("checkpoint into {} failed: {e}", c.dir),
        }
        for peer in c.asked.into_iter().chain(c.ctl) {
            let result = result.clone();
            reply_control(io, peer, &Control::CheckpointDone { result });
        }
        if c.ctl.is_some() {
            self.ctl_checkpoint_done(io);
        }
        self.admit_next_worker(io);
    }

    fn write_manifest(&self, c: &mut Collective) -> Result<(), String> {
        let mut tables = Vec::new();
        for (id, table) in self.tables.iter().enumerate() {
            if table.refused.is_some() || table.created_on < self.num_servers {
                continue;
            }
            let mut files: Vec<SavedFile> = c
                .files
                .iter()
                .filter(|(t, _)| *t == id as u32)
                .map(|(_, f)| f.clone())
                .collect();
            files.sort_by_key(|f| f.range);
            if files.len() != self.num_servers {
                return Err(format!(
                    "table `{}`: {} of {} servers wrote their range",
                    table.spec.name,
                    files.len(),
                    self.num_servers
                ));
            }
            tables.push(SavedTable {
                id: id as u32,
                spec: table.spec.clone(),
                files,
            });
        }
        let manifest = Manifest {
            format: FORMAT_VERSION,
            clock: c.clock,
            ranges: self.num_servers as u32,
            tables,
        };
        let dir = Path::new(&c.dir);
        manifest.write(dir).map_err(|e| e.to_string())?;
        let removed = crate::checkpoint::remove_unlisted(dir, &manifest);
        if removed > 0 {
            tracing::info!(
                "checkpoint: removed {removed} files of earlier checkpoints or attempts from {}",
                c.dir
            );
        }
        Ok(())
    }

    /// Creates every saved table on every server from the checkpoint (once the servers are
    /// welcomed; they answer like a declaration's `TableReady`).
    pub(super) fn restore_tables(&mut self, io: &mut Io<'_>) {
        let Some(restore) = self.restore.as_ref() else {
            return;
        };
        let dir = restore.dir.to_string_lossy().into_owned();
        let saved = restore.manifest.tables.clone();
        tracing::info!(
            "restoring {} tables saved at clock {} on {} ranges from {dir}",
            saved.len(),
            restore.manifest.clock,
            restore.manifest.ranges
        );
        for table in saved {
            let id = TableId(self.tables.len() as u32);
            let msg = Control::LoadTable {
                id,
                spec: table.spec.clone(),
                dir: dir.clone(),
                files: table.files,
            };
            for (server, _) in self.servers.clone() {
                reply_control(io, server, &msg);
            }
            self.tables.push(TableState {
                spec: table.spec,
                created_on: 0,
                waiting: Vec::new(),
                refused: None,
                restored: true,
            });
        }
    }
}
