//! The fold's read of a tenant's log: frames as [`EventView`]s, for the projector.
//!
//! A fold needs neither the chain hashes nor owned copies of the ids and texts, which are most
//! of what [`TenantReader::events`] costs per event. This path hands out each frame's events
//! borrowed from the frame's bytes, decoded only as far as a fold reads them
//! ([`decode_body_view`]), and computes no hash.
//!
//! Invariants (those of [`super`]): the scan stays inside the tenant's prefix and stops at the
//! durable frontier the reader was made with; every frame is checked before its events are
//! handed out: checksum, tenant, consecutive `tenant_seq`s from the key's, whole groups (each
//! one session with consecutive seqs; one group in a frame of version 1), and valid ids (checked
//! once per group, and again only for a channel that differs from the record before). A long
//! range is read ahead on a second thread (`read_ahead`), in bounded batches, handed over in
//! order.

use std::ops::{Range, RangeInclusive};

use zeroize::{Zeroize, Zeroizing};

use super::{read_error, sled_panicked, TenantReader};
use crate::events::codec::{
    decode_body_view_after, decode_frame, open_view_into, overlay_view, KeySource, SealedRef,
    FRAME_VERSION_GROUPS,
};
use crate::events::keyring::OpenKeys;
use crate::events::keys;
use crate::events::log::contain::contained;
use crate::events::log::ReadError;
use crate::events::schema::{same_str, EventView};
use crate::events::seal::{DataKey, SealScope};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// Ranges of at least this many events are read on a thread of their own while the caller's
/// thread decodes and folds (a rebuild, a long catch-up); shorter ones (the live catch-ups of
/// a few hundred events) are not worth the thread.
const PIPELINE_EVENTS_MIN: u64 = 4096;
/// Frames the reading thread hands over at a time, at most.
const PIPELINE_BATCH_FRAMES: usize = 256;
/// Bytes of frames the reading thread hands over at a time, at most (frames of several
/// groups are up to `codec::FRAME_COALESCE_BYTES` each, and a large group's alone more).
const PIPELINE_BATCH_BYTES: usize = 1 << 20;
/// Batches that may wait for the folding thread: bounds the memory of a fold that is slower
/// than the reads.
const PIPELINE_BATCHES_QUEUED: usize = 4;

/// A fold of groups handed over with the data key that opened them
/// ([`TenantReader::fold_frames_keyed`]).
pub type KeyedFold<'f, E> = dyn FnMut(&[EventView<'_>], Option<&DataKey>) -> Result<(), E> + 'f;

/// A frame's key and value as sled returned them.
type RawFrame = (sled::IVec, sled::IVec);

impl TenantReader {
    /// Calls `fold` with the events of each append group (one session, consecutive seqs; a
    /// frame holds one or several) with `tenant_seq` in `range`, in log order, as
    /// [`EventView`]s borrowed from the frame. Events past the durable frontier are not read.
    /// Stops at the first error, the log's (as `E`) or `fold`'s.
    ///
    /// A long range is read ahead on a second thread (sled's iteration is over a third of a
    /// rebuild's time), in bounded batches, while this one decodes and folds; the order and
    /// the checks are the same either way.
    pub fn fold_frames<E: From<ReadError>>(
        &self,
        range: RangeInclusive<u64>,
        fold: &mut dyn FnMut(&[EventView<'_>]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.fold_frames_keyed(range, &mut |events, _| fold(events))
    }

    /// [`TenantReader::fold_frames`], handing each group over with the data key that opened
    /// its sealed parts (`None`: it has none, or its key is gone and they read as erased).
    /// A read model sealed under that key is sealed under the key its plain fields came from,
    /// even when an erasure destroys the key before the fold commits: the fold never looks
    /// the key up again and never stores an opened field plain.
    pub fn fold_frames_keyed<E: From<ReadError>>(
        &self,
        range: RangeInclusive<u64>,
        fold: &mut KeyedFold<'_, E>,
    ) -> Result<(), E> {
        self.fold_frames_reading(range, PIPELINE_EVENTS_MIN, fold)
    }

    /// [`TenantReader::fold_frames`], reading ahead on a second thread when the range (cut at
    /// the frontier) spans at least `ahead_from` events.
    fn fold_frames_reading<E: From<ReadError>>(
        &self,
        range: RangeInclusive<u64>,
        ahead_from: u64,
        fold: &mut KeyedFold<'_, E>,
    ) -> Result<(), E> {
        let range = *range.start()..=(*range.end()).min(self.parts.limit);
        if range.is_empty() {
            return Ok(());
        }
        let ahead = range.end() - range.start() >= ahead_from;
        let tree = self.parts.tree.as_ref().map_err(|e| E::from(e.clone()))?;
        let tenant = &self.tenant;
        let keys = self.parts.open_keys();
        let mut opened = Opened::default();
        let mut one = |(key, value): RawFrame| -> Result<(), E> {
            let (mut views, sealed) = frame_views(tenant, &key, &value)?;
            opened.start_frame(&sealed);
            let mut at = 0;
            while at < views.len() {
                let end = at + group_len(&views[at..]);
                let group = (&views[at..end], &sealed[at..end]);
                opened.open_group(tenant, &key, group, keys.as_ref())?;
                at = end;
            }
            let folded = opened.fold_groups(tenant, &key, &range, &mut views, fold);
            opened.end_frame();
            folded
        };
        if !ahead {
            let mut failed = None;
            scan(tree, tenant, &range, &mut |frame| match one(frame) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })?;
            return failed.map_or(Ok(()), Err);
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_BATCHES_QUEUED);
            let reader = std::thread::Builder::new()
                .name("tenantry-fold-read".into())
                .spawn_scoped(scope, || read_ahead(tree, tenant, &range, tx))
                .map_err(|e| {
                    E::from(ReadError {
                        tenant: tenant.clone(),
                        position: "frame scan".into(),
                        detail: format!("cannot start the reading thread: {e}"),
                    })
                })?;
            // On an early return (`fold` failed) `rx` is dropped first, so a reader blocked
            // sending stops, and the scope's join of it returns.
            for batch in &rx {
                for frame in batch {
                    one(frame)?;
                }
            }
            match reader.join() {
                Ok(scanned) => scanned.map_err(E::from),
                Err(_) => Err(E::from(sled_panicked(
                    tenant,
                    "frame scan",
                    "reading thread",
                ))),
            }
        })
    }
}

/// The reading thread of a long fold: hands `range`'s frames to `tx` in batches of
/// [`PIPELINE_BATCH_FRAMES`]; stops early, without error, once the receiver is gone.
fn read_ahead(
    tree: &sled::Tree,
    tenant: &TenantId,
    range: &RangeInclusive<u64>,
    tx: std::sync::mpsc::SyncSender<Vec<RawFrame>>,
) -> Result<(), ReadError> {
    let mut batch = Vec::with_capacity(PIPELINE_BATCH_FRAMES);
    let mut bytes = 0;
    let mut open = true;
    scan(tree, tenant, range, &mut |frame| {
        bytes += frame.1.len();
        batch.push(frame);
        if batch.len() == PIPELINE_BATCH_FRAMES || bytes >= PIPELINE_BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PIPELINE_BATCH_FRAMES));
            bytes = 0;
            open = tx.send(full).is_ok();
        }
        open
    })?;
    if open && !batch.is_empty() {
        // A receiver gone by now stopped on its own (an error it returns itself).
        let _ = tx.send(batch);
    }
    Ok(())
}

/// Hands `each` the tenant's frames (key and value) that hold events of `range`, in key order,
/// until the range ends or `each` returns `false`. sled's panics on damaged files are errors.
fn scan(
    tree: &sled::Tree,
    tenant: &TenantId,
    range: &RangeInclusive<u64>,
    each: &mut dyn FnMut(RawFrame) -> bool,
) -> Result<(), ReadError> {
    let (start, end) = keys::frame_range(tenant);
    let from = keys::frame_key(tenant, *range.start());
    // The frame holding `range.start()` may begin before it.
    let before = contained(|| tree.range(start..=from.clone()).next_back())
        .map_err(|e| sled_panicked(tenant, "frame scan", &e))?;
    let first = match before {
        Some(Ok((k, _))) => k.to_vec(),
        _ => from,
    };
    let mut frames = tree.range(first..end);
    loop {
        let next =
            contained(|| frames.next()).map_err(|e| sled_panicked(tenant, "frame scan", &e))?;
        let Some(next) = next else {
            return Ok(());
        };
        let (key, value) = next.map_err(|e| ReadError {
            tenant: tenant.clone(),
            position: "frame scan".into(),
            detail: e.to_string(),
        })?;
        if keys::frame_key_seq(&key, tenant).is_some_and(|s| s > *range.end()) {
            return Ok(());
        }
        if !each((key, value)) {
            return Ok(());
        }
    }
}

/// How many of `views` belong to the first one's group: its run of one session's events (a
/// frame holds each session's events as one run: `codec`).
fn group_len(views: &[EventView<'_>]) -> usize {
    let Some(first) = views.first() else {
        return 0;
    };
    views.iter().take_while(|v| v.same_session(first)).count()
}

/// One frame's opened sealed parts, in buffers every frame of a fold reuses.
#[derive(Default)]
struct Opened {
    /// The personal fields of the frame's events, opened one after another (zeroed once the
    /// frame is folded, and when dropped).
    bytes: Zeroizing<Vec<u8>>,
    /// Each event's fields in `bytes` (`None`: no sealed part, or its key is gone and its
    /// personal fields stay empty, erased).
    spans: Vec<Option<Range<usize>>>,
    /// Each group's end in the frame's events and the data key that opened its parts.
    groups: Vec<(usize, Option<DataKey>)>,
    /// The associated data of the part being opened.
    aad: Vec<u8>,
}

impl Opened {
    /// Makes room for every sealed part of a frame at once: `bytes` is not moved while it
    /// holds plaintext, so no copy of it is freed unzeroed.
    fn start_frame(&mut self, sealed: &[Option<SealedRef<'_>>]) {
        self.bytes.clear();
        self.spans.clear();
        self.groups.clear();
        let room = sealed.iter().flatten().map(|p| p.sealed.len()).sum();
        self.bytes.reserve(room);
    }

    /// Zeroes what the frame opened.
    fn end_frame(&mut self) {
        self.bytes.as_mut_slice().zeroize();
        self.bytes.clear();
    }

    /// Opens the sealed parts of the next group's views (one session: one key), with the
    /// data key `keys` has for it.
    fn open_group(
        &mut self,
        tenant: &TenantId,
        key: &[u8],
        (views, sealed): (&[EventView<'_>], &[Option<SealedRef<'_>>]),
        keys: Option<&OpenKeys>,
    ) -> Result<(), ReadError> {
        let data_key = match (keys, views.first()) {
            (Some(keys), Some(first)) if sealed.iter().any(Option::is_some) => {
                let scope = SealScope {
                    tenant: first.tenant,
                    env: first.env,
                    team: first.team,
                    session: first.session,
                };
                keys.data_key(&scope)
                    .map_err(|e| read_error(tenant, key, e))?
            }
            _ => None,
        };
        for (view, part) in views.iter().zip(sealed) {
            let span = match (part, &data_key) {
                (Some(part), Some(k)) => Some(
                    open_view_into(view, part, k, &mut self.aad, &mut self.bytes)
                        .map_err(|e| read_error(tenant, key, e))?,
                ),
                _ => None,
            };
            self.spans.push(span);
        }
        let end = self.spans.len();
        self.groups.push((end, data_key));
        Ok(())
    }

    /// Puts each of the frame's `views` its opened fields and hands `fold` the part of each
    /// group that lies in `range`, with the group's key.
    fn fold_groups<'v, E: From<ReadError>>(
        &'v self,
        tenant: &TenantId,
        key: &[u8],
        range: &RangeInclusive<u64>,
        views: &mut [EventView<'v>],
        fold: &mut KeyedFold<'_, E>,
    ) -> Result<(), E> {
        for (view, span) in views.iter_mut().zip(&self.spans) {
            if let Some(span) = span {
                let fields = self.bytes.get(span.clone()).unwrap_or_default();
                overlay_view(view, fields).map_err(|e| read_error(tenant, key, e))?;
            }
        }
        let mut start = 0;
        for (end, data_key) in &self.groups {
            // A frame's tenant_seqs are consecutive: the group's part in `range` is one run.
            let group = &views[start..*end];
            start = *end;
            let from = group.partition_point(|v| v.tenant_seq < *range.start());
            let to = group.partition_point(|v| v.tenant_seq <= *range.end());
            if from < to {
                fold(&group[from..to], data_key.as_ref())?;
            }
        }
        Ok(())
    }
}

/// Decodes a frame into [`EventView`]s (and their sealed parts) with the checks of
/// `decode_frame_events` (this tenant, consecutive tenant_seqs from the key's, whole groups)
/// plus the ids' rules, which the full decode checks by parsing each id.
type FrameViews<'a> = (Vec<EventView<'a>>, Vec<Option<SealedRef<'a>>>);

fn frame_views<'a>(
    tenant: &TenantId,
    key: &[u8],
    value: &'a [u8],
) -> Result<FrameViews<'a>, ReadError> {
    let first_seq = keys::frame_key_seq(key, tenant)
        .ok_or_else(|| read_error(tenant, key, "malformed frame key"))?;
    let frame = decode_frame(value).map_err(|e| read_error(tenant, key, e))?;
    let groups = frame.version == FRAME_VERSION_GROUPS;
    let mut out: Vec<EventView<'a>> = Vec::with_capacity(frame.bodies.len());
    let mut sealed = Vec::with_capacity(frame.bodies.len());
    for (i, body) in frame.bodies.iter().enumerate() {
        // The ids of the record before are borrowed when equal: checked once per frame.
        let (view, part) = decode_body_view_after(body, out.last())
            .map_err(|e| read_error(tenant, key, format!("record {i}: {e}")))?;
        let expected_tenant_seq = first_seq + i as u64;
        if view.tenant != tenant.as_str() || view.tenant_seq != expected_tenant_seq {
            return Err(read_error(
                tenant,
                key,
                format!(
                    "record {i} claims tenant {} tenant_seq {}, expected {tenant} {expected_tenant_seq}",
                    view.tenant, view.tenant_seq
                ),
            ));
        }
        let continues = out.last().map(|before| {
            let same_session = before.same_session(&view);
            let continues = same_session && view.seq == before.seq + 1;
            (
                same_session,
                continues,
                same_str(before.channel, view.channel),
            )
        });
        let ids_ok = match continues {
            // The first record of a group: every id checked.
            None | Some((false, _, _)) if groups || out.is_empty() => {
                EnvId::is_valid(view.env)
                    && TeamId::is_valid(view.team)
                    && SessionId::is_valid(view.session)
                    && ChannelId::is_valid(view.channel)
            }
            Some((_, true, same_channel)) => same_channel || ChannelId::is_valid(view.channel),
            _ => {
                return Err(read_error(
                    tenant,
                    key,
                    format!("record {i} breaks the group's session or seq"),
                ));
            }
        };
        if !ids_ok {
            return Err(read_error(
                tenant,
                key,
                format!("record {i} holds an invalid env, team, channel or session id"),
            ));
        }
        out.push(view);
        sealed.push(part);
    }
    Ok((out, sealed))
}

#[cfg(test)]
mod tests;
