//! Pulls: blocking (into a new vector or the caller's buffer, whose values are read straight
//! from the connection into it), changed rows only, and asynchronous with a ticket. Over RDMA,
//! a blocking pull of raw values names the caller's buffer to the servers, which write the
//! values into it.

use ferrops_net::{flags, Opcode};

use super::inbound::Lent;
use super::pending::{Kind, PullInto, Resend, Ticket};
use super::plan::{part_frame, Keys, Plan};
use super::{direct, retry_key_misses, State, Worker};
use crate::key_list::{check_value_count, KeyList};
use crate::table::TableId;
use crate::EngineError;

impl Worker {
    /// Pulls the values of `keys` (`keys × dim` floats, in key order).
    pub fn pull(&self, table: TableId, keys: &[u64]) -> Result<Vec<f32>, EngineError> {
        self.surviving_failover(|| {
            retry_key_misses(|_| {
                let t = self.pull_async(table, keys)?;
                self.wait_pull(t)
            })
        })
    }

    /// Pulls into the caller's buffer, which must hold exactly `keys × dim` floats; the values
    /// are read from the sockets straight into it (no intermediate copy).
    pub fn pull_into(
        &self,
        table: TableId,
        keys: &[u64],
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let keys = Keys::Slice(keys);
        self.surviving_failover(|| retry_key_misses(|_| self.pull_lent(table, keys, out, None)))
    }

    /// [`Worker::pull_into`] of a [`KeyList`]: its keys are neither checked nor signed again.
    pub fn pull_list_into(
        &self,
        table: TableId,
        keys: &KeyList,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let keys = Keys::Checked(keys);
        self.surviving_failover(|| retry_key_misses(|_| self.pull_lent(table, keys, out, None)))
    }

    /// Pulls only the rows that changed on the servers since this worker's last
    /// `pull_changed_into` of them (by more than `θ·max(|value|, ε)` in some coordinate; a row
    /// never received counts as changed) and writes them into `out`, leaving the other rows as
    /// they are. So `out` must hold what the previous call left there (reuse the buffer); the
    /// servers keep a copy of what this worker holds, per table.
    pub fn pull_changed_into(
        &self,
        table: TableId,
        keys: &[u64],
        out: &mut [f32],
        theta: f32,
    ) -> Result<(), EngineError> {
        let keys = Keys::Slice(keys);
        self.surviving_failover(|| {
            retry_key_misses(|_| self.pull_lent(table, keys, out, Some(theta)))
        })
    }

    /// A blocking pull whose replies are read into the caller's `out` while it waits
    /// (changed rows only when `changed_theta` is given).
    fn pull_lent(
        &self,
        table: TableId,
        keys: Keys<'_>,
        out: &mut [f32],
        changed_theta: Option<f32>,
    ) -> Result<(), EngineError> {
        let mut st = self.lock();
        let into = PullInto::Borrowed;
        // Over RDMA, plain pulls of raw values name `out` to the servers, which write the
        // values straight into it (registrations live until this call returns).
        let raw = st
            .tables
            .get(&table.0)
            .is_some_and(|t| t.codec() == ferrops_net::codec::ValueCodec::Raw);
        let out_len = out.len();
        let direct = (changed_theta.is_none() && raw).then_some(&mut *out);
        let (ticket, _registrations) =
            self.send_pull(&mut st, table, keys, out_len, into, changed_theta, direct)?;
        let mut lent = Some(Lent {
            ticket,
            values: out,
        });
        st.io.drive_until(
            |inbound| inbound.outstanding.is_done(ticket) != Some(false),
            &mut lent,
            None,
        )?;
        st.io.inbound.outstanding.take(ticket).map(|_| ())
    }

    /// Sends a pull and returns a ticket; [`Worker::wait_pull`] gives the values.
    pub fn pull_async(&self, table: TableId, keys: &[u64]) -> Result<Ticket, EngineError> {
        self.surviving_failover(|| self.pull_async_into(table, keys, Vec::new()))
    }

    /// Like [`Worker::pull_async`], reusing `buf` (resized to `keys × dim`) for the values, so a
    /// loop that hands its buffer back each time allocates nothing.
    pub fn pull_async_into(
        &self,
        table: TableId,
        keys: &[u64],
        mut buf: Vec<f32>,
    ) -> Result<Ticket, EngineError> {
        let mut st = self.lock();
        let dim = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?
            .dim as usize;
        buf.resize(keys.len() * dim, 0.0);
        let len = buf.len();
        let (ticket, _) = self.send_pull(
            &mut st,
            table,
            Keys::Slice(keys),
            len,
            PullInto::Owned(buf),
            None,
            None,
        )?;
        drop(st);
        let ticket = Ticket(ticket);
        self.keep_for_resend(&ticket, || Resend::Pull {
            table,
            keys: keys.to_vec(),
        });
        Ok(ticket)
    }

    /// Sends the parts of a pull. With `direct` (the caller's destination, which must outlive
    /// the returned registrations), parts big enough and bound for a server whose connection
    /// can write into it (RDMA) name their slice of it in the request, and the server writes
    /// the values there.
    #[allow(clippy::too_many_arguments)]
    fn send_pull(
        &self,
        st: &mut State,
        table: TableId,
        keys: Keys<'_>,
        out_len: usize,
        into: PullInto,
        changed_theta: Option<f32>,
        direct: Option<&mut [f32]>,
    ) -> Result<(u64, Vec<direct::Registered>), EngineError> {
        let mut registrations = Vec::new();
        let direct_base = direct.map(|d| d.as_mut_ptr());
        let spec = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?;
        let (dim, packing) = (spec.dim as usize, spec.key_packing);
        check_value_count(keys.as_slice().len(), out_len, dim)?;
        let plan = Plan::new(&st.routing, spec, keys)?;
        let keys = keys.as_slice();
        let header = self.request_header(st, Opcode::Pull, table);
        let State {
            io,
            routing,
            reducers,
            tables,
            ..
        } = st;
        let name = tables.get(&table.0).map_or("", |s| s.name.as_str());
        let ticket = io.inbound.outstanding.open(Kind::Pull(into));
        let mut key_buf = Vec::new();
        for part in plan.parts(routing) {
            let (server, idx) = (part.server, part.idx);
            let values = idx.start * dim..idx.end * dim;
            let outstanding = &mut io.inbound.outstanding;
            let metered = outstanding.meters.sent((server, table.0, name), false, 0);
            let request = outstanding.add_request(ticket, server, values, metered);
            let mut frame = part_frame(
                header,
                request,
                &keys[idx.clone()],
                part.signature,
                (io, server, packing),
                &mut key_buf,
                reducers,
            )?;
            let theta_bytes = changed_theta.map(f32::to_le_bytes);
            if let Some(bytes) = theta_bytes.as_ref() {
                frame.header.flags |= flags::PULL_CHANGED;
                frame.extra = bytes;
            }
            let mut remote = [0u8; 16];
            if let Some(base) = direct_base {
                let floats = (idx.end - idx.start) * dim;
                // SAFETY: `base` points to the caller's destination of `out_len` floats, which
                // outlives the registrations this function returns and is not read until the
                // pull completed; the part's slice lies inside it (`check_value_count` above).
                let reg =
                    unsafe { direct::register(io, server, base.add(idx.start * dim), floats) };
                if let Some(reg) = reg {
                    remote = reg.remote().to_bytes();
                    frame.header.flags |= flags::VALUES_TO_REMOTE;
                    registrations.push(reg);
                }
            }
            if frame.header.flags & flags::VALUES_TO_REMOTE != 0 {
                frame.extra = &remote;
            }
            io.send(server, &mut frame, &mut None)?;
        }
        Ok((ticket, registrations))
    }
}
