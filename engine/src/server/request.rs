//! Admitting a push or pull: finding its keys (in the frame, decoded once, or in the
//! connection's key-list cache by signature), checking this server owns them, and resolving
//! them to slots through the table's resolution cache.

use std::sync::Arc;

use ferrops_net::codec::keys::decode_keys;
use ferrops_net::codec::KeyCodec;
use ferrops_net::{flags, Frame, Header, PeerId, Status};

use super::{Refusal, Server};
use crate::store::{Access, Resolved, SharedKeys, TableStore};
use crate::table::KeyLayout;

/// A push or pull admitted for processing, with its keys from the frame or the key cache (a
/// list shared with the cache, or compressed keys decoded once).
pub(super) struct Request {
    pub(super) peer: PeerId,
    pub(super) frame: Frame,
    keys: Option<SharedKeys>,
    /// For a push forwarded down a chain, the rank of the server that forwarded it.
    pub(super) from_server: Option<u32>,
}

impl Request {
    /// The keys as a shared list: the connection cache's, or a copy of the frame's.
    pub(super) fn shared_keys(&self) -> Result<SharedKeys, Refusal> {
        match &self.keys {
            Some(k) => Ok(k.clone()),
            None => Ok(Arc::new(self.keys()?.to_vec())),
        }
    }

    pub(super) fn keys(&self) -> Result<&[u64], Refusal> {
        match &self.keys {
            Some(k) => Ok(k),
            None => self
                .frame
                .keys()
                .map_err(|e| Refusal::new(Status::BadKeys, e.to_string())),
        }
    }
}

impl Server {
    /// Finds a request's keys: in the frame, or, for a request that names them by signature, in
    /// this connection's key cache. Every signed request updates the cache exactly as the worker
    /// did when it sent it, whatever happens to the request afterwards.
    pub(super) fn admit(
        &mut self,
        peer: PeerId,
        frame: Frame,
        from_server: Option<u32>,
    ) -> Result<Request, (Header, Refusal)> {
        let h = frame.header;
        let id = (h.table.get(), h.key_signature.get());
        let count = u64::from(h.key_count.get());
        let mut cache = self.key_caches.get_mut(&peer);
        if h.flags & flags::KEYS_BY_SIGNATURE != 0 || id.1 != 0 {
            if let Some(cache) = cache.as_deref_mut() {
                cache.follow_routing(h.routing_version.get());
            }
        }
        if h.flags & flags::KEYS_BY_SIGNATURE != 0 {
            let cached = cache.and_then(|c| c.hit(id, count));
            self.meters.key_cache(cached.is_some());
            let Some(cached) = cached else {
                let msg = format!(
                    "key list {:#018x} ({count} keys) is not cached on this connection",
                    id.1
                );
                return Err((h, Refusal::new(Status::KeysUnknown, msg)));
            };
            return Ok(Request {
                peer,
                frame,
                keys: Some(cached.clone()),
                from_server,
            });
        }
        // Compressed keys are decoded once, here (at most `key_count` of them).
        let decoded = match KeyCodec::from_id(h.key_codec) {
            Ok(KeyCodec::Raw) => None,
            Ok(codec) => Some(Arc::new(
                decode_keys(codec, frame.keys_bytes(), count as usize)
                    .map_err(|e| (h, Refusal::new(Status::BadKeys, e.to_string())))?,
            )),
            Err(e) => return Err((h, Refusal::new(Status::BadKeys, e.to_string()))),
        };
        if let (Some(cache), true) = (cache, id.1 != 0) {
            let keys = match &decoded {
                Some(k) => k.clone(),
                None => Arc::new(
                    frame
                        .keys()
                        .map_err(|e| (h, Refusal::new(Status::BadKeys, e.to_string())))?
                        .to_vec(),
                ),
            };
            cache.access(id, count, || keys.clone());
            return Ok(Request {
                peer,
                frame,
                keys: Some(keys),
                from_server,
            });
        }
        Ok(Request {
            peer,
            frame,
            keys: decoded,
            from_server,
        })
    }

    /// Checks the routing version and that every key is in one range this server (shard)
    /// holds for a table of `layout`: as the range's head for a worker's request, as the next
    /// in its chain for a push forwarded by server `from_server`. Returns the range's index.
    pub(super) fn check_owner(
        &self,
        keys: &[u64],
        header: &Header,
        layout: KeyLayout,
        from_server: Option<u32>,
    ) -> Result<u32, Refusal> {
        let version = header.routing_version.get();
        if version != self.routing.version {
            return Err(Refusal::new(
                Status::NotOwner,
                format!(
                    "routed with version {version}, server has {}",
                    self.routing.version
                ),
            ));
        }
        let rank = self.rank.unwrap_or(u32::MAX);
        let index = match (keys.first(), keys.last()) {
            (Some(&first), Some(&last)) => self.routing.range_holding(layout, first, last),
            // No keys: nothing to check, and nothing to apply.
            _ => match from_server {
                None => self.routing.index_of(rank),
                Some(from) => self
                    .routing
                    .held_by(rank)
                    .find(|&i| self.routing.predecessor(i, rank) == Some(from)),
            },
        };
        let holds = index.is_some_and(|i| match from_server {
            None => self.routing.ranges[i].server == rank,
            Some(from) => self.routing.predecessor(i, rank) == Some(from),
        });
        match index {
            Some(i) if holds => Ok(i as u32),
            _ => {
                let (first, last) = (keys.first().copied(), keys.last().copied());
                let whose = match from_server {
                    None => format!("served by server {rank}"),
                    Some(from) => {
                        format!("forwarded by server {from} to server {rank} in their chain")
                    }
                };
                Err(Refusal::new(
                    Status::NotOwner,
                    format!("keys [{first:#x?}, {last:#x?}] are not all in one range {whose}"),
                ))
            }
        }
    }

    /// Forgets the resolution caches of every table's store of `range`: a server promoted to
    /// its head resolves the lists workers now send it afresh rather than trusting what it
    /// cached as a replica.
    pub(super) fn forget_resolutions_of(&mut self, range: u32) {
        self.tables
            .iter_mut()
            .filter(|((_, r), _)| *r == range)
            .for_each(|(_, store)| store.forget_resolutions());
    }

    /// The spec of table `id` (the same in every range's store).
    pub(super) fn table_spec(&self, id: u32) -> Result<&crate::table::TableSpec, Refusal> {
        self.tables
            .range((id, 0)..=(id, u32::MAX))
            .next()
            .map(|(_, store)| store.spec())
            .ok_or_else(|| {
                Refusal::new(Status::UnknownTable, format!("table {id} is not declared"))
            })
    }

    /// The range a request's keys belong to, checked (see [`Server::check_owner`]).
    pub(super) fn owner_range(&self, request: &Request) -> Result<u32, Refusal> {
        let h = request.frame.header;
        let layout = self.table_spec(h.table.get())?.layout;
        self.check_owner(request.keys()?, &h, layout, request.from_server)
    }

    /// The request's table, keys (ownership checked) and their slots (for reading: keys never
    /// pushed get none of their own, see `TableStore::resolve_for_read`). A list from the
    /// connection's key cache is resolved by its shared allocation; when the table's resolution
    /// cache holds an equal list under another allocation (another connection sent it first),
    /// the key cache takes that one, so its later hits are recognised without comparing keys.
    pub(super) fn resolve<'r>(
        &mut self,
        request: &'r Request,
        access: Access,
    ) -> Result<(&mut TableStore, &'r [u64], Arc<Resolved>), Refusal> {
        let range = self.owner_range(request)?;
        self.resolve_in(request, access, range)
    }

    /// [`Server::resolve`] for a request whose range (`owner_range`) is known.
    pub(super) fn resolve_in<'r>(
        &mut self,
        request: &'r Request,
        access: Access,
        range: u32,
    ) -> Result<(&mut TableStore, &'r [u64], Arc<Resolved>), Refusal> {
        let keys = request.keys()?;
        let h = request.frame.header;
        let id = h.table.get();
        let store = self.tables.get_mut(&(id, range)).ok_or_else(|| {
            Refusal::new(
                Status::UnknownTable,
                format!("table {id} is not declared for range {range}"),
            )
        })?;
        let signature = h.key_signature.get();
        let Some(shared) = &request.keys else {
            let resolved = match access {
                Access::Write => store.resolve(signature, keys)?,
                Access::Read => store.resolve_for_read(signature, keys)?,
            };
            return Ok((store, keys, resolved));
        };
        let (resolved, held) = store.resolve_shared(signature, shared, access)?;
        if let Some(held) = held.filter(|held| !Arc::ptr_eq(held, shared)) {
            let cached = self
                .key_caches
                .get_mut(&request.peer)
                .and_then(|c| c.peek_mut((id, signature)));
            if let Some(entry) = cached.filter(|entry| Arc::ptr_eq(entry, shared)) {
                *entry = held;
            }
        }
        Ok((store, keys, resolved))
    }
}
