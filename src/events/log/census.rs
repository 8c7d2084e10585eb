//! What a tenant's key range holds, counted by key family, for offboarding's report of what a
//! deletion frees ([`EventLog::census`]). It scans the whole range, past the durable frontier
//! too: it counts keys, not events a reader may see.

use serde::Serialize;

use super::contain::contained;
use super::{EventLog, ReadError};
use crate::events::keys;
use crate::tenancy::TenantId;

/// The keys of one tenant's range in the log tree, by family (storage.md's key table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogCensus {
    /// Events: the `tenant_seq` of the last stored frame's last event (seqs start at 1 and are
    /// contiguous), 0 for an empty tenant; when that frame is damaged, its first `tenant_seq`.
    pub events: u64,
    /// Frames (`L`): append groups.
    pub frames: u64,
    /// Sessions (`M`: one meta key per session).
    pub sessions: u64,
    /// Idempotency records (`I`).
    pub idempotency_records: u64,
    /// Signed chain heads (`H`).
    pub signed_heads: u64,
    /// Every key of the range, the families above, the session index (`S`) and open sessions
    /// (`O`) included.
    pub keys: u64,
    /// Bytes of those keys and their values (sled's own overhead not counted).
    pub bytes: u64,
}

impl EventLog {
    /// Counts `tenant`'s keys by family; an absent tenant counts zero everywhere.
    pub fn census(&self, tenant: &TenantId) -> Result<LogCensus, ReadError> {
        let err = |detail: String| ReadError {
            tenant: tenant.clone(),
            position: "key range".into(),
            detail,
        };
        // The reader's parts keep the store open while the range is read.
        let parts = self.inner.shared.reader(tenant);
        let tree = parts.tree.clone()?;
        let prefix = keys::tenant_prefix(tenant);
        let mut census = LogCensus::default();
        let mut last_frame = None;
        contained(|| -> Result<(), sled::Error> {
            for entry in tree.scan_prefix(&prefix) {
                let (key, value) = entry?;
                census.keys += 1;
                census.bytes += (key.len() + value.len()) as u64;
                match key.get(prefix.len()).copied() {
                    Some(keys::TAG_FRAME) => {
                        census.frames += 1;
                        // sled's values are reference-counted: keeping the last costs no copy.
                        last_frame = Some((key, value));
                    }
                    Some(keys::TAG_SESSION_META) => census.sessions += 1,
                    Some(keys::TAG_IDEMPOTENCY) => census.idempotency_records += 1,
                    Some(keys::TAG_SIGNED_HEAD) => census.signed_heads += 1,
                    _ => {}
                }
            }
            Ok(())
        })
        .map_err(err)?
        .map_err(|e| err(e.to_string()))?;
        if let Some((key, value)) = last_frame {
            // A damaged tenant must still be deletable: its last frame's key says enough.
            census.events = match super::read::check_frame(tenant, &key, &value) {
                Ok(head) => head.tenant_seq,
                Err(_) => keys::frame_key_seq(&key, tenant).unwrap_or(0),
            };
        }
        Ok(census)
    }
}
