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
//! - Bounded memory: events come from [`crate::events::log::TenantReader::events`] one frame at a
//!   time and leave as one line each; nothing is collected.
//! - The export covers the tenant's log up to its head *when the export starts*, so an export
//!   of a live log ends.
//! - The manifest is written only after the last event, so an interrupted or failed export has
//!   none and verifies as incomplete; the error names the `--from-seq` that resumes it.
//! - Every exported body is re-encoded from the decoded event and checked to chain to the hash
//!   the log computed over the stored bytes (see the module docs of [`super`]).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{EventLine, Manifest, CSV_COLUMNS, FORMAT, TYPE_MANIFEST};
use super::{in_window, AuditError};
use crate::events::codec::{chain_hash, encode_body};
use crate::events::log::{EventLog, StoredEvent};
use crate::events::schema::Event;
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
    let head = reader.head()?;
    let mut sink = Sink::new(opts.format, out)?;
    let mut manifest = ManifestBuilder::new(opts, from);
    let mut next = from;
    let mut last_report = Instant::now();
    let last = head.map_or(0, |h| h.tenant_seq);
    if last >= from {
        for item in reader.events(from..=last) {
            if cancel.load(Ordering::Relaxed) {
                sink.flush_partial();
                return Err(AuditError::Interrupted {
                    next_tenant_seq: next,
                });
            }
            let partial = |e: AuditError| AuditError::Partial {
                next_tenant_seq: next,
                cause: Box::new(e),
            };
            let stored = item.map_err(|e| partial(e.into()))?;
            debug_assert_eq!(stored.event.tenant, opts.tenant, "reads stay in the tenant");
            if opts.selects(&stored.event) {
                let line = checked_line(&stored).map_err(partial)?;
                sink.write(&line).map_err(partial)?;
                manifest.add(&line);
            }
            next = stored.event.tenant_seq + 1;
            if last_report.elapsed() >= PROGRESS_INTERVAL {
                progress(&ExportProgress {
                    exported: manifest.count,
                    tenant_seq: stored.event.tenant_seq,
                });
                last_report = Instant::now();
            }
        }
    }
    let manifest = manifest.finish();
    sink.finish(&manifest).map_err(|e| AuditError::Partial {
        next_tenant_seq: next,
        cause: Box::new(e),
    })?;
    Ok(manifest)
}

/// The export line of `stored`, with its body re-encoded and checked against the stored hash.
fn checked_line(stored: &StoredEvent) -> Result<EventLine, AuditError> {
    let body = encode_body(&stored.event);
    // The log hashed the bytes it read; if our encoding differs (an older schema version), the
    // line would not verify, and exporting it anyway would accuse an intact log of tampering.
    if chain_hash(&stored.prev_hash, &body) != stored.hash {
        return Err(AuditError::Reencode {
            tenant_seq: stored.event.tenant_seq,
        });
    }
    Ok(EventLine::new(stored, Some(&body)))
}

/// Collects the manifest's fields while lines are written.
struct ManifestBuilder {
    manifest: Manifest,
    count: u64,
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
            },
            count: 0,
        }
    }

    fn add(&mut self, line: &EventLine) {
        let m = &mut self.manifest;
        if m.first_tenant_seq.is_none() {
            m.first_tenant_seq = Some(line.tenant_seq);
            m.first_prev_hash = Some(line.prev_hash.clone());
        }
        m.last_tenant_seq = Some(line.tenant_seq);
        m.head_hash = Some(line.hash.clone());
        self.count += 1;
    }

    fn finish(mut self) -> Manifest {
        self.manifest.count = self.count;
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

    fn write(&mut self, line: &EventLine) -> Result<(), AuditError> {
        match self {
            Sink::Jsonl(out) => write_json_line(*out, line),
            Sink::Csv(writer) => Ok(writer.write_record(line.to_csv_row())?),
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
