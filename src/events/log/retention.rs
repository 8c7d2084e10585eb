//! Retention: a tenant's oldest frames trimmed, and the chain re-anchored where the log now
//! starts (docs/storage.md#retention).
//!
//! A trim removes whole frames (append groups), oldest first, while every event of the frame is
//! older than the cutoff; it stops at the first younger frame, so what remains is a suffix of the
//! tenant's chain. In the same sled batch it removes the trimmed frames' session index entries,
//! the signed chain heads at or below the last trimmed `tenant_seq`, the meta and open-session
//! key of every session left without events, and replaces the tenant's anchor record
//! `{t}\0 A` ([`RetentionAnchor`]): a crash leaves the old state or the new one, never frames
//! gone without their anchor.
//!
//! The trim reads beside the writer and writes each batch through it, as tenant ops
//! ([`EventLog::apply_tenant_ops_blocking`]): the writer only adds frames past the head and never
//! rewrites an old one, and the trim never removes the last frame at or before the durable
//! frontier, so the tenant's head (read from its last frame at open) is never trimmed. With the
//! JetStream backend the ops reach the stream, so every node's cache trims the same, and a trim
//! that removed frames then compacts the tenant's records
//! ([`EventLog::compact_tenant_records_blocking`]), so the trimmed frames leave the stream too. In
//! a cluster only the node that owns the tenant trims it ([`TrimError::NotOwner`] elsewhere).
//!
//! Invariant: after any trim, the tenant's first frame starts at the anchor's
//! `first_tenant_seq` and its first event's `prev_hash` is the anchor's `prev_hash`.

use std::collections::BTreeMap;

use serde_bytes::ByteBuf;

use super::read::decode_frame_events;
use super::replica::Op;
use super::{AppendError, EventLog, ReadError, SessionMeta, StoredEvent};
use crate::events::codec::Hash;
use crate::events::keys;
use crate::events::schema::decode_limited;
use crate::tenancy::TenantId;

/// Frames one trim batch removes at most (one sled batch; appends wait for none of it).
pub const TRIM_BATCH_FRAMES: usize = 512;

/// The anchor record's format version.
const ANCHOR_VERSION: u8 = 1;
/// `version (1) | first_tenant_seq (8) | prev_hash (32) | trimmed (8) | last_trimmed_at_ms (8)
/// | trimmed_at_ms (8)`, big-endian numbers.
const ANCHOR_BYTES: usize = 1 + 8 + 32 + 8 + 8 + 8;

/// Where a trimmed tenant's log starts: the stored record `{t}\0 A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionAnchor {
    /// The first kept `tenant_seq` (= `trimmed` + 1).
    pub first_tenant_seq: u64,
    /// The hash of the last trimmed event: the first kept event's `prev_hash`.
    pub prev_hash: Hash,
    /// Events trimmed so far, over every trim.
    pub trimmed: u64,
    /// `at_ms` of the last trimmed event.
    pub last_trimmed_at_ms: u64,
    /// When the last trim ran (unix ms).
    pub trimmed_at_ms: u64,
}

impl RetentionAnchor {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ANCHOR_BYTES);
        v.push(ANCHOR_VERSION);
        v.extend_from_slice(&self.first_tenant_seq.to_be_bytes());
        v.extend_from_slice(&self.prev_hash);
        v.extend_from_slice(&self.trimmed.to_be_bytes());
        v.extend_from_slice(&self.last_trimmed_at_ms.to_be_bytes());
        v.extend_from_slice(&self.trimmed_at_ms.to_be_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Option<RetentionAnchor> {
        if bytes.len() != ANCHOR_BYTES || bytes.first() != Some(&ANCHOR_VERSION) {
            return None;
        }
        let be = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(RetentionAnchor {
            first_tenant_seq: be(1)?,
            prev_hash: bytes.get(9..41)?.try_into().ok()?,
            trimmed: be(41)?,
            last_trimmed_at_ms: be(49)?,
            trimmed_at_ms: be(57)?,
        })
    }
}

/// Reads the tenant's anchor from `tree`; `None` when nothing was ever trimmed.
pub(super) fn read_anchor(
    tree: &sled::Tree,
    tenant: &TenantId,
) -> Result<Option<RetentionAnchor>, ReadError> {
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: "retention anchor".into(),
        detail,
    };
    let key = keys::retention_anchor_key(tenant);
    let value = super::contain::contained(|| tree.get(&key))
        .map_err(err)?
        .map_err(|e| err(e.to_string()))?;
    value
        .map(|v| RetentionAnchor::decode(&v).ok_or_else(|| err("malformed record".to_owned())))
        .transpose()
}

/// Whether the frame at `tenant_seq` lies before the tenant's retention anchor (was trimmed).
/// An unreadable anchor counts as not trimmed, so the caller reports the missing frame.
pub(super) fn trimmed(tree: &sled::Tree, tenant: &TenantId, tenant_seq: u64) -> bool {
    read_anchor(tree, tenant)
        .ok()
        .flatten()
        .is_some_and(|a| tenant_seq < a.first_tenant_seq)
}

/// Why a trim could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    /// In a cluster: another node owns the tenant and trims it; nothing was changed here.
    #[error("tenant {0} is owned by another node, which trims it")]
    NotOwner(TenantId),
    /// Writing a batch (or, with JetStream, compacting the tenant's records) failed; the
    /// batches written before it stay trimmed.
    #[error(transparent)]
    Write(#[from] AppendError),
    /// A record could not be read or the batch could not be written; nothing was changed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What one call of [`EventLog::trim`] did for a tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Events removed by this call.
    pub events: u64,
    /// Frames removed by this call.
    pub frames: u64,
    /// Batches written.
    pub batches: u64,
    /// The anchor after the trim (`None`: the tenant was never trimmed).
    pub anchor: Option<RetentionAnchor>,
    /// With JetStream: the tenant's records purged from the stream by the compaction after the
    /// trim (0 with sled).
    pub purged_records: u64,
}

impl EventLog {
    /// Trims `tenant`'s frames whose every event is older than `cutoff_ms` (`at_ms <
    /// cutoff_ms`), oldest first, in batches of at most [`TRIM_BATCH_FRAMES`] frames, each with
    /// its anchor (see the module). `now_ms` is recorded as the trim's time. Blocks on storage:
    /// run it off the actors' threads.
    pub fn trim(
        &self,
        tenant: &TenantId,
        cutoff_ms: u64,
        now_ms: u64,
    ) -> Result<TrimReport, TrimError> {
        if !self.owns(tenant) {
            return Err(TrimError::NotOwner(tenant.clone()));
        }
        let mut report = self.trim_batches(tenant, (cutoff_ms, now_ms))?;
        if report.frames > 0 {
            // A no-op with sled; with JetStream the trimmed frames leave the stream.
            let compacted = self.compact_tenant_records_blocking(tenant)?;
            report.purged_records = compacted.purged;
        }
        Ok(report)
    }

    /// The trim's batches, each written through the writer.
    fn trim_batches(&self, tenant: &TenantId, times: (u64, u64)) -> Result<TrimReport, TrimError> {
        let mut report = TrimReport::default();
        loop {
            let parts = self.inner.shared.reader(tenant);
            let tree = parts.tree.clone()?;
            let step = trim_batch(&tree, tenant, parts.limit, times)?;
            if step.frames == 0 {
                report.anchor = step.anchor;
                return Ok(report);
            }
            self.apply_tenant_ops_blocking(tenant, step.ops)?;
            report.anchor = step.anchor;
            report.events += step.events;
            report.frames += step.frames;
            report.batches += 1;
            tracing::info!(
                tenant = %tenant,
                events = step.events,
                first_kept_tenant_seq = step.anchor.map_or(0, |a| a.first_tenant_seq),
                "retention: trimmed a batch of frames"
            );
            if step.frames < TRIM_BATCH_FRAMES as u64 {
                return Ok(report);
            }
        }
    }

    /// The tenant's retention anchor (`None`: never trimmed).
    pub fn retention_anchor(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<RetentionAnchor>, ReadError> {
        let parts = self.inner.shared.reader(tenant);
        read_anchor(&parts.tree?, tenant)
    }
}

impl super::ScopedReader {
    /// The retention anchor of this scope's tenant (`None`: never trimmed).
    pub fn retention_anchor(&self) -> Result<Option<RetentionAnchor>, ReadError> {
        read_anchor(&self.parts.tree.clone()?, &self.ctx.tenant)
    }
}

/// One batch of a trim.
struct Step {
    events: u64,
    frames: u64,
    anchor: Option<RetentionAnchor>,
    /// The batch's writes, for the writer.
    ops: Vec<Op>,
}

/// Writes collected for one trim batch.
#[derive(Default)]
struct Batch(Vec<Op>);

impl Batch {
    fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push((ByteBuf::from(key.into()), None));
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0
            .push((ByteBuf::from(key), Some(ByteBuf::from(value))));
    }
}

/// Chooses up to [`TRIM_BATCH_FRAMES`] frames and the writes that remove them.
fn trim_batch(
    tree: &sled::Tree,
    tenant: &TenantId,
    limit: u64,
    (cutoff_ms, now_ms): (u64, u64),
) -> Result<Step, ReadError> {
    let mut anchor = read_anchor(tree, tenant)?;
    let frames = trimmable(tree, tenant, limit, cutoff_ms)?;
    let Some(last) = frames.last().and_then(|(_, events)| events.last()) else {
        return Ok(Step {
            events: 0,
            frames: 0,
            anchor,
            ops: Vec::new(),
        });
    };
    let mut batch = Batch::default();
    let mut events = 0u64;
    // Per session touched: the highest first seq of its removed index entries.
    let mut sessions: BTreeMap<Vec<u8>, (u64, &StoredEvent)> = BTreeMap::new();
    for (key, frame) in &frames {
        batch.remove(key.clone());
        events += frame.len() as u64;
        // Each group's first event: a frame holds whole groups, each session's as one run.
        let mut before: Option<&crate::events::schema::Event> = None;
        for first in frame {
            let e = &first.event;
            let starts = before
                .is_none_or(|b| (&b.session, &b.team, &b.env) != (&e.session, &e.team, &e.env));
            before = Some(e);
            if !starts {
                continue;
            }
            let prefix = keys::session_index_prefix(tenant, &e.env, &e.team, &e.session);
            batch.remove(keys::session_index_key(&prefix, e.seq));
            sessions.insert(prefix, (e.seq, first));
        }
    }
    let last_seq = last.event.tenant_seq;
    let (heads, _) = keys::signed_head_range(tenant);
    for key in tree
        .range(heads..=keys::signed_head_key(tenant, last_seq))
        .keys()
    {
        batch.remove(
            key.map_err(|e| sled_err(tenant, "signed heads", &e))?
                .to_vec(),
        );
    }
    for (prefix, (seq, first)) in &sessions {
        forget_if_empty(tree, tenant, (prefix, *seq), &first.event, &mut batch)?;
    }
    let trimmed = anchor.map_or(0, |a| a.trimmed) + events;
    let next = RetentionAnchor {
        first_tenant_seq: last_seq + 1,
        prev_hash: last.hash,
        trimmed,
        last_trimmed_at_ms: last.event.at_ms,
        trimmed_at_ms: now_ms,
    };
    batch.insert(keys::retention_anchor_key(tenant), next.encode());
    anchor = Some(next);
    Ok(Step {
        events,
        frames: frames.len() as u64,
        anchor,
        ops: batch.0,
    })
}

fn sled_err(tenant: &TenantId, position: &str, e: &sled::Error) -> ReadError {
    ReadError {
        tenant: tenant.clone(),
        position: position.to_owned(),
        detail: e.to_string(),
    }
}

/// A frame's key and its events.
type KeyedFrame = (Vec<u8>, Vec<StoredEvent>);

/// The oldest frames (at most [`TRIM_BATCH_FRAMES`]) whose every event is before `cutoff_ms`,
/// never the last frame at or before the frontier `limit`.
fn trimmable(
    tree: &sled::Tree,
    tenant: &TenantId,
    limit: u64,
    cutoff_ms: u64,
) -> Result<Vec<KeyedFrame>, ReadError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let (start, _) = keys::frame_range(tenant);
    let upto = keys::frame_key(tenant, limit);
    // A frame is taken once a later durable frame is seen: the last one always stays.
    let mut pending: Option<KeyedFrame> = None;
    for entry in tree.range(start..=upto) {
        let (key, value) = entry.map_err(|e| sled_err(tenant, "frame scan", &e))?;
        if let Some(prev) = pending.take() {
            out.push(prev);
            if out.len() >= TRIM_BATCH_FRAMES {
                break;
            }
        }
        let events = decode_frame_events(tenant, &key, &value, None)?;
        if !events.iter().all(|e| e.event.at_ms < cutoff_ms) {
            break;
        }
        pending = Some((key.to_vec(), events));
    }
    Ok(out)
}

/// Removes the meta and open-session key of a session left with no index entry past `seq` (all
/// its events trimmed): its user's next message starts a new session.
fn forget_if_empty(
    tree: &sled::Tree,
    tenant: &TenantId,
    (prefix, seq): (&[u8], u64),
    e: &crate::events::schema::Event,
    batch: &mut Batch,
) -> Result<(), ReadError> {
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xff; 9]);
    let after = keys::session_index_key(prefix, seq.saturating_add(1));
    if tree.range(after..end).next().is_some() {
        return Ok(());
    }
    let meta_key = keys::session_meta_key(tenant, &e.env, &e.team, &e.session);
    let meta = tree
        .get(&meta_key)
        .map_err(|err| sled_err(tenant, "session meta", &err))?;
    batch.remove(meta_key);
    // An unreadable meta names no user: its open-session key (if any) is left alone.
    let Some(meta) = meta.and_then(|m| decode_limited::<SessionMeta>(&m).ok()) else {
        return Ok(());
    };
    let open_as = meta.open_as.as_deref().unwrap_or(&meta.user);
    let open = keys::open_session_key(tenant, &e.env, &e.team, &meta.channel, open_as);
    let names_this = tree
        .get(&open)
        .map_err(|err| sled_err(tenant, "open session", &err))?
        .is_some_and(|v| v.as_ref() == e.session.as_str().as_bytes());
    if names_this {
        batch.remove(open);
    }
    Ok(())
}

#[cfg(test)]
mod jetstream_tests;
#[cfg(test)]
mod tests;
