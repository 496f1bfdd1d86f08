//! Range copy, the learner's side: takes the steps `range_copy` sends. `Begin` creates the
//! range's stores afresh (a copy that starts again starts from nothing) with the source's
//! Adam step counts, dedupe state and clocks; `Rows` overwrite the rows of their keys; `End`
//! tells the scheduler the copy is whole. Only the server before this one in the range's
//! chain, while this one is the range's learner, may send them.

use std::time::Instant;

use ferrops_net::{CloseReason, Frame, Io, PeerId, Status};

use super::{Refusal, Server};
use crate::control::{reply_control, Control, CopyStep};

impl Server {
    /// A copy step from server `from` on connection `peer`.
    pub(super) fn take_copy_step(&mut self, from: (PeerId, u32), frame: Frame, io: &mut Io) {
        let (peer, from) = from;
        let h = frame.header;
        let step = match CopyStep::decode(frame.extra()) {
            Ok(step) => step,
            Err(e) => {
                let msg = format!("undecodable range copy step: {e}");
                io.send_error(peer, Some(&h), Status::BadFrame, &msg);
                io.close(peer, CloseReason::Error(msg));
                return;
            }
        };
        if let Err(refusal) = self.apply_copy_step(from, step, &frame, io) {
            tracing::error!("range copy from server {from} refused: {}", refusal.message);
            self.refuse(io, peer, &h, &refusal);
        }
    }

    fn apply_copy_step(
        &mut self,
        from: u32,
        step: CopyStep,
        frame: &Frame,
        io: &mut Io<'_>,
    ) -> Result<(), Refusal> {
        let range = match &step {
            CopyStep::Begin { range, .. }
            | CopyStep::Rows { range, .. }
            | CopyStep::End { range } => *range,
        };
        self.check_copy_source(range, from)?;
        match step {
            CopyStep::Begin {
                range,
                version,
                tables,
                applied,
                clocks,
            } => {
                self.tables.retain(|&(_, r), _| r != range);
                self.applied.import(range, applied);
                for (table, spec, adam_step) in tables {
                    let mut store = self.create_store(spec, range as usize)?;
                    store.set_adam_step(adam_step);
                    self.tables.insert((table, range), store);
                }
                for (worker, completed) in clocks {
                    self.clocks.merge(worker, completed);
                }
                tracing::info!(
                    "taking a copy of range {range} from server {from} (routing version {version})"
                );
                let intake = Intake {
                    version,
                    started: Instant::now(),
                    keys: 0,
                    bytes: 0,
                };
                self.copies_in.insert(range, intake);
                self.copies_done.remove(&range);
            }
            CopyStep::Rows { range, table } => {
                let Some(intake) = self.copies_in.get_mut(&range) else {
                    return Err(Refusal::new(
                        Status::BadRequest,
                        format!("rows of range {range} before its copy began"),
                    ));
                };
                intake.keys += u64::from(frame.header.key_count.get());
                intake.bytes += (frame.keys_bytes().len() + frame.values_bytes().len()) as u64;
                let keys = frame
                    .keys()
                    .map_err(|e| Refusal::new(Status::BadKeys, e.to_string()))?;
                let rows = frame
                    .values_f32()
                    .map_err(|e| Refusal::new(Status::BadValues, e.to_string()))?;
                let store = self.tables.get_mut(&(table, range)).ok_or_else(|| {
                    Refusal::new(
                        Status::UnknownTable,
                        format!("table {table} is not in the copy of range {range}"),
                    )
                })?;
                store.import_rows(keys, rows)?;
            }
            CopyStep::End { range } => {
                let Some(intake) = self.copies_in.remove(&range) else {
                    return Err(Refusal::new(
                        Status::BadRequest,
                        format!("end of range {range}'s copy before it began"),
                    ));
                };
                let seconds = intake.started.elapsed().as_secs_f64();
                tracing::info!(
                    "holds a whole copy of range {range}: {} rows, {} bytes in {seconds:.3} s \
                     ({:.1} MB/s while serving)",
                    intake.keys,
                    intake.bytes,
                    intake.bytes as f64 / seconds.max(1e-9) / 1e6
                );
                let version = intake.version;
                // Reported again when rejoining a recovered scheduler, if this one is lost.
                self.copies_done.insert(range);
                reply_control(io, self.scheduler, &Control::RangeCopied { range, version });
            }
        }
        Ok(())
    }

    /// Whether server `from` may send this server a copy of range `range`: it is the learner,
    /// right after `from` in the chain.
    fn check_copy_source(&self, range: u32, from: u32) -> Result<(), Refusal> {
        let rank = self.rank.unwrap_or(u32::MAX);
        let r = self.routing.ranges.get(range as usize);
        let learner = r.is_some_and(|r| r.learner == Some(rank));
        if learner && self.routing.predecessor(range as usize, rank) == Some(from) {
            return Ok(());
        }
        Err(Refusal::new(
            Status::NotOwner,
            format!(
                "server {rank} is not taking a copy of range {range} from server {from} under routing version {}",
                self.routing.version
            ),
        ))
    }
}

/// A copy being taken: the routing version it began under, when, and what has arrived.
pub(super) struct Intake {
    version: u32,
    started: Instant,
    keys: u64,
    bytes: u64,
}
