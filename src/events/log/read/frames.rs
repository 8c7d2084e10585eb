//! A tenant's log frame by frame, each frame's events with the bytes they were stored as: the
//! export's read, which carries the stored bodies and hands whole frames to another thread.
//!
//! Invariants (those of [`super`]): the scan stays inside the tenant's prefix and stops at the
//! durable frontier the reader was made with; every frame is checked exactly as
//! [`TenantReader::events`] checks it (it is decoded by the same function) before it is handed
//! out.

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use super::{decode_frame_events, sled_panicked, TenantReader};
use crate::events::codec::FRAME_HEADER_BYTES;
use crate::events::keyring::OpenKeys;
use crate::events::keys;
use crate::events::log::contain::contained;
use crate::events::log::store::Store;
use crate::events::log::{ReadError, StoredEvent};
use crate::tenancy::TenantId;

/// One frame's events in a range, with the stored bytes of each event's body.
pub struct StoredFrame {
    /// The frame as stored (a reference-counted handle, not a copy).
    bytes: sled::IVec,
    events: Vec<StoredEvent>,
    /// Where each event's body lies in `bytes`.
    bodies: Vec<Range<usize>>,
}

impl StoredFrame {
    /// The frame's events in the range, each with its body exactly as stored (and hashed).
    pub fn events(&self) -> impl Iterator<Item = (&StoredEvent, &[u8])> {
        self.events.iter().zip(
            self.bodies
                .iter()
                .map(|r| self.bytes.get(r.clone()).unwrap_or_default()),
        )
    }

    /// Bytes of the frame as stored.
    pub fn stored_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// How many of its events are in the range.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none of its events is in the range.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Where each record's body lies in a frame that `decode_frame` accepted: the layout is a
/// header, then `[len: LE u32][body]` per record.
fn body_ranges(frame: &[u8], count: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::with_capacity(count);
    let mut at = FRAME_HEADER_BYTES;
    for _ in 0..count {
        let len = frame
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| usize::try_from(u32::from_le_bytes(b)).unwrap_or(0));
        ranges.push(at + 4..at + 4 + len);
        at += 4 + len;
    }
    ranges
}

impl TenantReader {
    /// The tenant's frames that hold events with `tenant_seq` in `range`, in order, each
    /// with only those events. Events past the durable frontier are not returned. The iterator
    /// ends after the first error. It owns what it reads, so it can run on another thread.
    pub fn stored_frames(&self, range: RangeInclusive<u64>) -> StoredFrames {
        let range = *range.start()..=(*range.end()).min(self.parts.limit);
        let tree = match &self.parts.tree {
            Ok(tree) => tree,
            Err(e) => {
                return StoredFrames {
                    _store: None,
                    keys: None,
                    frames: None,
                    error: Some(e.clone()),
                    tenant: self.tenant.clone(),
                    range,
                }
            }
        };
        let (start, end) = keys::frame_range(&self.tenant);
        let from = keys::frame_key(&self.tenant, *range.start());
        // The frame holding `range.start()` may begin before it.
        let first = match contained(|| tree.range(start..=from.clone()).next_back()) {
            Ok(Some(Ok((k, _)))) => k.to_vec(),
            _ => from,
        };
        StoredFrames {
            _store: self.parts.store.clone(),
            keys: self.parts.open_keys(),
            frames: (!range.is_empty()).then(|| tree.range(first..end)),
            error: None,
            tenant: self.tenant.clone(),
            range,
        }
    }
}

/// Iterator over a tenant's frames; see [`TenantReader::stored_frames`].
pub struct StoredFrames {
    _store: Option<Arc<Store>>,
    keys: Option<OpenKeys>,
    /// `None` once done (or for an empty range).
    frames: Option<sled::Iter>,
    /// Returned first (the files were closed when the reader was made).
    error: Option<ReadError>,
    tenant: TenantId,
    range: RangeInclusive<u64>,
}

impl StoredFrames {
    fn fail(&mut self, e: ReadError) -> Option<Result<StoredFrame, ReadError>> {
        self.frames = None;
        Some(Err(e))
    }
}

impl Iterator for StoredFrames {
    type Item = Result<StoredFrame, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return self.fail(e);
        }
        loop {
            let frames = self.frames.as_mut()?;
            let next = match contained(|| frames.next()) {
                Ok(None) => {
                    self.frames = None;
                    return None;
                }
                Ok(Some(next)) => next,
                Err(e) => return self.fail(sled_panicked(&self.tenant, "frame scan", &e)),
            };
            let (key, value) = match next {
                Ok(kv) => kv,
                Err(e) => {
                    let e = ReadError {
                        tenant: self.tenant.clone(),
                        position: "frame scan".into(),
                        detail: e.to_string(),
                    };
                    return self.fail(e);
                }
            };
            if keys::frame_key_seq(&key, &self.tenant).is_some_and(|s| s > *self.range.end()) {
                self.frames = None;
                return None;
            }
            let events = match decode_frame_events(&self.tenant, &key, &value, self.keys.as_ref()) {
                Ok(events) => events,
                Err(e) => return self.fail(e),
            };
            let ranges = body_ranges(&value, events.len());
            let (events, bodies): (Vec<_>, Vec<_>) = events
                .into_iter()
                .zip(ranges)
                .filter(|(e, _)| self.range.contains(&e.event.tenant_seq))
                .unzip();
            if !events.is_empty() {
                return Some(Ok(StoredFrame {
                    bytes: value,
                    events,
                    bodies,
                }));
            }
        }
    }
}
