//! `tenantry verify`: check an export file, or a tenant's log, against the hash chain.
//!
//! An export line is checked in this order, and the first failure is the verdict:
//! 1. it parses (JSON object or CSV row of the `tenantry-audit/1` shape);
//! 2. `hash == SHA-256(prev_hash || body)`, on the body bytes as exported (else: *bad hash*, the
//!    body or the hash was changed);
//! 3. the body decodes and every readable field (`tenant` ... `data`, `v`) equals what the body
//!    says (else: *edited*, naming the field);
//! 4. it belongs: the manifest's tenant, env, team and time filters;
//! 5. its place: in a contiguous export `tenant_seq` follows the previous line's and `prev_hash`
//!    is the previous line's `hash` (else *deleted*, *inserted*, *reordered* or *broken chain*); in
//!    a filtered export `tenant_seq` only increases, and lines that happen to be consecutive must
//!    still link.
//!
//! At the end the manifest must be there (the last JSONL line; for CSV the sidecar
//! `FILE.manifest.json` or `--manifest`) and agree: count, first and last `tenant_seq`, the
//! anchor `first_prev_hash` and `head_hash`. A JSONL export with a sidecar must match it too.
//!
//! Invariants:
//! - Verification never trusts a readable field: every decision after step 2 uses the values
//!   of the hashed body.
//! - Bounded memory: one line (at most [`LINE_BYTES_MAX`]) at a time, and for a log one counter
//!   per session (sessions are far fewer than events, and the per-session gapless check needs
//!   them).
//! - Problems in the data are a [`Verdict`], never an `Err`: `Err` means the input could not be
//!   read at all.
//!
//! Files: this one (the verdict types and the two entry points), `read` (an export file as lines
//! or records, and its manifest), `chain` (an export's lines checked one by one against the chain
//! and the manifest), `log_check` (a tenant's log from genesis).

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::export::sidecar_path;
use super::AuditError;
use crate::events::log::EventLog;
use crate::tenancy::TenantId;
use chain::{check, Trailer};
use read::{is_jsonl, read_sidecar, read_trailer, CsvItems, JsonlItems};

/// Longest export line (JSONL) or record (CSV) accepted, in bytes. A line holds one body of at
/// most `EVENT_BYTES_MAX` (64 KiB) as base64 plus its decoded data as escaped JSON, far below.
pub const LINE_BYTES_MAX: usize = 1024 * 1024;

/// Largest manifest (trailer line or sidecar file), in bytes.
pub const MANIFEST_BYTES_MAX: usize = 64 * 1024;

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything checked out.
    Intact(Summary),
    /// The first problem found.
    Broken(Problem),
}

impl Verdict {
    /// Whether nothing was wrong.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verdict::Intact(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Intact(summary) => write!(f, "OK: {summary}"),
            Verdict::Broken(problem) => write!(f, "FAILED: {problem}"),
        }
    }
}

/// What an intact export or log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// What was verified (`audit.jsonl (jsonl export)`, `the log`).
    pub source: String,
    /// The tenant.
    pub tenant: String,
    /// The export's env filter, if any.
    pub env: Option<String>,
    /// The export's team filter, if any.
    pub team: Option<String>,
    /// Events checked.
    pub count: u64,
    /// First `tenant_seq`, if any event.
    pub first_tenant_seq: Option<u64>,
    /// Last `tenant_seq`, if any event.
    pub last_tenant_seq: Option<u64>,
    /// Whether the events were linked one to the next (else each was checked on its own).
    pub contiguous: bool,
    /// The last event's hash, lowercase hex.
    pub head_hash: Option<String>,
    /// Sessions seen (log verification only).
    pub sessions: Option<u64>,
    /// What was found of the export's signed chain heads (exports only).
    pub anchoring: Option<String>,
    /// Where a log trimmed by retention starts (`anchored: N trimmed up to …, prev hash …`);
    /// `None` for an untrimmed log and for exports.
    pub retention: Option<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: tenant {} ({}{}): {} events",
            self.source,
            self.tenant,
            self.env
                .as_deref()
                .map_or_else(|| "all envs".to_owned(), |env| format!("env {env}")),
            self.team
                .as_deref()
                .map_or_else(String::new, |team| format!(", team {team}")),
            self.count
        )?;
        if let (Some(first), Some(last)) = (self.first_tenant_seq, self.last_tenant_seq) {
            write!(f, ", tenant_seq {first}..={last}")?;
        }
        if let Some(sessions) = self.sessions {
            write!(f, ", {sessions} sessions")?;
        }
        if self.contiguous {
            write!(f, ", chain linked")?;
        } else {
            write!(f, ", filtered: each event's hash checked on its own")?;
        }
        if let Some(head) = &self.head_hash {
            write!(f, ", head {head}")?;
        }
        if let Some(anchoring) = &self.anchoring {
            write!(f, "; {anchoring}")?;
        }
        if let Some(retention) = &self.retention {
            write!(f, " ({retention})")?;
        }
        Ok(())
    }
}

/// The first thing found wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the file (CSV: the record's number, the header being 1, which is its line
    /// unless a cell holds a line break); `None` for a log or a sidecar manifest.
    pub line: Option<u64>,
    /// The event's `tenant_seq`, when known.
    pub tenant_seq: Option<u64>,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What exactly, with values shortened and escaped.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.tenant_seq) {
            (Some(line), Some(seq)) => write!(f, "line {line} (tenant_seq {seq}): ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            (None, Some(seq)) => write!(f, "tenant_seq {seq}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

/// Kinds of [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a record of the format (bad JSON, wrong cells, bad hex, too long).
    Malformed,
    /// A readable field differs from the hashed body.
    Edited,
    /// `hash != SHA-256(prev_hash || body)`: the body or the hash was changed.
    BadHash,
    /// `prev_hash` is not the previous event's `hash`, or the chain's ends differ from the
    /// manifest.
    BrokenChain,
    /// Events are missing (a gap in `tenant_seq`, or fewer than the manifest says).
    Deleted,
    /// An event appears twice, or more events than the manifest says.
    Inserted,
    /// Events are out of order.
    Reordered,
    /// An event of another tenant.
    ForeignTenant,
    /// An event outside the export's env or time filter.
    OutsideFilter,
    /// No manifest: the export did not complete (or its manifest was removed).
    MissingManifest,
    /// The manifest is not one this build wrote, or two manifests disagree.
    ManifestMismatch,
    /// The log cannot be read at this position (checksum, decoding).
    Unreadable,
    /// A session snapshot that the log does not back (ahead of it, or of another history).
    SnapshotNotInLog,
    /// A signed chain head of the manifest does not verify with the public key.
    BadHeadSignature,
    /// The event at a signed head's `tenant_seq` has another hash: the chain was rewritten.
    HeadMismatch,
    /// A signed head lies past the export's last event: its tail was cut off.
    TruncatedTail,
    /// The export's last event is not covered by a signed head (with `--pubkey`).
    Unanchored,
}

impl ProblemKind {
    /// The kind as printed.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Edited => "edited",
            ProblemKind::BadHash => "bad hash",
            ProblemKind::BrokenChain => "broken chain",
            ProblemKind::Deleted => "deleted (gap)",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::ForeignTenant => "foreign tenant",
            ProblemKind::OutsideFilter => "outside the export's filters",
            ProblemKind::MissingManifest => "missing manifest",
            ProblemKind::ManifestMismatch => "manifest mismatch",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::SnapshotNotInLog => "snapshot not in the log",
            ProblemKind::BadHeadSignature => "bad head signature",
            ProblemKind::HeadMismatch => "head mismatch",
            ProblemKind::TruncatedTail => "truncated tail",
            ProblemKind::Unanchored => "unanchored",
        }
    }
}

pub(super) fn problem(
    line: Option<u64>,
    tenant_seq: Option<u64>,
    kind: ProblemKind,
    detail: String,
) -> Problem {
    Problem {
        line,
        tenant_seq,
        kind,
        detail,
    }
}

// ---- Export files ----------------------------------------------------------------------------

/// Verifies an export file. The format comes from the extension (`.jsonl`/`.json`/`.ndjson`,
/// `.csv`), else from the first byte (`{` is JSONL). The manifest is the JSONL trailer; for CSV
/// `manifest` if given, else the sidecar `FILE.manifest.json` when it exists.
///
/// `Err` only when a file cannot be read (missing, unreadable); everything wrong in a readable
/// file is a [`Verdict::Broken`].
pub fn verify_file(path: &Path, manifest: Option<&Path>) -> Result<Verdict, AuditError> {
    verify_file_with_key(path, manifest, None)
}

/// [`verify_file`], and with `pubkey` the manifest's signed chain heads too (`anchor`): their
/// signatures, the events they name, and the tail. Without it the summary says that heads were
/// not checked.
pub fn verify_file_with_key(
    path: &Path,
    manifest: Option<&Path>,
    pubkey: Option<&VerifyingKey>,
) -> Result<Verdict, AuditError> {
    let read_err = |e| AuditError::io(format!("reading {}", path.display()), e);
    let jsonl = is_jsonl(path).map_err(read_err)?;
    let sidecar_file = match manifest {
        Some(p) => Some(p.to_owned()),
        None => Some(sidecar_path(path)).filter(|p| p.exists()),
    };
    let sidecar = match &sidecar_file {
        None => None,
        Some(p) => match read_sidecar(p)? {
            Ok(m) => Some(m),
            Err(detail) => {
                return Ok(Verdict::Broken(problem(
                    None,
                    None,
                    ProblemKind::ManifestMismatch,
                    format!("{}: {detail}", p.display()),
                )))
            }
        },
    };
    let file = File::open(path).map_err(read_err)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if jsonl {
        let trailer = read_trailer(path).map_err(read_err)?;
        if let (Some(side), Some(trailer)) = (&sidecar, &trailer) {
            if side != trailer {
                return Ok(Verdict::Broken(problem(
                    None,
                    None,
                    ProblemKind::ManifestMismatch,
                    "the sidecar manifest differs from the file's last line".to_owned(),
                )));
            }
        }
        let upfront = trailer.or(sidecar);
        let items = JsonlItems::new(BufReader::new(file));
        check(
            items,
            upfront.as_ref(),
            Trailer::Expected,
            format!("{name} (jsonl export)"),
            pubkey,
        )
    } else {
        let items = CsvItems::new(file);
        let source = format!("{name} (csv export)");
        check(items, sidecar.as_ref(), Trailer::Sidecar, source, pubkey)
    }
}

// ---- The log -----------------------------------------------------------------------------------

/// Verifies a tenant's log from genesis: every frame reads and decodes, every record is the
/// tenant's, `tenant_seq` is gapless from 1, each event's `prev_hash` is the previous one's
/// `hash` (across frames too, which reading alone does not check), each session's `seq` is
/// gapless from 1 and starts with `SessionStarted`, and the chain ends at the tenant's head.
pub fn verify_log(log: &EventLog, tenant: &TenantId) -> Result<Verdict, AuditError> {
    log_check::verify(log, tenant, &mut |_| ControlFlow::Continue(()))
}

/// How far a log verification has got: every event up to `tenant_seq` found good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Events checked and found good.
    pub events: u64,
    /// The last of them.
    pub tenant_seq: u64,
}

/// [`verify_log`], telling `progress` of every event found good, in order; when it answers
/// `Break` the walk stops and this is [`AuditError::Usage`] (nothing was judged).
pub fn verify_log_with_progress(
    log: &EventLog,
    tenant: &TenantId,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<Verdict, AuditError> {
    log_check::verify(log, tenant, progress)
}

mod anchor;
mod chain;
mod log_check;
mod read;

#[cfg(test)]
mod tests;
