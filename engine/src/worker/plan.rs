//! The planning that pushes and pulls share: check a request's keys (sorted, unique, inside a
//! dense table), slice them by routing range with binary search (keys are never copied), sign
//! each server's part when the table caches key lists, and build each part's frame with the
//! key encoding that connection's key cache and packing switch call for.

use std::ops::Range;

use ferrops_net::codec::keys::encode_keys;
use ferrops_net::codec::{choose_key_codec, KeyCodec};
use ferrops_net::{flags, FrameParts, Header};
use zerocopy::IntoBytes;

use super::io::ClientIo;
use super::SIGNED_MIN_KEYS;
use crate::filter::ReducerStats;
use crate::key_list::{check_and_sign, check_sorted_unique, KeyList, KeyListError};
use crate::routing::RoutingTable;
use crate::table::{KeyLayout, TableSpec};
use crate::EngineError;

/// A request's keys: a slice, which may have changed since the last request and so is checked
/// and signed each time, or a [`KeyList`], checked when it was made and signed once per slice.
#[derive(Clone, Copy)]
pub(super) enum Keys<'a> {
    Slice(&'a [u64]),
    Checked(&'a KeyList),
}

impl<'a> Keys<'a> {
    pub fn as_slice(self) -> &'a [u64] {
        match self {
            Keys::Slice(keys) => keys,
            Keys::Checked(list) => list.keys(),
        }
    }
}

/// A request's keys sliced by server: which routing range each part falls in, the part's key
/// indices, and its signature (0: unsigned).
pub(super) struct Plan {
    parts: Vec<(usize, Range<usize>)>,
    signatures: Vec<u64>,
}

/// One server's share of a request.
pub(super) struct Part {
    pub server: u32,
    /// The indices of the part's keys in the request's key list.
    pub idx: Range<usize>,
    pub signature: u64,
}

impl Plan {
    /// Checks `keys` against the table's layout, slices them by `routing` and checks and signs
    /// every part. Nothing is sent before this succeeds.
    ///
    /// A [`KeyList`] is not read again: it was checked when it was made, and its parts'
    /// signatures are the ones it remembers (computed the first time a routing cut it so).
    pub fn new(
        routing: &RoutingTable,
        spec: &TableSpec,
        keys: Keys<'_>,
    ) -> Result<Plan, EngineError> {
        let slice = keys.as_slice();
        check_layout(spec.layout, slice)?;
        let parts = routing.slice_for(spec.layout, slice);
        let signatures = match keys {
            Keys::Slice(keys) => check_and_sign_parts(keys, &parts)?,
            Keys::Checked(list) if spec.key_caching && list.len() >= SIGNED_MIN_KEYS => parts
                .iter()
                .map(|(_, idx)| list.signature(idx.clone()))
                .collect(),
            Keys::Checked(_) => vec![0; parts.len()],
        };
        let signatures = sign_if_caching(spec.key_caching, signatures);
        Ok(Plan { parts, signatures })
    }

    /// The parts, in key order, with the server each goes to.
    pub fn parts<'a>(&'a self, routing: &'a RoutingTable) -> impl Iterator<Item = Part> + 'a {
        self.parts
            .iter()
            .zip(&self.signatures)
            .map(|((range, idx), &signature)| Part {
                server: routing.ranges[*range].server,
                idx: idx.clone(),
                signature,
            })
    }
}

/// A dense table's keys must lie in `0..keys` (sortedness is checked with the signature).
fn check_layout(layout: KeyLayout, keys: &[u64]) -> Result<(), EngineError> {
    if let (KeyLayout::Dense { keys: n }, Some(&last)) = (layout, keys.last()) {
        if last >= n {
            let first = keys.first().copied().unwrap_or(last);
            return Err(KeyListError::OutOfRange {
                first,
                last,
                begin: 0,
                end: n,
            }
            .into());
        }
    }
    Ok(())
}

/// Checks that the whole list is sorted and unique (each server's part, and the boundaries
/// between parts) and signs each part long enough to be worth caching (0: unsigned), reading
/// every key once. Nothing is sent before this succeeds.
fn check_and_sign_parts(
    keys: &[u64],
    parts: &[(usize, Range<usize>)],
) -> Result<Vec<u64>, EngineError> {
    let signed = keys.len() >= SIGNED_MIN_KEYS;
    let mut signatures = Vec::with_capacity(parts.len());
    for (_, idx) in parts {
        let part = &keys[idx.clone()];
        if idx.start > 0 && keys[idx.start - 1] >= keys[idx.start] {
            check_sorted_unique(&keys[idx.start - 1..=idx.start])
                .map_err(|e| e.shifted(idx.start - 1))?;
        }
        let signature = if signed {
            check_and_sign(part).map_err(|e| e.shifted(idx.start))?
        } else {
            check_sorted_unique(part).map_err(|e| e.shifted(idx.start))?;
            0
        };
        signatures.push(signature);
    }
    Ok(signatures)
}

/// The frame of one server's share of a request. A signed list the key cache of the
/// connection to `server` says that server holds travels as its signature alone; other lists
/// are delta + bit packed into `key_buf` when that pays (and both the connection and the
/// table, `table_packing`, allow it), raw otherwise.
pub(super) fn part_frame<'a>(
    mut header: Header,
    request: u64,
    keys: &'a [u64],
    signature: u64,
    (io, server, table_packing): (&mut ClientIo, u32, bool),
    key_buf: &'a mut Vec<u8>,
    stats: &mut ReducerStats,
) -> Result<FrameParts<'a>, EngineError> {
    let packing = io.key_packing && table_packing;
    // A head this worker could not dial has no connection, so no cache: the request fails
    // over like one to any lost server.
    let cache = io
        .inbound
        .key_caches
        .get_mut(server as usize)
        .ok_or(EngineError::ServerLost(server))?;
    header.request_id = request.into();
    header.key_count = (keys.len() as u32).into();
    header.key_signature = signature.into();
    if signature != 0 && !keys.is_empty() {
        cache.follow_routing(header.routing_version.get());
        let id = (header.table.get(), signature);
        if cache.access(id, keys.len() as u64, || ()).is_some() {
            header.flags |= flags::KEYS_BY_SIGNATURE;
            stats.key_cached.record(keys.len() * 8, 0);
            return Ok(FrameParts::header_only(header));
        }
    }
    let codec = if packing {
        choose_key_codec(keys)
    } else {
        KeyCodec::Raw
    };
    let wire_keys: &[u8] = if codec == KeyCodec::Raw {
        keys.as_bytes()
    } else {
        key_buf.clear();
        encode_keys(codec, keys, key_buf).map_err(codec_error)?;
        header.key_codec = codec.id();
        key_buf
    };
    stats.record_keys(codec, keys.len() * 8, wire_keys.len());
    Ok(FrameParts {
        header,
        keys: wire_keys,
        values: &[],
        extra: &[],
    })
}

/// A table without key caching sends every list whole: no part carries a signature (the
/// server caches only signed lists).
fn sign_if_caching(caching: bool, mut signatures: Vec<u64>) -> Vec<u64> {
    if !caching {
        signatures.iter_mut().for_each(|s| *s = 0);
    }
    signatures
}

pub(super) fn codec_error(e: ferrops_net::codec::CodecError) -> EngineError {
    EngineError::Config(format!("cannot encode: {e}"))
}
