//! The rebuild and the export of a **sealed** log (the server's default, `[log] seal = true`:
//! each event's personal fields sealed under its session's data key, docs/storage.md) against
//! the same sessions written plain, in the same run.
//!
//! The main history log is written without a key ring (it is reused across runs, and its
//! figures are comparable with earlier tables), so it prices neither opening each event's
//! sealed part on the read nor sealing each session's read-model entries at the commit. This
//! pair does: two fresh logs of the same generated sessions (same ids, texts and order), one
//! with a key ring (a master key of its own in its data dir), folded and exported alike, the
//! runs alternated between the two; the ratio is what sealing costs. Both logs are removed
//! afterwards.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use tenantry::events::keyring::Keyring;
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::events::seal::{self, DataKey, SealScope};
use tenantry::tenancy::TenantId;

use super::generate::{ctx_of, generate_sessions, SESSION_EVENTS};
use super::{
    export_figure, median, rebuild_all, timed, ExportFigure, HistoryBenchOptions, Throughput,
};

/// The same history's rebuild and export, plain and sealed.
#[derive(Clone, Debug, Serialize)]
pub struct SealedFigures {
    /// Sessions in each log (every tenant's, as the main history spreads them).
    pub sessions: u64,
    pub plain_rebuild: Throughput,
    pub sealed_rebuild: Throughput,
    pub plain_export: ExportFigure,
    pub sealed_export: ExportFigure,
    /// Nanoseconds one sealed part of a generated message takes to open (associated data
    /// built, XChaCha20-Poly1305 opened into a reused buffer), median of [`OPEN_TIMINGS`]:
    /// the floor of what a sealed event costs the fold more than a plain one.
    pub open_ns: f64,
}

impl SealedFigures {
    /// Sealed rebuild speed over plain (1.0: sealing costs the rebuild nothing).
    pub fn rebuild_ratio(&self) -> f64 {
        self.sealed_rebuild.events_per_s / self.plain_rebuild.events_per_s.max(f64::MIN_POSITIVE)
    }

    /// Sealed export speed over plain, in events/s: a sealed event's JSONL line is longer
    /// (its record carries the sealed bytes the chain covers), so MB/s would flatter it.
    pub fn export_ratio(&self) -> f64 {
        self.sealed_export.events_per_s / self.plain_export.events_per_s.max(f64::MIN_POSITIVE)
    }
}

/// Opens per timing of [`open_cost_ns`], and its timings.
const OPENS_TIMED: u32 = 20_000;
const OPEN_TIMINGS: usize = 5;

/// Bytes of the opened personal fields of a generated message (its user and a 40-byte text in
/// a MessagePack map).
const MESSAGE_PERSONAL_BYTES: usize = 64;

/// [`SealedFigures::open_ns`]: the fold's per-event work on a sealed part, alone, timed.
fn open_cost_ns() -> Result<f64, String> {
    let key = DataKey::generate();
    let ctx = ctx_of(0);
    let team = ctx.team_or_default();
    let scope = SealScope {
        tenant: ctx.tenant.as_str(),
        env: ctx.env.as_str(),
        team: team.as_str(),
        session: "session-0000001",
    };
    let id = [7; 16];
    let mut aad = Vec::new();
    seal::event_aad_into(&mut aad, &scope, &id);
    let sealed = seal::seal(&key, &aad, &[b'x'; MESSAGE_PERSONAL_BYTES]);
    let mut opened = Vec::with_capacity(MESSAGE_PERSONAL_BYTES);
    let mut timings = Vec::with_capacity(OPEN_TIMINGS);
    for _ in 0..OPEN_TIMINGS {
        let started = Instant::now();
        for _ in 0..OPENS_TIMED {
            opened.clear();
            seal::event_aad_into(&mut aad, &scope, &id);
            let span = seal::open_into(&key, &aad, &sealed, &mut opened)
                .map_err(|e| format!("timing an open: {e}"))?;
            std::hint::black_box(span);
        }
        timings.push(started.elapsed().as_secs_f64() * 1e9 / f64::from(OPENS_TIMED));
    }
    Ok(median(&timings))
}

/// Writes about `opts.sealed_events` events of sessions plainly and sealed, in
/// `{dir}/sealed-pair/`, and measures each log's rebuild (`jobs` tenants at once) and export of
/// every tenant, `runs` times each; `None` when `opts.sealed_events` is 0.
pub(super) fn run(
    dir: &Path,
    opts: &HistoryBenchOptions,
    (runs, jobs): (usize, NonZeroUsize),
    progress: &mut dyn FnMut(&str),
) -> Result<Option<SealedFigures>, String> {
    if opts.sealed_events == 0 {
        return Ok(None);
    }
    let pair = dir.join("sealed-pair");
    let sessions = opts.sealed_events.div_ceil(SESSION_EVENTS).max(1);
    let mut sides = Vec::new();
    for sealed in [false, true] {
        let name = if sealed { "sealed" } else { "plain" };
        let data_dir = pair.join(name);
        sides.push(prepare(
            &data_dir,
            sealed,
            sessions,
            opts.appenders,
            progress,
        )?);
    }
    // Alternated runs (plain, sealed, plain, …), so that neither log gets the warmer machine.
    let mut rebuilds = [Vec::new(), Vec::new()];
    let mut exports = [Vec::new(), Vec::new()];
    for _ in 0..runs.max(1) {
        for (i, (log, tenants)) in sides.iter().enumerate() {
            rebuilds[i].push(timed(1, || rebuild_all(log, tenants, jobs))?);
            exports[i].push(export_figure(log, tenants, 1, None)?);
        }
    }
    drop(sides);
    std::fs::remove_dir_all(&pair).map_err(|e| format!("removing {}: {e}", pair.display()))?;
    let [plain_rebuild, sealed_rebuild] =
        rebuilds.map(|r| median_run(r, |t| t.seconds, |t| &mut t.seconds_runs));
    let [plain_export, sealed_export] =
        exports.map(|r| median_run(r, |e| e.seconds, |e| &mut e.seconds_runs));
    let (Some(plain_rebuild), Some(sealed_rebuild), Some(plain_export), Some(sealed_export)) =
        (plain_rebuild, sealed_rebuild, plain_export, sealed_export)
    else {
        return Err("the sealed / plain pair measured nothing".into());
    };
    if sealed_rebuild.events != plain_rebuild.events {
        return Err(format!(
            "the sealed log folded {} events, the plain one {}: not the same history",
            sealed_rebuild.events, plain_rebuild.events
        ));
    }
    let figures = SealedFigures {
        sessions,
        plain_rebuild,
        sealed_rebuild,
        plain_export,
        sealed_export,
        open_ns: open_cost_ns()?,
    };
    progress(&format!(
        "sealed / plain, {sessions} sessions, alternated runs: rebuild {:.0} / {:.0} events/s = \
         {:.2}x, export {:.0} / {:.0} events/s = {:.2}x (medians); one open {:.0} ns",
        figures.sealed_rebuild.events_per_s,
        figures.plain_rebuild.events_per_s,
        figures.rebuild_ratio(),
        figures.sealed_export.events_per_s,
        figures.plain_export.events_per_s,
        figures.export_ratio(),
        figures.open_ns
    ));
    Ok(Some(figures))
}

/// The run in the middle by `seconds` (the lower middle of an even count), with every run's
/// seconds in its `seconds_runs` (`None`: no run).
fn median_run<T>(
    mut runs: Vec<T>,
    seconds: fn(&T) -> f64,
    seconds_runs: fn(&mut T) -> &mut Vec<f64>,
) -> Option<T> {
    let all: Vec<f64> = runs.iter().map(seconds).collect();
    runs.sort_by(|a, b| seconds(a).total_cmp(&seconds(b)));
    let mid = runs.len().checked_sub(1)? / 2;
    let mut run = runs.into_iter().nth(mid)?;
    *seconds_runs(&mut run) = all;
    Some(run)
}

/// One log of the pair in `data_dir` (made afresh), generated and checked sealed or plain;
/// with its tenants.
fn prepare(
    data_dir: &Path,
    sealed: bool,
    sessions: u64,
    appenders: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(EventLog, Vec<TenantId>), String> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .map_err(|e| format!("removing {}: {e}", data_dir.display()))?;
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let keyring = if sealed {
        let ring = Keyring::for_data_dir(data_dir, true)
            .map_err(|e| format!("the sealed log's key ring: {e}"))?;
        Some(ring.ok_or("the sealed log's key ring: no master key was made")?)
    } else {
        None
    };
    let opts = LogOptions {
        keyring,
        ..LogOptions::default()
    };
    let log = EventLog::open(&data_dir.join("log"), &opts).map_err(|e| e.to_string())?;
    generate_sessions(&log, sessions, appenders, progress)?;
    // The pair prices sealing only if one log seals and the other does not.
    let first = log
        .scope(&ctx_of(0))
        .sessions()
        .next()
        .ok_or("the pair's log has no session of tenant-00")?
        .map_err(|e| e.to_string())?;
    if first.user_sealed != sealed {
        return Err(format!(
            "the {} log's session {} has its user {}: the pair would not price sealing",
            if sealed { "sealed" } else { "plain" },
            first.session,
            if first.user_sealed { "sealed" } else { "plain" }
        ));
    }
    let mut tenants = log.tenants().map_err(|e| e.to_string())?;
    tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok((log, tenants))
}
