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
}

impl Request {
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
    ) -> Result<Request, (Header, Refusal)> {
        let h = frame.header;
        let id = (h.table.get(), h.key_signature.get());
        let count = u64::from(h.key_count.get());
        let cache = self.key_caches.get_mut(&peer);
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
            });
        }
        Ok(Request {
            peer,
            frame,
            keys: decoded,
        })
    }

    /// Checks the routing version and that every key is in the range this server (shard) owns
    /// for a table of `layout`.
    pub(super) fn check_owner(
        &self,
        keys: &[u64],
        header: &Header,
        layout: KeyLayout,
    ) -> Result<(), Refusal> {
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
        let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
            return Ok(());
        };
        let rank = self.rank.unwrap_or(u32::MAX);
        let owned = match (layout, self.routing.index_of(rank)) {
            (_, None) => false,
            (KeyLayout::Sparse, Some(i)) => {
                let r = &self.routing.ranges[i];
                r.contains(first) && r.contains(last)
            }
            (KeyLayout::Dense { keys: n }, Some(i)) => {
                let (begin, end) = self.routing.dense_bounds(i, n);
                begin <= first && last < end
            }
        };
        if !owned || first > last {
            return Err(Refusal::new(
                Status::NotOwner,
                format!("keys [{first:#x}, {last:#x}] are not all owned by server {rank}"),
            ));
        }
        Ok(())
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
        let keys = request.keys()?;
        let h = request.frame.header;
        let id = h.table.get();
        let layout = self
            .tables
            .get(&id)
            .ok_or_else(|| {
                Refusal::new(Status::UnknownTable, format!("table {id} is not declared"))
            })?
            .spec()
            .layout;
        self.check_owner(keys, &h, layout)?;
        let store = self.tables.get_mut(&id).ok_or_else(|| {
            Refusal::new(Status::UnknownTable, format!("table {id} is not declared"))
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
