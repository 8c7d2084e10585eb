//! `tenantry export` and `GET /api/v1/audit/export`: stream one tenant's audit trail as JSONL or
//! CSV (format in [`super::record`]) with a manifest.
//!
//! [`export`] writes to any `&mut dyn Write`, one event at a time, so the HTTP edge can run it on
//! a blocking thread writing into a channel-backed writer (wrapped in a `BufWriter`, so that
//! chunks are not one line each) and stop it through the `cancel` flag when the client goes
//! away. [`export_to`] is the command line around it: file or stdout, sidecar manifest,
//! progress on a terminal, SIGINT.
//!
//! Invariants:
//! - Bounded memory: events come from [`crate::events::log::TenantReader::stored_frames`], read
//!   on a thread of its own at most [`EXPORT_BATCHES_IN_FLIGHT`] batches of about
//!   [`EXPORT_BATCH_BYTES`] of frames ahead of the writer, and leave as one line each; nothing
//!   else is collected.
//! - The export covers the tenant's log up to its head *when the export starts*, so an export
//!   of a live log ends.
//! - The manifest is written only after the last event, so an interrupted or failed export has
//!   none and verifies as incomplete; the error names the `--from-seq` that resumes it.
//! - Every exported body is re-encoded from the decoded event and checked to be the bytes the
//!   log stored and hashed, so it chains to the log's hash (see the module docs of [`super`]).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::anchor::{stored_heads, HeadSigner, ManifestHead, SignedHead, MANIFEST_HEADS_MAX};
use super::record::{
    body_version, hash_hex, write_jsonl_line, EventLine, LineBuffers, Manifest, ManifestRetention,
    CSV_COLUMNS, FORMAT, TYPE_MANIFEST,
};
use super::{in_window, AuditError};
use crate::events::codec::{encode_body, Hash};
use crate::events::log::{EventLog, ReadError, StoredEvent, StoredFrame, TenantReader};
use crate::events::schema::{Event, SCHEMA_VERSION_PLAIN, SCHEMA_VERSION_SEALED};
use crate::tenancy::{EnvId, TeamId, TenantId};

/// Shortest time between two progress reports.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The export's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line; the manifest is the last line.
    Jsonl,
    /// RFC 4180 with a header row; the manifest goes to a sidecar file (or stderr).
    Csv,
}

impl ExportFormat {
    /// The format's name on the command line and in file extensions.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(raw: &str) -> Result<ExportFormat, String> {
        match raw {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!("unknown format {other:?}: expected jsonl or csv")),
        }
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The tenant; the only one whose records are read.
    pub tenant: TenantId,
    /// Only events of this env.
    pub env: Option<EnvId>,
    /// Only events of this team (a team-scoped caller's export).
    pub team: Option<TeamId>,
    /// Only events at or after this time (unix ms).
    pub since_ms: Option<u64>,
    /// Only events before this time (unix ms).
    pub until_ms: Option<u64>,
    /// The first `tenant_seq` to export (1 for all); resumes an interrupted export.
    pub from_seq: u64,
    /// JSONL or CSV.
    pub format: ExportFormat,
    /// The chain head key, when the exporter has it: the export's last event gets a head
    /// signed now unless a stored one is already there, so its tail is anchored.
    pub signer: Option<Arc<HeadSigner>>,
}

impl ExportOptions {
    /// The whole tenant, unfiltered, as `format`.
    pub fn new(tenant: TenantId, format: ExportFormat) -> ExportOptions {
        ExportOptions {
            tenant,
            env: None,
            team: None,
            since_ms: None,
            until_ms: None,
            from_seq: 1,
            format,
            signer: None,
        }
    }

    /// Whether the export holds every event of its `tenant_seq` range, so that its chain links.
    /// Only env, team and time filters skip events; `from_seq` just moves the start.
    pub fn contiguous(&self) -> bool {
        self.env.is_none()
            && self.team.is_none()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
    }

    fn selects(&self, event: &Event) -> bool {
        self.env.as_ref().is_none_or(|env| &event.env == env)
            && self.team.as_ref().is_none_or(|team| &event.team == team)
            && in_window(event.at_ms, self.since_ms, self.until_ms)
    }
}

/// How far an export got, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportProgress {
    /// Events written so far.
    pub exported: u64,
    /// The last `tenant_seq` read.
    pub tenant_seq: u64,
}

/// Streams the events of `opts.tenant` selected by `opts` to `out`, then (JSONL) the manifest
/// line, and returns the manifest. For CSV the caller stores the manifest (sidecar file, HTTP
/// trailer...).
///
/// The log is read (and its chain hashed) on a thread of its own, [`EXPORT_BATCHES_IN_FLIGHT`]
/// batches of about [`EXPORT_BATCH_BYTES`] ahead of this thread, which checks each event and
/// writes its line to `out`: reading and writing overlap.
///
/// `progress` is called at most once per [`PROGRESS_INTERVAL`]. Setting `cancel` stops the export
/// before the next event with [`AuditError::Interrupted`]; an error part-way is
/// [`AuditError::Partial`]. Both leave the output without a manifest. `out` should be buffered:
/// the export writes one line at a time.
pub fn export(
    log: &EventLog,
    opts: &ExportOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(&ExportProgress),
    cancel: &AtomicBool,
) -> Result<Manifest, AuditError> {
    let reader = log.tenant(&opts.tenant);
    let from = opts.from_seq.max(1);
    // Read before the frames: a trim meanwhile can only make the export start later.
    let anchor = log.retention_anchor(&opts.tenant)?;
    let head = reader.head()?;
    let mut writer = Writer {
        opts,
        sink: Sink::new(opts.format, out)?,
        manifest: ManifestBuilder::new(opts, from),
        next: from,
        last_report: Instant::now(),
        progress,
        cancel,
        buffers: LineBuffers::default(),
        log,
        started: false,
    };
    let last = head.map_or(0, |h| h.tenant_seq);
    if let Some(head) = head.filter(|_| last >= from) {
        // A head signed below the anchor while a trim ran names a trimmed event: left out.
        let heads_from = from.max(anchor.map_or(1, |a| a.first_tenant_seq));
        writer.manifest.manifest.heads = heads_for(log, opts, heads_from, &head)?;
        writer.manifest.manifest.retention = anchor.as_ref().map(ManifestRetention::of);
        read_ahead(reader, from..=last, &mut |batch| writer.batch(batch))?;
    }
    let Writer {
        sink,
        manifest,
        next,
        ..
    } = writer;
    let manifest = manifest.finish();
    sink.finish(&manifest).map_err(|e| AuditError::Partial {
        next_tenant_seq: next,
        cause: Box::new(e),
    })?;
    Ok(manifest)
}

/// The signed heads an export of `from..=head` carries: the newest stored ones in that range,
/// and, with `opts.signer`, one signed now at `head` when none is stored there.
fn heads_for(
    log: &EventLog,
    opts: &ExportOptions,
    from: u64,
    head: &crate::events::log::Head,
) -> Result<Vec<ManifestHead>, AuditError> {
    let stored = stored_heads(log, &opts.tenant, head.tenant_seq, MANIFEST_HEADS_MAX)?;
    let mut heads: Vec<SignedHead> = stored
        .into_iter()
        .filter(|h| h.tenant_seq >= from)
        .collect();
    if let Some(signer) = &opts.signer {
        if heads.last().is_none_or(|h| h.tenant_seq < head.tenant_seq) {
            if heads.len() == MANIFEST_HEADS_MAX {
                heads.remove(0);
            }
            heads.push(signer.sign(&opts.tenant, head, now_ms()));
        }
    }
    Ok(heads.iter().map(SignedHead::to_manifest).collect())
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Frames read ahead, in batches, while the writer works.
pub const EXPORT_BATCHES_IN_FLIGHT: usize = 4;
/// Stored bytes of the frames in one batch (a batch ends with the frame that reaches it).
pub const EXPORT_BATCH_BYTES: usize = 256 * 1024;

/// What the reading thread hands over: a batch of frames, or the error that ended the read.
type Batch = Result<Vec<StoredFrame>, ReadError>;

/// Reads `range` of `reader`'s log on a thread of its own and hands it to `write`, batch by
/// batch, on this one. Ends at `write`'s first error (dropping the channel stops the reader).
/// A reader that ends early without an error (it panicked) is reported to `write` as a read
/// error, so an export never mistakes a cut-short read for the end of the log.
fn read_ahead(
    reader: TenantReader,
    range: RangeInclusive<u64>,
    write: &mut dyn FnMut(Batch) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let tenant = reader.tenant().clone();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(EXPORT_BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| {
        let read = std::thread::Builder::new()
            .name("tenantry-export-read".into())
            .spawn_scoped(scope, move || {
                let mut batch = Vec::new();
                let mut bytes = 0;
                for item in reader.stored_frames(range) {
                    let frame = match item {
                        Ok(frame) => frame,
                        Err(e) => {
                            // The frames before the error are written first: the error then
                            // names the exact event to resume from.
                            let _ = tx.send(Ok(batch));
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    bytes += frame.stored_bytes();
                    batch.push(frame);
                    if bytes >= EXPORT_BATCH_BYTES {
                        if tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                            return;
                        }
                        bytes = 0;
                    }
                }
                let _ = tx.send(Ok(batch));
            })
            .map_err(|e| AuditError::io("starting the export's reading thread", e))?;
        let written = rx.iter().try_for_each(&mut *write);
        drop(rx);
        let read = read.join();
        written?;
        if read.is_err() {
            write(Err(ReadError {
                tenant,
                position: "export read".into(),
                detail: "the reading thread panicked".into(),
            }))?;
        }
        Ok(())
    })
}

/// The writing side of an export: checks each event, writes its line, keeps the manifest.
struct Writer<'a, 'o> {
    opts: &'a ExportOptions,
    sink: Sink<'o>,
    manifest: ManifestBuilder,
    /// The `tenant_seq` an export resumed from here would start at.
    next: u64,
    last_report: Instant,
    progress: &'a mut dyn FnMut(&ExportProgress),
    cancel: &'a AtomicBool,
    buffers: LineBuffers,
    /// For the retention anchor, when events vanish under the export.
    log: &'a EventLog,
    /// An event was read: from here on `tenant_seq`s must follow one another.
    started: bool,
}

impl Writer<'_, '_> {
    fn partial(&self, e: AuditError) -> AuditError {
        AuditError::Partial {
            next_tenant_seq: self.next,
            cause: Box::new(e),
        }
    }

    /// At a gap in the log after `next`: an error when the tenant's retention trimmed `next`
    /// while the export ran (the file would not verify); other gaps are exported as they are,
    /// for verify to name.
    fn trimmed_meanwhile(&self) -> Result<(), AuditError> {
        match self.log.retention_anchor(&self.opts.tenant)? {
            Some(a) if a.first_tenant_seq > self.next => Err(AuditError::Read(ReadError {
                tenant: self.opts.tenant.clone(),
                position: format!("tenant_seq {}", self.next),
                detail: format!(
                    "trimmed by the tenant's retention while the export ran; export again (the \
                     log now starts at tenant_seq {})",
                    a.first_tenant_seq
                ),
            })),
            _ => Ok(()),
        }
    }

    fn batch(&mut self, batch: Batch) -> Result<(), AuditError> {
        let frames = batch.map_err(|e| self.partial(e.into()))?;
        for frame in &frames {
            for (stored, body) in frame.events() {
                if self.cancel.load(Ordering::Relaxed) {
                    self.sink.flush_partial();
                    return Err(AuditError::Interrupted {
                        next_tenant_seq: self.next,
                    });
                }
                debug_assert_eq!(
                    stored.event.tenant, self.opts.tenant,
                    "reads stay in the tenant"
                );
                if self.started && stored.event.tenant_seq > self.next {
                    self.trimmed_meanwhile().map_err(|e| self.partial(e))?;
                }
                if self.opts.selects(&stored.event) {
                    self.event(stored, body).map_err(|e| self.partial(e))?;
                }
                self.next = stored.event.tenant_seq + 1;
                self.started = true;
            }
            if self.last_report.elapsed() >= PROGRESS_INTERVAL {
                (self.progress)(&ExportProgress {
                    exported: self.manifest.count,
                    tenant_seq: self.next - 1,
                });
                self.last_report = Instant::now();
            }
        }
        Ok(())
    }

    /// Checks one event and writes its line.
    fn event(&mut self, stored: &StoredEvent, body: &[u8]) -> Result<(), AuditError> {
        // The log hashed the bytes it read. If our encoding differs (an older schema version),
        // the line would not verify, and exporting it anyway would accuse an intact log of
        // tampering. Equal bytes chain to the log's hash, so comparing them is the hash check.
        // A sealed (v3) body cannot be re-encoded (its nonce is random); its line's data is
        // what the log decoded from these very bytes, and verify checks the non-personal
        // fields against them.
        let v = match body_version(body) {
            Some(SCHEMA_VERSION_SEALED) => SCHEMA_VERSION_SEALED,
            _ => {
                if encode_body(&stored.event) != body {
                    return Err(AuditError::Reencode {
                        tenant_seq: stored.event.tenant_seq,
                    });
                }
                // The re-encoding is this build's unsealed one.
                SCHEMA_VERSION_PLAIN
            }
        };
        match &mut self.sink {
            Sink::Jsonl(out) => {
                let line = write_jsonl_line(&mut self.buffers, stored, body, v)
                    .map_err(|e| AuditError::io("writing the export", e.into()))?;
                out.write_all(line)
                    .map_err(|e| AuditError::io("writing the export", e))?;
            }
            Sink::Csv(writer) => {
                writer.write_record(EventLine::new(stored, Some(body)).to_csv_row())?;
            }
        }
        self.manifest.add(stored);
        Ok(())
    }
}

/// Collects the manifest's fields while lines are written.
struct ManifestBuilder {
    manifest: Manifest,
    count: u64,
    /// The last line's `hash`, turned into hex once at the end.
    head_hash: Option<Hash>,
}

impl ManifestBuilder {
    fn new(opts: &ExportOptions, from: u64) -> ManifestBuilder {
        ManifestBuilder {
            manifest: Manifest {
                record_type: TYPE_MANIFEST.to_owned(),
                format: FORMAT.to_owned(),
                tenant: opts.tenant.to_string(),
                env: opts.env.as_ref().map(ToString::to_string),
                count: 0,
                first_tenant_seq: None,
                last_tenant_seq: None,
                first_prev_hash: None,
                head_hash: None,
                complete: true,
                contiguous: opts.contiguous(),
                since: opts.since_ms,
                until: opts.until_ms,
                from_seq: from,
                team: opts.team.as_ref().map(ToString::to_string),
                heads: Vec::new(),
                retention: None,
            },
            count: 0,
            head_hash: None,
        }
    }

    fn add(&mut self, stored: &StoredEvent) {
        let m = &mut self.manifest;
        if m.first_tenant_seq.is_none() {
            m.first_tenant_seq = Some(stored.event.tenant_seq);
            m.first_prev_hash = Some(hash_hex(&stored.prev_hash));
        }
        m.last_tenant_seq = Some(stored.event.tenant_seq);
        self.head_hash = Some(stored.hash);
        self.count += 1;
    }

    fn finish(mut self) -> Manifest {
        self.manifest.count = self.count;
        self.manifest.head_hash = self.head_hash.as_ref().map(hash_hex);
        self.manifest
    }
}

/// The output in its format.
enum Sink<'a> {
    Jsonl(&'a mut dyn Write),
    // Boxed: the writer carries its own buffer, much larger than the other variant.
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
}

impl<'a> Sink<'a> {
    fn new(format: ExportFormat, out: &'a mut dyn Write) -> Result<Sink<'a>, AuditError> {
        match format {
            ExportFormat::Jsonl => Ok(Sink::Jsonl(out)),
            ExportFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                writer.write_record(CSV_COLUMNS)?;
                Ok(Sink::Csv(Box::new(writer)))
            }
        }
    }

    /// Hands over what was written before an interruption, so the partial output holds every
    /// line up to the resume point. Errors are moot: the export already failed.
    fn flush_partial(&mut self) {
        let _ = match self {
            Sink::Jsonl(out) => out.flush(),
            Sink::Csv(writer) => writer.flush(),
        };
    }

    fn finish(self, manifest: &Manifest) -> Result<(), AuditError> {
        match self {
            Sink::Jsonl(out) => {
                write_json_line(out, manifest)?;
                out.flush()
                    .map_err(|e| AuditError::io("flushing the export", e))
            }
            Sink::Csv(mut writer) => writer
                .flush()
                .map_err(|e| AuditError::io("flushing the export", e)),
        }
    }
}

fn write_json_line<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| AuditError::io("writing the export", e.into()))?;
    out.write_all(b"\n")
        .map_err(|e| AuditError::io("writing the export", e))
}

/// The sidecar manifest of an export file: `FILE.manifest.json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// The command line's export: to `out_path` (plus its sidecar manifest) or to stdout (CSV: the
/// manifest goes to stderr as one JSON line). Progress goes to stderr when it is a terminal.
///
/// A sidecar left by an earlier export to the same file is removed first, so a failed export
/// never sits next to a manifest that vouches for it.
pub fn export_to(
    log: &EventLog,
    opts: &ExportOptions,
    out_path: Option<&Path>,
    cancel: &AtomicBool,
) -> Result<Manifest, AuditError> {
    let on_terminal = std::io::stderr().is_terminal();
    let mut progress = |p: &ExportProgress| {
        if on_terminal {
            eprintln!(
                "exported {} events (tenant_seq {})",
                p.exported, p.tenant_seq
            );
        }
    };
    match out_path {
        Some(path) => {
            let sidecar = sidecar_path(path);
            match std::fs::remove_file(&sidecar) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AuditError::io(format!("removing {}", sidecar.display()), e)),
            }
            let file = File::create(path)
                .map_err(|e| AuditError::io(format!("creating {}", path.display()), e))?;
            let mut out = BufWriter::new(file);
            let manifest = export(log, opts, &mut out, &mut progress, cancel)?;
            let file = out.into_inner().map_err(|e| {
                AuditError::io(format!("writing {}", path.display()), e.into_error())
            })?;
            file.sync_all()
                .map_err(|e| AuditError::io(format!("syncing {}", path.display()), e))?;
            let mut text = serde_json::to_string(&manifest)
                .map_err(|e| AuditError::io("encoding the manifest", e.into()))?;
            text.push('\n');
            std::fs::write(&sidecar, text)
                .map_err(|e| AuditError::io(format!("writing {}", sidecar.display()), e))?;
            Ok(manifest)
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let manifest = export(log, opts, &mut out, &mut progress, cancel)?;
            if opts.format == ExportFormat::Csv {
                let text = serde_json::to_string(&manifest)
                    .map_err(|e| AuditError::io("encoding the manifest", e.into()))?;
                eprintln!("{text}");
            }
            Ok(manifest)
        }
    }
}

/// A flag that SIGINT (Ctrl-C) sets, for [`export`]'s `cancel`: the export stops between two
/// events and reports where to resume. A second SIGINT exits at once (status 130), for an output
/// that blocks. Command-line use only: it replaces the process's SIGINT handling.
///
/// When the handler cannot be installed the flag is never set and SIGINT keeps its default
/// effect (the process dies; the output has no manifest, which verify reports).
pub fn cancel_on_sigint() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("tenantry-sigint".into())
        .spawn(move || {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut interrupts) = signal(SignalKind::interrupt()) else {
                    return;
                };
                let _ = ready_tx.send(());
                interrupts.recv().await;
                set.store(true, Ordering::Relaxed);
                interrupts.recv().await;
                std::process::exit(130);
            });
        });
    if spawned.is_ok() {
        // Wait until the handler is installed, so an early Ctrl-C is not lost. Dropping the
        // sender (setup failed) ends the wait too.
        let _ = ready_rx.recv_timeout(Duration::from_secs(1));
    }
    flag
}

#[cfg(test)]
mod tests;
