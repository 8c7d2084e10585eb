//! `tenantry migrate --to jetstream`: a sled log copied into the stream, tenant by tenant,
//! verified before and after, and resumable.
//!
//! Per tenant of the sled log (opened by the caller with [`EventLog::open`]; no server may run on
//! it, and its lock sees to that):
//! 1. its chain is verified from genesis with `verify --tenant`'s check
//!    ([`crate::audit::verify::verify_log`]); a tenant whose chain fails is refused and nothing of
//!    it is published;
//! 2. the stream's last record of the tenant decides what to do: none, copy; the sled head, skip
//!    (an earlier run copied it); a partial copy (head `(0, zero hash)`) or an older copy (a head
//!    that is on the sled chain), purge the subject and copy again; a head past the sled head or
//!    off its chain is refused: a node has written to the stream, and its records are not ours
//!    to purge;
//! 3. the copy: every key of the tenant's prefix in key order, as insert ops, in records of at
//!    most [`RECORD_BYTES_MAX`]; every record but the last carries head `(0, zero hash)`, the
//!    last the sled head, so an interrupted copy never looks complete (step 2 redoes it); each is
//!    published fenced on the one before (`Nats-Expected-Last-Subject-Sequence`, 0 for the
//!    first) and awaited.
//!
//! Afterwards every copied or skipped tenant is read back: a fresh cache of the stream
//! ([`EventLog::open_replicated`] in a scratch directory) must verify and hold the same number
//! of events up to the same head.
//!
//! Invariants: the sled log is only read; the stream's records of a tenant are purged only when
//! they are a copy of a prefix of its sled log (partial or older), never records a node wrote.
//! This is the one place where `events` calls into `audit`: the chain check is the verifier's,
//! not a second copy of it.

use std::path::Path;

use serde_bytes::ByteBuf;

use super::RECORD_BYTES_MAX;
use super::{encode, publish_chain, Op, Record, Replica, ReplicaError, RECORD_VERSION};
use crate::audit::verify::{verify_log, Verdict};
use crate::events::codec::Hash;
use crate::events::keys;
use crate::events::log::contain::contained;
use crate::events::log::{EventLog, Head, LogOptions, OpenError};
use crate::tenancy::TenantId;

/// Bytes a record's fixed fields take when encoded (version, node name, head), on top of the
/// node name's own bytes: MessagePack field names and headers.
const RECORD_HEADER_BYTES: usize = 96;

/// Bytes one op adds to a record beyond its key and value: MessagePack's array header and two
/// binary headers (1 + 5 + 5), rounded up.
const OP_OVERHEAD_BYTES: usize = 16;

/// The head written into every record but a copy's last: no tenant's head is `tenant_seq` 0, so
/// a copy that stopped early is never mistaken for a complete one.
const PARTIAL_HEAD: Head = Head {
    tenant_seq: 0,
    hash: [0; 32],
};

/// Why a tenant (or the whole migration) could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The sled log's chain does not verify. The tenant is refused; repair or restore the sled
    /// log and run the migration again.
    #[error(
        "tenant {tenant}: its sled log does not verify ({problem}); nothing of it was copied: \
         restore {tenant}'s log from a backup (`tenantry verify --tenant {tenant}` shows the \
         problem), then run migrate again"
    )]
    ChainBroken { tenant: TenantId, problem: String },
    /// The stream holds events of the tenant past the sled log's head: a node has appended to
    /// the stream. Nothing was changed.
    #[error(
        "tenant {tenant}: the stream already holds its events up to tenant_seq {stream_seq}, past \
         the sled log's head at tenant_seq {sled_seq}: a node has appended to the stream since, \
         so the stream, not this sled log, is its log now; nothing was changed. Leave the tenant \
         out of the sled log, or purge subject {subject} by hand if the stream's records may go"
    )]
    StreamAhead {
        tenant: TenantId,
        stream_seq: u64,
        sled_seq: u64,
        subject: String,
    },
    /// The stream's last record of the tenant is not on the sled log's chain: the two hold
    /// different histories. Nothing was changed.
    #[error(
        "tenant {tenant}: the stream's records end at tenant_seq {stream_seq} with a chain hash \
         the sled log does not have there: the stream holds another history of this tenant; \
         nothing was changed. Find out which is right; purge subject {subject} by hand only if \
         the stream's records may go"
    )]
    Diverged {
        tenant: TenantId,
        stream_seq: u64,
        subject: String,
    },
    /// The tenant has sealed events (crypto-shredding) and the config has `[cluster]` but no
    /// cluster key: the wrapped data keys would travel in the stream, but their KEKs live in
    /// this data dir's secret store only, so the other nodes would read the personal fields as
    /// erased. Nothing of it was copied.
    #[error(
        "tenant {tenant}: its log holds sealed events (personal fields encrypted under data keys \
         whose key encryption key is in this data dir's secret store), and the config has a \
         [cluster] section but no cluster key: the other nodes could not open them; nothing of \
         it was copied. Give the nodes a cluster key (env TENANTRY_CLUSTER_KEY or \
         {{data_dir}}/cluster.key, the same on every node) so that its keys go to the cluster's \
         key stream, or migrate it for a single node (no [cluster]) serving this data dir"
    )]
    Sealed { tenant: TenantId },
    /// The tenant's keys could not be stored in the cluster's key stream. Nothing of it was
    /// copied.
    #[error("tenant {tenant}: storing its keys in the cluster's key stream: {detail}; nothing of it was copied")]
    Keys { tenant: TenantId, detail: String },
    /// The sled log could not be read.
    #[error("tenant {tenant}: reading the sled log: {detail}")]
    Source { tenant: TenantId, detail: String },
    /// Listing the sled log's tenants failed.
    #[error("listing the sled log's tenants: {0}")]
    Tenants(String),
    /// The stream could not be read or written. The migration stops; run it again (it resumes).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The fresh cache that reads the copy back could not be opened.
    #[error("reading the copy back from the stream (a fresh cache in {}): {source}", .dir.display())]
    CheckOpen {
        dir: std::path::PathBuf,
        source: Box<OpenError>,
    },
    /// The scratch directory of the read-back could not be removed or replaced.
    #[error("the read-back's scratch directory {}: {detail}", .dir.display())]
    CheckDir {
        dir: std::path::PathBuf,
        detail: String,
    },
    /// What the stream holds of the tenant differs from its sled log after the copy.
    #[error(
        "tenant {tenant}: the copy read back from the stream differs from the sled log: \
         {detail}; run migrate again"
    )]
    Mismatch { tenant: TenantId, detail: String },
}

impl MigrateError {
    /// The tenant a refusal names; `None` for an error that stops the whole migration.
    pub fn refused_tenant(&self) -> Option<&TenantId> {
        match self {
            MigrateError::ChainBroken { tenant, .. }
            | MigrateError::StreamAhead { tenant, .. }
            | MigrateError::Diverged { tenant, .. }
            | MigrateError::Sealed { tenant }
            | MigrateError::Keys { tenant, .. } => Some(tenant),
            _ => None,
        }
    }
}

/// One step of the migration, for progress output.
#[derive(Debug)]
pub enum Step<'a> {
    /// The tenant's sled chain verified: this many events.
    Verified { events: u64 },
    /// The stream already holds exactly this tenant's sled log (an earlier run copied it).
    AlreadyCopied,
    /// The stream held a partial or older copy of the tenant; its records were purged.
    Purged,
    /// A record was published and acked: the count and bytes so far for this tenant.
    Published { records: u64, bytes: u64 },
    /// The tenant's copy is complete.
    Copied { events: u64, records: u64 },
    /// The tenant was refused (nothing of it was changed in the stream).
    Refused(&'a MigrateError),
    /// Read back from a fresh cache of the stream: it verifies, with the same events and head.
    Checked { events: u64 },
}

/// What a migration did.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Tenants copied by this run.
    pub copied: Vec<TenantId>,
    /// Tenants the stream already held exactly (or that have no events).
    pub skipped: Vec<TenantId>,
    /// Tenants refused, each error naming its tenant; the others were copied regardless.
    pub refused: Vec<MigrateError>,
    /// Events copied by this run.
    pub events: u64,
    /// Records published by this run.
    pub records: u64,
    /// Record payload bytes published by this run.
    pub bytes: u64,
}

/// What the read-back compares per tenant.
struct Expected {
    tenant: TenantId,
    events: u64,
    head: Option<Head>,
}

/// Copies every tenant of `log` (a sled log) into the stream of `replica`, then reads the copy
/// back through a fresh cache in `check_dir` (removed first if an earlier run left it, and
/// afterwards). A refused tenant is in [`MigrateReport::refused`] and the others are copied
/// regardless; an `Err` (the stream failing, the read-back differing) stops the migration, and
/// running it again resumes. `sealed`: what to do with tenants that have sealed events (their
/// wrapped data keys go into the stream with the rest of the tenant's keys).
pub fn migrate(
    log: &EventLog,
    replica: Replica,
    check_dir: &Path,
    sealed: &SealedTenants<'_>,
    progress: &mut dyn FnMut(&TenantId, Step<'_>),
) -> Result<MigrateReport, MigrateError> {
    let tenants = log
        .tenants()
        .map_err(|e| MigrateError::Tenants(e.to_string()))?;
    let mut report = MigrateReport::default();
    let mut expected = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        match migrate_tenant(log, &replica, &tenant, sealed, progress) {
            Ok((Outcome::Copied(sent), want)) => {
                report.events += want.events;
                report.records += sent.records;
                report.bytes += sent.bytes;
                let (events, records) = (want.events, sent.records);
                progress(&tenant, Step::Copied { events, records });
                report.copied.push(tenant);
                expected.push(want);
            }
            Ok((Outcome::Skipped, want)) => {
                report.skipped.push(tenant);
                expected.push(want);
            }
            Err(e) if e.refused_tenant().is_some() => {
                progress(&tenant, Step::Refused(&e));
                report.refused.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    read_back(replica, check_dir, &expected, progress)?;
    Ok(report)
}

/// What [`migrate`] does with a tenant whose log has sealed events.
pub enum SealedTenants<'a> {
    /// Copies it: the target is a single node keeping this data dir's secret store.
    Copy,
    /// Copies it once `share` stored its keys in the cluster's key stream.
    Share(&'a dyn Fn(&TenantId) -> Result<(), String>),
    /// Refuses it ([`MigrateError::Sealed`]): a cluster without a cluster key.
    Refuse,
}

/// What was done with one tenant.
enum Outcome {
    /// The stream already held it, or it has no events.
    Skipped,
    Copied(Sent),
}

/// What one tenant's copy published.
#[derive(Default)]
struct Sent {
    records: u64,
    bytes: u64,
}

fn source(tenant: &TenantId, e: impl std::fmt::Display) -> MigrateError {
    MigrateError::Source {
        tenant: tenant.clone(),
        detail: e.to_string(),
    }
}

/// Verifies, compares with the stream and copies one tenant; returns what was done and what
/// the read-back is to find.
fn migrate_tenant(
    log: &EventLog,
    replica: &Replica,
    tenant: &TenantId,
    sealed: &SealedTenants<'_>,
    progress: &mut dyn FnMut(&TenantId, Step<'_>),
) -> Result<(Outcome, Expected), MigrateError> {
    let has_keys = || log.has_data_keys(tenant).map_err(|e| source(tenant, e));
    match sealed {
        SealedTenants::Copy => {}
        SealedTenants::Refuse if has_keys()? => {
            return Err(MigrateError::Sealed {
                tenant: tenant.clone(),
            })
        }
        SealedTenants::Share(share) if has_keys()? => {
            share(tenant).map_err(|detail| MigrateError::Keys {
                tenant: tenant.clone(),
                detail,
            })?;
        }
        SealedTenants::Refuse | SealedTenants::Share(_) => {}
    }
    let events = match verify_log(log, tenant).map_err(|e| source(tenant, e))? {
        Verdict::Intact(summary) => summary.count,
        Verdict::Broken(problem) => {
            return Err(MigrateError::ChainBroken {
                tenant: tenant.clone(),
                problem: problem.to_string(),
            })
        }
    };
    progress(tenant, Step::Verified { events });
    let head = log.tenant(tenant).head().map_err(|e| source(tenant, e))?;
    let want = Expected {
        tenant: tenant.clone(),
        events,
        head,
    };
    let last = replica.rt.block_on(replica.last_record_if_any(tenant))?;
    let copy_from = match (last, head) {
        (None, None) => return Ok((Outcome::Skipped, want)),
        (None, Some(head)) => (0, head),
        (Some((_, stream_head)), head) if Some(stream_head) == head => {
            progress(tenant, Step::AlreadyCopied);
            return Ok((Outcome::Skipped, want));
        }
        (Some((_, stream_head)), head) => {
            let sled_seq = head.map_or(0, |h| h.tenant_seq);
            check_purgeable(log, replica, tenant, stream_head, sled_seq)?;
            replica.purge(tenant)?;
            progress(tenant, Step::Purged);
            let Some(head) = head else {
                return Ok((Outcome::Skipped, want));
            };
            (0, head)
        }
    };
    let sent = copy_tenant(log, replica, tenant, copy_from, progress)?;
    Ok((Outcome::Copied(sent), want))
}

/// Whether the stream's records of the tenant, ending at `stream_head`, are a partial or older
/// copy of its sled log (so purging them loses nothing); else the refusal that says why not.
fn check_purgeable(
    log: &EventLog,
    replica: &Replica,
    tenant: &TenantId,
    stream_head: Head,
    sled_seq: u64,
) -> Result<(), MigrateError> {
    if stream_head == PARTIAL_HEAD {
        return Ok(());
    }
    let subject = replica.subject(tenant);
    if stream_head.tenant_seq > sled_seq {
        return Err(MigrateError::StreamAhead {
            tenant: tenant.clone(),
            stream_seq: stream_head.tenant_seq,
            sled_seq,
            subject,
        });
    }
    let seq = stream_head.tenant_seq;
    let at = log.tenant(tenant).events(seq..=seq).next();
    let sled_hash: Option<Hash> = match at {
        Some(Ok(stored)) => Some(stored.hash),
        Some(Err(e)) => return Err(source(tenant, e)),
        None => None,
    };
    if sled_hash == Some(stream_head.hash) {
        Ok(())
    } else {
        Err(MigrateError::Diverged {
            tenant: tenant.clone(),
            stream_seq: seq,
            subject,
        })
    }
}

/// Publishes every key of the tenant in records, the last carrying `head`, the first fenced on
/// stream sequence `expected` (0: the subject has no records).
fn copy_tenant(
    log: &EventLog,
    replica: &Replica,
    tenant: &TenantId,
    (mut expected, head): (u64, Head),
    progress: &mut dyn FnMut(&TenantId, Step<'_>),
) -> Result<Sent, MigrateError> {
    let store = log
        .inner
        .shared
        .store()
        .ok_or_else(|| source(tenant, super::super::store::CLOSED))?;
    let mut builder = RecordBuilder::new(&replica.node);
    let mut copy = Sent::default();
    let mut publish = |payload: Vec<u8>, copy: &mut Sent| -> Result<(), MigrateError> {
        let bytes = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        let chain = publish_chain(
            &replica.js,
            tenant.clone(),
            replica.subject(tenant),
            expected,
            vec![payload],
        );
        expected = replica.rt.block_on(chain).1?;
        copy.records += 1;
        copy.bytes += bytes;
        let (records, bytes) = (copy.records, copy.bytes);
        progress(tenant, Step::Published { records, bytes });
        Ok(())
    };
    let mut keys = store.tree.scan_prefix(keys::tenant_prefix(tenant));
    loop {
        let item = contained(|| keys.next()).map_err(|panic| {
            source(tenant, format!("sled panicked reading its files ({panic})"))
        })?;
        let Some(item) = item else { break };
        let (key, value) = item.map_err(|e| source(tenant, e))?;
        let op = (
            ByteBuf::from(key.to_vec()),
            Some(ByteBuf::from(value.to_vec())),
        );
        if let Some(full) = builder.push(op) {
            publish(full, &mut copy)?;
        }
    }
    // The source's ops revision, which the copied keys hold: the cache matches the last record.
    let rev =
        crate::events::log::ops::revision(&store.tree, tenant).map_err(|e| source(tenant, e))?;
    if let Some(last) = builder.finish(head, rev) {
        publish(last, &mut copy)?;
    }
    Ok(copy)
}

/// Puts ops into records of at most [`RECORD_BYTES_MAX`] encoded bytes (an op too large for
/// any record gets one of its own).
struct RecordBuilder {
    record: Record,
    /// The current record's encoded size, estimated from above.
    size: usize,
    empty_size: usize,
}

impl RecordBuilder {
    fn new(node: &str) -> RecordBuilder {
        let record = Record {
            v: RECORD_VERSION,
            node: node.to_owned(),
            head_seq: PARTIAL_HEAD.tenant_seq,
            head_hash: PARTIAL_HEAD.hash.to_vec(),
            ops: Vec::new(),
            rev: 0,
        };
        let empty_size = RECORD_HEADER_BYTES + node.len();
        RecordBuilder {
            record,
            size: empty_size,
            empty_size,
        }
    }

    fn op_bytes((key, value): &Op) -> usize {
        key.len() + value.as_ref().map_or(0, |v| v.len()) + OP_OVERHEAD_BYTES
    }

    /// Adds `op`; returns the encoded record it did not fit into (head `(0, zero hash)`: more
    /// follows), if any.
    fn push(&mut self, op: Op) -> Option<Vec<u8>> {
        let bytes = Self::op_bytes(&op);
        let full =
            (!self.record.ops.is_empty() && self.size + bytes > RECORD_BYTES_MAX).then(|| {
                let payload = encode(&self.record);
                self.record.ops.clear();
                self.size = self.empty_size;
                payload
            });
        self.record.ops.push(op);
        self.size += bytes;
        full
    }

    /// The last record, carrying `head` and the ops revision `rev`; `None` when no op was pushed
    /// since the last record.
    fn finish(mut self, head: Head, rev: u64) -> Option<Vec<u8>> {
        if self.record.ops.is_empty() {
            return None;
        }
        self.record.head_seq = head.tenant_seq;
        self.record.head_hash = head.hash.to_vec();
        self.record.rev = rev;
        Some(encode(&self.record))
    }
}

/// Opens a fresh cache of the stream in `check_dir` and checks that every expected tenant
/// verifies there with the same events and head; removes the directory afterwards.
fn read_back(
    replica: Replica,
    check_dir: &Path,
    expected: &[Expected],
    progress: &mut dyn FnMut(&TenantId, Step<'_>),
) -> Result<(), MigrateError> {
    let dir_error = |e: std::io::Error| MigrateError::CheckDir {
        dir: check_dir.to_owned(),
        detail: e.to_string(),
    };
    if check_dir.exists() {
        std::fs::remove_dir_all(check_dir).map_err(dir_error)?;
    }
    let cache =
        EventLog::open_replicated(check_dir, &LogOptions::default(), replica).map_err(|e| {
            MigrateError::CheckOpen {
                dir: check_dir.to_owned(),
                source: Box::new(e),
            }
        })?;
    let checked: Result<(), MigrateError> = expected.iter().try_for_each(|want| {
        compare(&cache, want)?;
        progress(
            &want.tenant,
            Step::Checked {
                events: want.events,
            },
        );
        Ok(())
    });
    drop(cache);
    checked?;
    std::fs::remove_dir_all(check_dir).map_err(dir_error)
}

/// The tenant in the fresh cache verifies and has the expected events and head.
fn compare(cache: &EventLog, want: &Expected) -> Result<(), MigrateError> {
    let mismatch = |detail: String| MigrateError::Mismatch {
        tenant: want.tenant.clone(),
        detail,
    };
    let events = match verify_log(cache, &want.tenant).map_err(|e| mismatch(e.to_string()))? {
        Verdict::Intact(summary) => summary.count,
        Verdict::Broken(problem) => return Err(mismatch(format!("it does not verify: {problem}"))),
    };
    let head = cache
        .tenant(&want.tenant)
        .head()
        .map_err(|e| mismatch(e.to_string()))?;
    if events != want.events || head != want.head {
        return Err(mismatch(format!(
            "{events} events up to {}, but the sled log has {} up to {}",
            show(head),
            want.events,
            show(want.head)
        )));
    }
    Ok(())
}

fn show(head: Option<Head>) -> String {
    head.map_or_else(
        || "no head".to_owned(),
        |h| format!("tenant_seq {}", h.tenant_seq),
    )
}

impl Replica {
    /// The tenant's last record's stream sequence and head, `None` when it has no records.
    async fn last_record_if_any(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(u64, Head)>, ReplicaError> {
        // `decode_record` has checked the head.
        let last = self.last_record(tenant).await?;
        Ok(last.and_then(|(seq, record)| record.head().map(|head| (seq, head))))
    }
}

#[cfg(test)]
mod tests;
