//! How a server joins the job and what it admits: registering with the scheduler, the
//! scheduler's messages (welcome and routing, tables to create, live workers, shutdown), and
//! worker connections announcing themselves (each gets its key-list cache).

use std::net::SocketAddr;

use ferrops_net::auth::Identity;
use ferrops_net::{EventLoop, Frame, Io, PeerId};

use super::{Admitted, Server};
use crate::control::{reply_control, send_control, Control, Role};
use crate::key_list_cache::KeyListCache;
use crate::store::TableStore;
use crate::table::{KeyLayout, TableSpec};
use crate::EngineError;

/// Registers a shard with the scheduler: the address workers should dial, its RDMA listener's
/// when it has one, and the rank it asks for.
pub(super) fn register(
    ev: &mut EventLoop,
    scheduler: PeerId,
    advertised: SocketAddr,
    rdma_addr: Option<SocketAddr>,
    rank: Option<u32>,
) -> Result<(), EngineError> {
    send_control(
        ev,
        scheduler,
        &Control::Register {
            role: Role::Server,
            addr: Some(advertised.to_string()),
            rdma_addr: rdma_addr.map(|a| a.to_string()),
            rank,
        },
    )?;
    match rdma_addr {
        Some(rdma) => tracing::info!("server listening on {advertised} and RDMA {rdma}"),
        None => tracing::info!("server listening on {advertised}"),
    }
    Ok(())
}

impl Server {
    /// Handles a message from the scheduler (anything else it sends is ignored).
    pub(super) fn on_control(&mut self, frame: &Frame, io: &mut Io<'_>) {
        let msg = match Control::decode(frame.extra()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("undecodable control message from the scheduler: {e}");
                return;
            }
        };
        match msg {
            Control::Welcome {
                routing,
                workers,
                start_clock,
                node_id,
                rank,
                num_servers: servers_in_job,
                num_workers: workers_in_job,
            } => {
                let (servers, workers_set) = self.configured_size;
                let size = (servers_in_job as usize, workers_in_job as usize);
                if (servers != 0 && servers != size.0)
                    || (workers_set != 0 && workers_set != size.1)
                {
                    let why = format!(
                        "this server was configured for {servers} servers (shards) and \
                         {workers_set} workers, but the job has {} and {}",
                        size.0, size.1
                    );
                    tracing::error!("{why}");
                    self.stop = Some(Err(EngineError::Config(why)));
                    return;
                }
                self.rejoin.job_size = (servers_in_job, workers_in_job);
                self.clocks.start_at(start_clock);
                self.clocks.set_live(&workers);
                self.node_id = Some(node_id);
                self.rank = Some(rank);
                for r in routing.owned_by(rank) {
                    tracing::info!("server {rank} owns keys [{:#x}, {:#x}]", r.begin, r.last);
                }
                self.routing = routing;
                if let Err(e) = self.dial_chain_peers(io) {
                    tracing::error!("{e}");
                    self.stop = Some(Err(EngineError::Config(e)));
                    return;
                }
                reply_control(io, self.scheduler, &Control::Ready);
            }
            Control::TableReady { id, spec } => {
                tracing::info!(
                    "table {} `{}`: dim {}, {:?}, {:?}",
                    id.0,
                    spec.name,
                    spec.dim,
                    spec.rule,
                    spec.consistency
                );
                let held: Vec<usize> = match self.rank {
                    Some(rank) => self.routing.held_by(rank).collect(),
                    None => Vec::new(),
                };
                for range in held {
                    if self.tables.contains_key(&(id.0, range as u32)) {
                        continue;
                    }
                    let name = spec.name.clone();
                    match self.create_store(spec.clone(), range) {
                        Ok(store) => {
                            self.tables.insert((id.0, range as u32), store);
                        }
                        Err(e) => {
                            // Refused, not fatal: the scheduler tells whoever declared it.
                            let rank = self.rank.unwrap_or(u32::MAX);
                            let reason = format!("server {rank} cannot hold it: {e}");
                            tracing::warn!("table {} `{name}` refused: {reason}", id.0);
                            let refused = Control::TableRefused { id, reason };
                            reply_control(io, self.scheduler, &refused);
                            return;
                        }
                    }
                }
                reply_control(io, self.scheduler, &Control::TableCreated { id });
            }
            Control::DropTable { id } => {
                let before = self.tables.len();
                self.tables.retain(|&(table, _), _| table != id.0);
                if self.tables.len() < before {
                    tracing::info!("table {} dropped: another server refused it", id.0);
                }
            }
            Control::LiveWorkers { workers, lost } => {
                self.rejoin.lost_workers = lost;
                self.clocks.set_live(&workers);
                self.release_parked(io);
            }
            Control::Shutdown { ok, reason } => {
                tracing::info!("shutdown requested ({reason})");
                self.stop = Some(if ok {
                    Ok(())
                } else {
                    Err(EngineError::Shutdown(reason))
                });
            }
            // Its arrival was the point (`Server::on_frame` counted it).
            Control::HeartbeatAck => {}
            Control::WriteCheckpoint {
                dir,
                clock,
                attempt,
            } => self.write_checkpoint(&dir, (clock, attempt), io),
            Control::LoadTable {
                id,
                spec,
                dir,
                files,
            } => self.load_table(id, spec, &dir, &files, io),
            Control::Routing { routing } => self.reroute(routing, io),
            Control::Drained { result: Err(why) } => {
                tracing::error!("this server cannot leave the job: {why}");
                self.stop = Some(Err(EngineError::Shutdown(why)));
            }
            Control::Summarize { id } => self.summarize(id, io),
            Control::WorkerJoined {
                node_id,
                start_clock,
            } => self.worker_joined(node_id, start_clock),
            other => tracing::warn!("unexpected control message {other:?}"),
        }
    }

    /// Asked to leave (SIGTERM): asks the scheduler to drain this server (it answers with
    /// `Shutdown` once the ranges moved, or `Drained` with why not); not yet welcomed, it
    /// stops at once.
    pub(super) fn leave_if_asked(&mut self, io: &mut Io<'_>) {
        let asked = self
            .leave
            .as_ref()
            .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed));
        if !asked || self.leaving || self.stop.is_some() {
            return;
        }
        self.leaving = true;
        if self.rank.is_none() {
            tracing::info!("asked to stop before the job started: stopping");
            self.stop = Some(Ok(()));
            return;
        }
        tracing::info!("asked to stop: asking the scheduler to move this server's ranges first");
        reply_control(io, self.scheduler, &Control::DrainMe);
    }

    /// An empty store for `spec` in key range `range`: a dense table holds (and commits) that
    /// range's share of its keys, a sparse one grows as keys arrive.
    pub(super) fn create_store(
        &self,
        spec: TableSpec,
        range: usize,
    ) -> Result<TableStore, crate::store::StoreError> {
        match spec.layout {
            KeyLayout::Dense { keys } => {
                let (begin, end) = self.routing.dense_bounds(range, keys);
                TableStore::dense(spec, &self.store_options, begin, end)
            }
            KeyLayout::Sparse => {
                let mut store = TableStore::new(spec, &self.store_options)?;
                if let Some(r) = self.routing.ranges.get(range) {
                    store.set_key_range(r.begin, r.last);
                }
                Ok(store)
            }
        }
    }

    /// Admits an authenticated connection: only workers the scheduler numbered, one connection
    /// each.
    pub(super) fn admit_connection(
        &mut self,
        peer: PeerId,
        identity: Option<Identity>,
    ) -> Result<(), String> {
        let Some(id) = identity else {
            return Err("connection without an identity".into());
        };
        if Role::from_wire_index(id.role) == Some(Role::Server) && id.node != Identity::UNASSIGNED {
            return self.admit_server(peer, id.node);
        }
        if Role::from_wire_index(id.role) != Some(Role::Worker) || id.node == Identity::UNASSIGNED {
            return Err(format!(
                "servers take connections from admitted workers and the servers of their \
                 replication chains only, not from {} node {}",
                Role::from_wire_index(id.role).map_or("an unknown role", Role::name),
                id.node
            ));
        }
        if self.workers.values().any(|a| a.node == id.node) {
            return Err(format!("worker node {} is already connected", id.node));
        }
        self.workers.insert(peer, Admitted::new(id.node));
        Ok(())
    }

    /// A worker connection's `Hello`: it gets a key-list cache of the capacity the worker asked
    /// for (capped by the configuration).
    pub(super) fn accept_worker(&mut self, peer: PeerId, node_id: u32, key_cache_keys: u64) {
        tracing::debug!("worker node {node_id} on peer {peer}, key cache {key_cache_keys} keys");
        let keys = self
            .key_cache_cap_keys
            .map_or(key_cache_keys, |cap| cap.min(key_cache_keys));
        self.key_caches.insert(peer, KeyListCache::new(keys));
    }
}
