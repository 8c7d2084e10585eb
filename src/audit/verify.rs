//! `tenantry verify`: check an export file, or a tenant's log, against the hash chain.
//!
//! An export line is checked in this order, and the first failure is the verdict:
//! 1. it parses (JSON object or CSV row of the `tenantry-audit/1` shape);
//! 2. `hash == SHA-256(prev_hash || body)`, on the body bytes as exported (else: *bad hash*, the
//!    body or the hash was changed);
//! 3. the body decodes and every readable field (`tenant` ... `data`, `v`) equals what the body
//!    says (else: *edited*, naming the field);
//! 4. it belongs: the manifest's tenant, env and time filters;
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

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use super::export::sidecar_path;
use super::format_time;
use super::record::{
    body_version, decode_base64, hash_hex, parse_hash, shorten, EventLine, Manifest, CSV_COLUMNS,
    FORMAT, TYPE_EVENT, TYPE_MANIFEST,
};
use super::{in_window, AuditError};
use crate::events::codec::{chain_hash, decode_body, Hash, GENESIS_HASH};
use crate::events::log::EventLog;
use crate::events::schema::{Event, EventKind};
use crate::tenancy::TenantId;

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
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: tenant {} ({}): {} events",
            self.source,
            self.tenant,
            self.env
                .as_deref()
                .map_or_else(|| "all envs".to_owned(), |env| format!("env {env}")),
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
        )
    } else {
        let items = CsvItems::new(file);
        let source = format!("{name} (csv export)");
        check(items, sidecar.as_ref(), Trailer::Sidecar, source)
    }
}

/// Where the manifest of a format lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trailer {
    /// The last line (JSONL).
    Expected,
    /// Beside the file (CSV).
    Sidecar,
}

fn is_jsonl(path: &Path) -> std::io::Result<bool> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "json" | "ndjson") => return Ok(true),
        Some("csv") => return Ok(false),
        _ => {}
    }
    let mut first = [0u8; 1];
    let n = File::open(path)?.read(&mut first)?;
    Ok(n == 0 || first[0] == b'{')
}

/// Reads a sidecar manifest. `Ok(Err(_))` when it exists but is not a manifest.
fn read_sidecar(path: &Path) -> Result<Result<Manifest, String>, AuditError> {
    let read_err = |e| AuditError::io(format!("reading {}", path.display()), e);
    let mut text = Vec::new();
    File::open(path)
        .map_err(read_err)?
        .take(u64::try_from(MANIFEST_BYTES_MAX).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    if text.len() > MANIFEST_BYTES_MAX {
        return Ok(Err(format!(
            "longer than {MANIFEST_BYTES_MAX} bytes: not a manifest"
        )));
    }
    Ok(serde_json::from_slice::<Manifest>(&text)
        .map_err(|e| format!("not a valid manifest: {e}"))
        .and_then(|m| {
            if m.record_type == TYPE_MANIFEST {
                Ok(m)
            } else {
                Err(format!("type is {}, not manifest", shorten(&m.record_type)))
            }
        }))
}

/// The manifest on the last line of a JSONL file, if that line is one. Reads only the tail.
fn read_trailer(path: &Path) -> std::io::Result<Option<Manifest>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let window = u64::try_from(MANIFEST_BYTES_MAX).unwrap_or(u64::MAX) + 2;
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        // A manifest line always ends with a newline; without it the file was cut.
        return Ok(None);
    };
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        // The whole window is one line: the file is that line, or its last line is too long.
        None if start == 0 => body,
        None => return Ok(None),
    };
    Ok(serde_json::from_slice::<Manifest>(last)
        .ok()
        .filter(|m| m.record_type == TYPE_MANIFEST))
}

/// One line or record of an export, as read.
enum Entry {
    Event(Box<EventLine>),
    Manifest(Box<Manifest>),
    /// Not a record of the format; the text says why.
    Bad(String),
    /// The file could not be read further.
    Unreadable(std::io::Error),
}

/// JSONL lines, each at most [`LINE_BYTES_MAX`].
struct JsonlItems<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlItems<R> {
    fn new(reader: R) -> JsonlItems<R> {
        JsonlItems {
            reader,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn parse(text: &[u8]) -> Entry {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            record_type: String,
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return Entry::Bad("not UTF-8".to_owned());
        };
        if text.trim().is_empty() {
            return Entry::Bad("empty line".to_owned());
        }
        let tag: Tag = match serde_json::from_str(text) {
            Ok(tag) => tag,
            Err(e) => {
                let hint = if text.contains("\"manifest\"") {
                    " (a truncated or edited manifest?)"
                } else {
                    ""
                };
                return Entry::Bad(format!("not a JSON record with a type: {e}{hint}"));
            }
        };
        match tag.record_type.as_str() {
            TYPE_EVENT => match serde_json::from_str(text) {
                Ok(line) => Entry::Event(Box::new(line)),
                Err(e) => Entry::Bad(format!("not a valid event record: {e}")),
            },
            TYPE_MANIFEST => match serde_json::from_str(text) {
                Ok(m) => Entry::Manifest(Box::new(m)),
                Err(e) => Entry::Bad(format!("not a valid manifest: {e}")),
            },
            other => Entry::Bad(format!("unknown record type {}", shorten(other))),
        }
    }
}

impl<R: BufRead> Iterator for JsonlItems<R> {
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf);
        match read {
            Err(e) => {
                self.done = true;
                Some((self.line + 1, Entry::Unreadable(e)))
            }
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                let Some(text) = self.buf.strip_suffix(b"\n") else {
                    // No newline: the last line was cut, or a line is longer than the limit
                    // (and we cannot find where the next one starts).
                    self.done = true;
                    let why = if self.buf.len() > LINE_BYTES_MAX {
                        format!("longer than {LINE_BYTES_MAX} bytes")
                    } else {
                        "the file ends inside this line (truncated?)".to_owned()
                    };
                    let entry = match Self::parse(&self.buf) {
                        Entry::Bad(e) => Entry::Bad(format!("{why}; {e}")),
                        _ => Entry::Bad(why),
                    };
                    return Some((self.line, entry));
                };
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                Some((self.line, Self::parse(text)))
            }
        }
    }
}

/// A reader that fails once more than [`LINE_BYTES_MAX`] bytes were read since the last
/// [`RecordLimit::reset`], so one hostile CSV record cannot grow the parser's buffer without
/// bound.
struct RecordLimit<R> {
    inner: R,
    read: usize,
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read > LINE_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a CSV record longer than {LINE_BYTES_MAX} bytes"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

/// CSV records after a checked header row.
struct CsvItems {
    reader: csv::Reader<RecordLimit<BufReader<File>>>,
    record: csv::StringRecord,
    header_checked: bool,
    done: bool,
}

impl CsvItems {
    fn new(file: File) -> CsvItems {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(RecordLimit {
                inner: BufReader::new(file),
                read: 0,
            });
        CsvItems {
            reader,
            record: csv::StringRecord::new(),
            header_checked: false,
            done: false,
        }
    }

    fn csv_error(e: csv::Error) -> Entry {
        match e.kind() {
            csv::ErrorKind::Io(io) if io.kind() != std::io::ErrorKind::InvalidData => {
                Entry::Unreadable(std::io::Error::new(io.kind(), io.to_string()))
            }
            _ => Entry::Bad(e.to_string()),
        }
    }
}

impl Iterator for CsvItems {
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        loop {
            if self.done {
                return None;
            }
            self.reader.get_mut().read = 0;
            // The record's number with the header as 1: its line unless a cell holds a line
            // break (the csv crate's own line count is off with CRLF terminators).
            let line = self.reader.position().record() + 1;
            match self.reader.read_record(&mut self.record) {
                Err(e) => {
                    self.done = true;
                    return Some((line, Self::csv_error(e)));
                }
                Ok(false) => return None,
                Ok(true) => {}
            }
            if !self.header_checked {
                self.header_checked = true;
                if self.record.iter().ne(CSV_COLUMNS) {
                    self.done = true;
                    return Some((
                        line,
                        Entry::Bad(format!(
                            "the header row is not the tenantry-audit/1 columns ({})",
                            CSV_COLUMNS.join(",")
                        )),
                    ));
                }
                continue;
            }
            let entry = match EventLine::from_csv_row(&self.record) {
                Ok(event) => Entry::Event(Box::new(event)),
                Err(e) => Entry::Bad(e),
            };
            return Some((line, entry));
        }
    }
}

/// Runs the checks over the lines of an export, then the manifest.
fn check(
    mut items: impl Iterator<Item = (u64, Entry)>,
    upfront: Option<&Manifest>,
    trailer: Trailer,
    source: String,
) -> Result<Verdict, AuditError> {
    let mut checker = Checker::new(upfront);
    let mut found_trailer: Option<(u64, Manifest)> = None;
    let mut last_line = 0;
    while let Some((line, entry)) = items.next() {
        last_line = line;
        if let Some((manifest_line, _)) = &found_trailer {
            return Ok(Verdict::Broken(problem(
                Some(line),
                None,
                ProblemKind::Inserted,
                format!("a line after the manifest (line {manifest_line})"),
            )));
        }
        match entry {
            Entry::Unreadable(e) => return Err(AuditError::io(format!("reading line {line}"), e)),
            Entry::Bad(detail) => {
                return Ok(Verdict::Broken(problem(
                    Some(line),
                    None,
                    ProblemKind::Malformed,
                    detail,
                )))
            }
            Entry::Manifest(m) => {
                if trailer != Trailer::Expected {
                    return Ok(Verdict::Broken(problem(
                        Some(line),
                        None,
                        ProblemKind::Malformed,
                        "a manifest inside a CSV export".to_owned(),
                    )));
                }
                found_trailer = Some((line, *m));
            }
            Entry::Event(event) => match checker.event(line, &event) {
                Ok(()) => {}
                Err(Check::Problem(p)) => return Ok(Verdict::Broken(p)),
                Err(Check::Gap {
                    line,
                    found,
                    expected,
                }) => return Ok(Verdict::Broken(classify_gap(items, line, found, expected))),
            },
        }
    }
    let manifest_line = match trailer {
        Trailer::Expected => match found_trailer {
            None => None,
            Some((line, m)) => {
                if upfront != Some(&m) {
                    return Ok(Verdict::Broken(problem(
                        Some(line),
                        None,
                        ProblemKind::ManifestMismatch,
                        "the manifest line differs from the sidecar manifest".to_owned(),
                    )));
                }
                Some(Some(line))
            }
        },
        Trailer::Sidecar => upfront.map(|_| None),
    };
    let (Some(manifest), Some(manifest_line)) = (upfront, manifest_line) else {
        let detail = match trailer {
            Trailer::Expected if last_line == 0 => "the file is empty".to_owned(),
            Trailer::Expected => format!(
                "no manifest after line {last_line}: the export is incomplete (interrupted, \
                 truncated, or its manifest line was removed)"
            ),
            Trailer::Sidecar => "no sidecar manifest (FILE.manifest.json) and no --manifest; \
                                 a CSV export cannot be checked for completeness without it"
                .to_owned(),
        };
        return Ok(Verdict::Broken(problem(
            None,
            None,
            ProblemKind::MissingManifest,
            detail,
        )));
    };
    Ok(match checker.finish(manifest, manifest_line) {
        Ok(()) => Verdict::Intact(Summary {
            source,
            tenant: manifest.tenant.clone(),
            env: manifest.env.clone(),
            count: checker.count,
            first_tenant_seq: manifest.first_tenant_seq,
            last_tenant_seq: manifest.last_tenant_seq,
            contiguous: manifest.contiguous,
            head_hash: manifest.head_hash.clone(),
            sessions: None,
        }),
        Err(p) => Verdict::Broken(p),
    })
}

/// A line that skipped ahead in a contiguous export: `expected` is missing here. If it comes
/// later the lines were reordered, else deleted. Reads the rest of the file (one line at a time).
fn classify_gap(
    items: impl Iterator<Item = (u64, Entry)>,
    line: u64,
    found: u64,
    expected: u64,
) -> Problem {
    let later = items
        .into_iter()
        .find_map(|(later_line, entry)| match entry {
            Entry::Event(e) if e.tenant_seq == expected => Some(later_line),
            _ => None,
        });
    match later {
        Some(later_line) => problem(
            Some(line),
            Some(found),
            ProblemKind::Reordered,
            format!("tenant_seq {found} comes before tenant_seq {expected} (line {later_line})"),
        ),
        None => problem(
            Some(line),
            Some(found),
            ProblemKind::Deleted,
            format!("tenant_seq {expected} is missing before this line"),
        ),
    }
}

/// Why an event line failed.
enum Check {
    Problem(Problem),
    /// Contiguous export: the line has `found` where `expected` belongs.
    Gap {
        line: u64,
        found: u64,
        expected: u64,
    },
}

impl From<Problem> for Check {
    fn from(p: Problem) -> Check {
        Check::Problem(p)
    }
}

/// The previous event line.
struct Prev {
    line: u64,
    tenant_seq: u64,
    hash: Hash,
}

/// Per-line checks and the state they carry from line to line.
struct Checker<'m> {
    manifest: Option<&'m Manifest>,
    /// Tenant of the first line, when there is no manifest to say.
    first_tenant: Option<String>,
    prev: Option<Prev>,
    count: u64,
}

impl<'m> Checker<'m> {
    fn new(manifest: Option<&'m Manifest>) -> Checker<'m> {
        Checker {
            manifest,
            first_tenant: None,
            prev: None,
            count: 0,
        }
    }

    /// Checks one event line: its own hash and fields, its scope, then its place after the
    /// previous line.
    fn event(&mut self, line: u64, rec: &EventLine) -> Result<(), Check> {
        let (event, prev_hash, hash) = check_own(rec)
            .map_err(|(kind, detail)| problem(Some(line), Some(rec.tenant_seq), kind, detail))?;
        // From here on, only the hashed body's values are used.
        let seq = event.tenant_seq;
        let at = |(kind, detail)| problem(Some(line), Some(seq), kind, detail);
        self.check_scope(&event).map_err(at)?;
        match &self.prev {
            None => self.check_first(line, seq, &prev_hash)?,
            Some(prev) => self.check_next(prev, line, seq, &prev_hash)?,
        }
        self.prev = Some(Prev {
            line,
            tenant_seq: seq,
            hash,
        });
        self.count += 1;
        Ok(())
    }

    /// The first event line: where the manifest says the export starts, on its anchor.
    fn check_first(&self, line: u64, seq: u64, prev_hash: &Hash) -> Result<(), Check> {
        let at = |kind, detail: String| problem(Some(line), Some(seq), kind, detail).into();
        if let Some(m) = self.manifest {
            match m.first_tenant_seq {
                Some(first) if seq > first && m.contiguous => {
                    return Err(Check::Gap {
                        line,
                        found: seq,
                        expected: first,
                    })
                }
                Some(first) if seq != first => {
                    let kind = if seq > first {
                        ProblemKind::Deleted
                    } else {
                        ProblemKind::Inserted
                    };
                    let detail =
                        format!("the manifest says the export starts at tenant_seq {first}");
                    return Err(at(kind, detail));
                }
                Some(_) => {}
                None => {
                    let detail = "the manifest says the export is empty".to_owned();
                    return Err(at(ProblemKind::Inserted, detail));
                }
            }
            if m.first_prev_hash.as_deref() != Some(hash_hex(prev_hash).as_str()) {
                let detail = "prev_hash differs from the manifest's first_prev_hash".to_owned();
                return Err(at(ProblemKind::BrokenChain, detail));
            }
        }
        if seq == 1 && *prev_hash != GENESIS_HASH {
            let detail = "tenant_seq 1 must chain from the genesis hash (32 zero bytes)".to_owned();
            return Err(at(ProblemKind::BrokenChain, detail));
        }
        Ok(())
    }

    /// A later event line: the next `tenant_seq` (contiguous) or a later one (filtered), linked
    /// to the previous line whenever it is the next.
    fn check_next(&self, prev: &Prev, line: u64, seq: u64, prev_hash: &Hash) -> Result<(), Check> {
        let at = |kind, detail: String| problem(Some(line), Some(seq), kind, detail).into();
        let contiguous = self.manifest.is_some_and(|m| m.contiguous);
        if seq == prev.tenant_seq + 1 {
            if *prev_hash != prev.hash {
                let detail = format!(
                    "prev_hash is not the hash of tenant_seq {} (line {})",
                    prev.tenant_seq, prev.line
                );
                return Err(at(ProblemKind::BrokenChain, detail));
            }
        } else if seq == prev.tenant_seq {
            let detail = format!("repeats tenant_seq {seq} of line {}", prev.line);
            return Err(at(ProblemKind::Inserted, detail));
        } else if seq < prev.tenant_seq {
            return Err(if contiguous {
                let detail = format!("tenant_seq {seq} already appeared (a copied line?)");
                at(ProblemKind::Inserted, detail)
            } else {
                let detail = format!(
                    "tenant_seq {seq} comes after tenant_seq {} (line {}): reordered or copied",
                    prev.tenant_seq, prev.line
                );
                at(ProblemKind::Reordered, detail)
            });
        } else if contiguous {
            return Err(Check::Gap {
                line,
                found: seq,
                expected: prev.tenant_seq + 1,
            });
        }
        Ok(())
    }

    /// The event belongs to the export: its tenant, env and time window.
    fn check_scope(&mut self, event: &Event) -> Result<(), (ProblemKind, String)> {
        let tenant = event.tenant.as_str();
        let expected = match self.manifest {
            Some(m) => m.tenant.as_str(),
            None => self.first_tenant.get_or_insert_with(|| tenant.to_owned()),
        };
        if tenant != expected {
            return Err((
                ProblemKind::ForeignTenant,
                format!("an event of tenant {tenant} in an export of tenant {expected}"),
            ));
        }
        let Some(m) = self.manifest else {
            return Ok(());
        };
        if m.env
            .as_deref()
            .is_some_and(|env| env != event.env.as_str())
        {
            return Err((
                ProblemKind::OutsideFilter,
                format!(
                    "env {} in an export of env {}",
                    event.env,
                    m.env.as_deref().unwrap_or("")
                ),
            ));
        }
        if !in_window(event.at_ms, m.since, m.until) || event.tenant_seq < m.from_seq {
            return Err((
                ProblemKind::OutsideFilter,
                format!(
                    "at {} / tenant_seq {} is outside the export's since/until/from_seq",
                    format_time(event.at_ms),
                    event.tenant_seq
                ),
            ));
        }
        Ok(())
    }

    /// After the last line: the manifest agrees with what was read.
    fn finish(&self, m: &Manifest, manifest_line: Option<u64>) -> Result<(), Problem> {
        let at = |kind, detail: String| problem(manifest_line, None, kind, detail);
        if m.format != FORMAT || m.record_type != TYPE_MANIFEST {
            return Err(at(
                ProblemKind::ManifestMismatch,
                format!("format {} is not {FORMAT}", shorten(&m.format)),
            ));
        }
        if !m.complete {
            return Err(at(
                ProblemKind::MissingManifest,
                "the manifest says the export is incomplete".to_owned(),
            ));
        }
        if self.count != m.count {
            let kind = if self.count < m.count {
                ProblemKind::Deleted
            } else {
                ProblemKind::Inserted
            };
            return Err(at(
                kind,
                format!(
                    "the file has {} events, the manifest says {}",
                    self.count, m.count
                ),
            ));
        }
        let last = self.prev.as_ref().map(|p| p.tenant_seq);
        if last != m.last_tenant_seq {
            return Err(at(
                ProblemKind::Deleted,
                format!(
                    "the file ends at tenant_seq {}, the manifest says {}",
                    seq_text(last),
                    seq_text(m.last_tenant_seq)
                ),
            ));
        }
        let head = self.prev.as_ref().map(|p| hash_hex(&p.hash));
        if head != m.head_hash {
            return Err(at(
                ProblemKind::BrokenChain,
                "the last event's hash differs from the manifest's head_hash".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Checks a line on its own: its hash covers its body, and its readable fields say what the
/// body says. Returns the body's event and the line's two hashes.
fn check_own(rec: &EventLine) -> Result<(Event, Hash, Hash), (ProblemKind, String)> {
    let Some(body_text) = &rec.body else {
        return Err((ProblemKind::Malformed, "no body".to_owned()));
    };
    let body = decode_base64(body_text).ok_or_else(|| {
        let detail = "body is not valid base64: it was changed".to_owned();
        (ProblemKind::BadHash, detail)
    })?;
    let prev_hash = parse_hash(&rec.prev_hash).ok_or_else(|| {
        let detail = "prev_hash is not 64 lowercase hex digits".to_owned();
        (ProblemKind::Malformed, detail)
    })?;
    let hash = parse_hash(&rec.hash).ok_or_else(|| {
        let detail = "hash is not 64 lowercase hex digits".to_owned();
        (ProblemKind::Malformed, detail)
    })?;
    if chain_hash(&prev_hash, &body) != hash {
        let detail =
            "hash is not SHA-256(prev_hash || body): the body or the hash was changed".to_owned();
        return Err((ProblemKind::BadHash, detail));
    }
    let event = decode_body(&body).map_err(|e| {
        let detail = format!("the body does not decode although its hash matches (forged): {e}");
        (ProblemKind::Edited, detail)
    })?;
    compare_fields(rec, &event, &body).map_err(|detail| (ProblemKind::Edited, detail))?;
    Ok((event, prev_hash, hash))
}

fn seq_text(seq: Option<u64>) -> String {
    seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// Compares every readable field of `rec` with the hashed body. `Err` names the first that
/// differs.
fn compare_fields(rec: &EventLine, event: &Event, body: &[u8]) -> Result<(), String> {
    let text_fields: [(&str, &str, String); 8] = [
        ("tenant", &rec.tenant, event.tenant.to_string()),
        ("env", &rec.env, event.env.to_string()),
        ("team", &rec.team, event.team.to_string()),
        ("channel", &rec.channel, event.channel.to_string()),
        ("session", &rec.session, event.session.to_string()),
        ("id", &rec.id, event.id.to_string()),
        ("at_iso", &rec.at_iso, format_time(event.at_ms)),
        ("kind", &rec.kind, event.kind.name().to_owned()),
    ];
    let number_fields = [
        ("seq", rec.seq, event.seq),
        ("tenant_seq", rec.tenant_seq, event.tenant_seq),
        ("at", rec.at, event.at_ms),
    ];
    for (name, visible, signed) in number_fields {
        if visible != signed {
            return Err(differs(name, &visible.to_string(), &signed.to_string()));
        }
    }
    for (name, visible, signed) in &text_fields {
        if *visible != signed.as_str() {
            return Err(differs(name, visible, signed));
        }
    }
    let data = event.kind.data_json();
    if rec.data != data {
        return Err(differs("data", &rec.data.to_string(), &data.to_string()));
    }
    if let Some(v) = body_version(body) {
        if rec.v != v {
            return Err(differs("v", &rec.v.to_string(), &v.to_string()));
        }
    }
    Ok(())
}

fn differs(field: &str, visible: &str, signed: &str) -> String {
    format!(
        "field {field} is {} but the hashed body says {}",
        shorten(visible),
        shorten(signed)
    )
}

// ---- The log -----------------------------------------------------------------------------------

/// Verifies a tenant's log from genesis: every frame reads and decodes, every record is the
/// tenant's, `tenant_seq` is gapless from 1, each event's `prev_hash` is the previous one's
/// `hash` (across frames too, which reading alone does not check), each session's `seq` is
/// gapless from 1 and starts with `SessionStarted`, and the chain ends at the tenant's head.
pub fn verify_log(log: &EventLog, tenant: &TenantId) -> Result<Verdict, AuditError> {
    let broken = |seq: Option<u64>, kind, detail: String| -> Result<Verdict, AuditError> {
        Ok(Verdict::Broken(problem(None, seq, kind, detail)))
    };
    if let Some(d) = log.damaged().iter().find(|d| &d.tenant == tenant) {
        return broken(
            None,
            ProblemKind::Unreadable,
            format!("{}: {}", d.position, d.detail),
        );
    }
    let reader = log.tenant(tenant);
    let head = match reader.head() {
        Ok(head) => head,
        Err(e) => return broken(None, ProblemKind::Unreadable, e.to_string()),
    };
    let last = head.map_or(0, |h| h.tenant_seq);
    let mut prev_hash = GENESIS_HASH;
    let mut expected = 1;
    // Last seq per session: the only state that grows, with the number of sessions.
    let mut sessions: HashMap<(String, String, String), u64> = HashMap::new();
    if last > 0 {
        for item in reader.events(1..=last) {
            let stored = match item {
                Ok(stored) => stored,
                Err(e) => {
                    return broken(
                        Some(expected),
                        ProblemKind::Unreadable,
                        format!("{}: {}", e.position, e.detail),
                    )
                }
            };
            let e = &stored.event;
            let seq = Some(e.tenant_seq);
            if &e.tenant != tenant {
                return broken(
                    seq,
                    ProblemKind::ForeignTenant,
                    format!("a record of tenant {} in tenant {tenant}'s range", e.tenant),
                );
            }
            if e.tenant_seq != expected {
                let kind = if e.tenant_seq > expected {
                    ProblemKind::Deleted
                } else {
                    ProblemKind::Inserted
                };
                return broken(
                    seq,
                    kind,
                    format!("expected tenant_seq {expected}, found {}", e.tenant_seq),
                );
            }
            if stored.prev_hash != prev_hash {
                return broken(
                    seq,
                    ProblemKind::BrokenChain,
                    format!(
                        "prev_hash is not the hash of tenant_seq {} (a frame was rewritten?)",
                        expected - 1
                    ),
                );
            }
            let key = (e.env.to_string(), e.team.to_string(), e.session.to_string());
            let session_last = sessions.get(&key).copied().unwrap_or(0);
            if e.seq != session_last + 1 {
                return broken(
                    seq,
                    ProblemKind::Deleted,
                    format!(
                        "session {}/{}/{}: seq {} follows seq {session_last}",
                        e.env, e.team, e.session, e.seq
                    ),
                );
            }
            if (e.seq == 1) != matches!(e.kind, EventKind::SessionStarted { .. }) {
                return broken(
                    seq,
                    ProblemKind::Malformed,
                    format!(
                        "session {}/{}/{}: {} at seq {} (SessionStarted must be exactly seq 1)",
                        e.env,
                        e.team,
                        e.session,
                        e.kind.name(),
                        e.seq
                    ),
                );
            }
            sessions.insert(key, e.seq);
            prev_hash = stored.hash;
            expected += 1;
        }
    }
    if expected != last + 1 {
        return broken(
            Some(expected),
            ProblemKind::Deleted,
            format!("the log ends before its head at tenant_seq {last}"),
        );
    }
    if let Some(h) = head {
        if h.hash != prev_hash {
            return broken(
                Some(last),
                ProblemKind::BrokenChain,
                "the chain does not end at the tenant's head hash".to_owned(),
            );
        }
    }
    Ok(Verdict::Intact(Summary {
        source: format!("log {}", log.dir().display()),
        tenant: tenant.to_string(),
        env: None,
        count: last,
        first_tenant_seq: (last > 0).then_some(1),
        last_tenant_seq: (last > 0).then_some(last),
        contiguous: true,
        head_hash: head.map(|h| hash_hex(&h.hash)),
        sessions: Some(u64::try_from(sessions.len()).unwrap_or(u64::MAX)),
    }))
}

#[cfg(test)]
mod tests;
