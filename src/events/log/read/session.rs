//! One session's events, group by group: the session index names each group's first
//! `tenant_seq`, count and place in its frame, and the group is read from the frame that holds
//! it (its own, or a frame of several groups: only its records are decoded, the ones before it
//! hashed).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::Arc;

use super::{
    decode_frame_part, decode_index_value, index_frame_start, read_error, ready, sled_panicked,
};
use crate::events::codec::frame_records;
use crate::events::keyring::OpenKeys;
use crate::events::keys;
use crate::events::log::contain::contained;
use crate::events::log::store::Store;
use crate::events::log::{ReadError, StoredEvent};
use crate::tenancy::TenantId;

/// The frame holding the group that starts at `tenant_seq` (key and value): the frame the
/// index entry names (`start`, its first tenant_seq) when it holds the group; else the frame at
/// the group's own key, else the last one before it (a frame of several groups) if it reaches
/// that far (entries written before the index named the frame).
fn group_frame(
    tree: &sled::Tree,
    tenant: &TenantId,
    (tenant_seq, key): (u64, &[u8]),
    start: Option<u64>,
) -> sled::Result<Option<(sled::IVec, sled::IVec)>> {
    if let Some(start) = start.filter(|&start| start != tenant_seq) {
        let at = keys::frame_key(tenant, start);
        if let Some(frame) = tree.get(&at)? {
            if frame_records(&frame).is_some_and(|records| start + records as u64 > tenant_seq) {
                return Ok(Some((at.into(), frame)));
            }
        }
    }
    if let Some(frame) = tree.get(key)? {
        return Ok(Some((key.into(), frame)));
    }
    let (start, _) = keys::frame_range(tenant);
    let Some((at, frame)) = tree.range(start.as_slice()..key).next_back().transpose()? else {
        return Ok(None);
    };
    let reaches = keys::frame_key_seq(&at, tenant)
        .zip(frame_records(&frame))
        .is_some_and(|(first, records)| first + records as u64 > tenant_seq);
    Ok(reaches.then_some((at, frame)))
}

/// Iterator over one session's events; see [`super::ScopedReader::session_events`].
pub struct SessionEvents {
    pub(super) _store: Option<Arc<Store>>,
    pub(super) keys: Option<OpenKeys>,
    pub(super) index: Option<sled::Iter>,
    /// Returned first (the files were closed when the reader was made).
    pub(super) error: Option<ReadError>,
    pub(super) tree: Option<sled::Tree>,
    pub(super) tenant: TenantId,
    pub(super) range: RangeInclusive<u64>,
    /// The durable frontier: the events stop before the first frame past it.
    pub(super) limit: u64,
    pub(super) pending: VecDeque<StoredEvent>,
    pub(super) done: bool,
    /// Some frame's events were taken.
    pub(super) any: bool,
}

impl SessionEvents {
    fn next_frame(&mut self) -> Option<Result<Vec<StoredEvent>, ReadError>> {
        let err = |tenant: &TenantId, detail: String| ReadError {
            tenant: tenant.clone(),
            position: "session index".into(),
            detail,
        };
        let index = self.index.as_mut()?;
        let next = match contained(|| index.next()) {
            Ok(next) => next?,
            Err(e) => return Some(Err(sled_panicked(&self.tenant, "session index", &e))),
        };
        let (_, v) = match next {
            Ok(kv) => kv,
            Err(e) => return Some(Err(err(&self.tenant, e.to_string()))),
        };
        let Some((tenant_seq, count)) = decode_index_value(&v) else {
            return Some(Err(err(&self.tenant, "malformed index value".into())));
        };
        if tenant_seq > self.limit {
            // Not durable yet (or taken back by a failed write): the session ends here.
            return None;
        }
        let tree = self.tree.as_ref()?;
        let key = keys::frame_key(&self.tenant, tenant_seq);
        let start = index_frame_start(&v);
        let frame = match contained(|| group_frame(tree, &self.tenant, (tenant_seq, &key), start)) {
            Ok(frame) => frame,
            Err(e) => return Some(Err(sled_panicked(&self.tenant, "frame", &e))),
        };
        match frame {
            Ok(Some((key, frame))) => {
                let group = tenant_seq..tenant_seq + u64::from(count);
                let read =
                    decode_frame_part(&self.tenant, &key, &frame, self.keys.as_ref(), Some(group));
                Some(read.and_then(|events| {
                    if events.len() == usize::from(count) {
                        return Ok(events);
                    }
                    let detail = format!(
                        "the session index names {count} events at tenant_seq {tenant_seq}, the frame holds {}",
                        events.len()
                    );
                    Err(read_error(&self.tenant, &key, detail))
                }))
            }
            // Trimmed by retention since the index was read, before anything was returned: the
            // session starts later (a frame gone after its predecessors were returned would leave
            // a gap, so that stays an error, and a retry reads from the new start).
            Ok(None)
                if !self.any
                    && crate::events::log::retention::trimmed(tree, &self.tenant, tenant_seq) =>
            {
                Some(Ok(Vec::new()))
            }
            Ok(None) => Some(Err(read_error(
                &self.tenant,
                &key,
                "indexed frame is missing",
            ))),
            Err(e) => Some(Err(read_error(&self.tenant, &key, e))),
        }
    }
}

impl Iterator for SessionEvents {
    type Item = Result<StoredEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = ready(&mut self.pending, &mut self.error, &mut self.done) {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.next_frame() {
                None => return None,
                Some(Ok(events)) => {
                    if events
                        .first()
                        .is_some_and(|e| e.event.seq > *self.range.end())
                    {
                        self.done = true;
                    }
                    self.any |= !events.is_empty();
                    self.pending.extend(
                        events
                            .into_iter()
                            .filter(|e| self.range.contains(&e.event.seq)),
                    );
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
