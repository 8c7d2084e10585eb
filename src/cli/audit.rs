//! The `replay`, `export` and `verify` subcommands: their arguments (clap), what they print and
//! how they exit. `cli` parses, loads the config and calls these; the work is in `audit`.
//!
//! Exit statuses: 0 success (verify: intact; what-if: identical), 1 failure (verify: a problem
//! found; what-if: diverged; any other command: an error), 2 verify could not run (unreadable
//! file, unusable config or log). Clap's own usage errors are 2 as well.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::remote::verify::RemoteVerdict;
use super::remote::{read_jsonl, stored_event, write_export, Remote, ServerArgs};
use crate::audit::anchor::{read_public_key, HeadSigner};
use crate::audit::export::{
    cancel_on_sigint, export_to, sidecar_path, ExportFormat, ExportOptions,
};
use crate::audit::replay::write_event;
use crate::audit::replay::{
    find_session, first_kept_seq, replay as replay_events, state_at, ReplayFormat, ReplayOptions,
    ReplayScope,
};
use crate::audit::verify::{verify_file_with_key, verify_log, Verdict};
use crate::audit::verify_snapshots::verify_snapshots;
use crate::audit::what_if::what_if_with_config;
use crate::audit::{open_log, parse_time, AuditError};
use crate::config::Config;
use crate::projections::snapshot::SnapshotStore;
use crate::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// `verify`: exit status when everything checked out.
pub const EXIT_INTACT: u8 = 0;
/// `verify`: exit status when a problem was found (named on stdout).
pub const EXIT_BROKEN: u8 = 1;
/// `verify`: exit status when verification could not run.
pub const EXIT_UNUSABLE: u8 = 2;

/// `tenantry export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The tenant whose audit trail to export.
    #[arg(long)]
    pub tenant: TenantId,
    /// Only this environment. Skips events, so the export's chain is checked event by event.
    #[arg(long)]
    pub env: Option<EnvId>,
    /// Only this team (what a team-scoped API caller gets). Skips events like --env.
    #[arg(long)]
    pub team: Option<TeamId>,
    /// Only events at or after TIME: RFC 3339 UTC (2026-11-23T10:00:00Z) or unix ms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Only events before TIME: RFC 3339 UTC or unix ms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
    /// Start at this tenant_seq; resumes an interrupted export (the chain stays linked).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub from_seq: u64,
    /// `jsonl` (the manifest is the last line) or `csv` (RFC 4180; the manifest goes to
    /// FILE.manifest.json, or to stderr when writing to stdout).
    #[arg(long, value_name = "jsonl|csv", default_value = "jsonl")]
    pub format: ExportFormat,
    /// Write to FILE, and the manifest to FILE.manifest.json, instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub through: ServerArgs,
}

/// `tenantry verify`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["file", "tenant"])))]
pub struct VerifyArgs {
    /// An export file: `.jsonl` or `.csv` (otherwise JSONL when it starts with `{`).
    #[arg(conflicts_with = "server")]
    pub file: Option<PathBuf>,
    /// Verify this tenant's log from genesis (in the data dir, or by the server with --server),
    /// instead of a file.
    #[arg(long, conflicts_with = "file")]
    pub tenant: Option<TenantId>,
    /// The manifest of a CSV export, when it is not beside it as FILE.manifest.json.
    #[arg(long, value_name = "FILE", requires = "file")]
    pub manifest: Option<PathBuf>,
    /// Also check the manifest's signed chain heads with this public key (64 hex digits, as
    /// `tenantry keys export-pubkey` writes it): signatures, the events they name, and that
    /// the tail was not cut off.
    #[arg(long, value_name = "KEYFILE", requires = "file")]
    pub pubkey: Option<PathBuf>,
    #[command(flatten)]
    pub through: ServerArgs,
}

impl VerifyArgs {
    /// Whether this verification reads the data dir (and so needs the config).
    pub fn needs_config(&self) -> bool {
        self.tenant.is_some() && self.through.server.is_none()
    }
}

/// `tenantry replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The tenant.
    #[arg(long)]
    pub tenant: TenantId,
    /// Only this environment. With --session and no --env, every env of the tenant (the
    /// config's and the log's) is searched, and an id found in several is listed.
    #[arg(long)]
    pub env: Option<EnvId>,
    /// Only this team (with --session and --env: the session's team, default `default`; with
    /// --session alone: searched in every team unless given).
    #[arg(long)]
    pub team: Option<TeamId>,
    /// One session's events, in seq order, instead of the tenant's in tenant_seq order.
    #[arg(long)]
    pub session: Option<SessionId>,
    /// First position: seq with --session, else tenant_seq.
    #[arg(long, value_name = "N")]
    pub from_seq: Option<u64>,
    /// Last position (inclusive): seq with --session, else tenant_seq.
    #[arg(long, value_name = "N")]
    pub to_seq: Option<u64>,
    /// Only events at or after TIME: RFC 3339 UTC (2026-11-23T10:00:00Z) or unix ms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Only events before TIME: RFC 3339 UTC or unix ms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
    /// `text` (a readable timeline) or `json` (one object per event).
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub format: ReplayFormat,
    /// Print the session's state (JSON) as of this seq: the fold of its events 1..=SEQ.
    #[arg(
        long,
        value_name = "SEQ",
        requires = "session",
        conflicts_with = "with_flow"
    )]
    pub at: Option<u64>,
    /// What-if: re-run the session's recorded messages through this flow file and compare with
    /// what was recorded. Exits 1 when they diverge.
    #[arg(long, value_name = "FILE", requires = "session")]
    pub with_flow: Option<PathBuf>,
    #[command(flatten)]
    pub through: ServerArgs,
}

/// Runs `tenantry export`: streams to `--out` or stdout. On an error or SIGINT part-way the
/// error names the `--from-seq` that resumes.
pub fn export(args: &ExportArgs, config: &Config) -> Result<ExitCode, AuditError> {
    let log = open_log(config)?;
    let opts = ExportOptions {
        tenant: args.tenant.clone(),
        env: args.env.clone(),
        team: args.team.clone(),
        since_ms: args.since,
        until_ms: args.until,
        from_seq: args.from_seq,
        format: args.format,
        signer: export_signer(config),
    };
    let cancel = cancel_on_sigint();
    let manifest = export_to(&log, &opts, args.out.as_deref(), &cancel)?;
    if let Some(path) = &args.out {
        eprintln!(
            "exported {} events of tenant {} to {} (manifest {})",
            manifest.count,
            manifest.tenant,
            path.display(),
            sidecar_path(path).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The chain head key for an export, when the data dir's secret store has one; else (none, or
/// the store cannot be opened) the export carries only the stored heads, and says so.
fn export_signer(config: &Config) -> Option<std::sync::Arc<HeadSigner>> {
    match HeadSigner::load(&config.server().data_dir) {
        Ok(Some(signer)) => Some(std::sync::Arc::new(signer)),
        Ok(None) => {
            eprintln!(
                "note: no chain head key (global/chain_head_key): the export's tail is not \
                 signed; tenantry serve makes the key"
            );
            None
        }
        Err(e) => {
            eprintln!("note: the export's tail is not signed: {e}");
            None
        }
    }
}

/// Runs `tenantry verify`: prints the verdict on stdout (errors on stderr) and returns
/// [`EXIT_INTACT`], [`EXIT_BROKEN`] or [`EXIT_UNUSABLE`]. `config` is needed only when
/// [`VerifyArgs::needs_config`].
pub fn verify(args: &VerifyArgs, config: Option<&Config>) -> ExitCode {
    let verdict = match (&args.file, &args.tenant, config) {
        (Some(file), _, _) => match args.pubkey.as_deref().map(read_public_key).transpose() {
            Ok(key) => verify_file_with_key(file, args.manifest.as_deref(), key.as_ref()),
            Err(e) => Err(e.into()),
        },
        (None, Some(tenant), Some(config)) => open_log(config).and_then(|log| {
            let verdict = verify_log(&log, tenant)?;
            if !verdict.is_intact() {
                return Ok(verdict);
            }
            let store = SnapshotStore::new(config.server().data_dir.join("sessions"));
            Ok(match verify_snapshots(&log, &store, tenant)? {
                Some(problem) => Verdict::Broken(problem),
                None => verdict,
            })
        }),
        _ => Err(AuditError::Usage(
            "give an export FILE, or --tenant T to verify the log".to_owned(),
        )),
    };
    match verdict {
        Ok(verdict) => {
            println!("{verdict}");
            ExitCode::from(match verdict {
                Verdict::Intact(_) => EXIT_INTACT,
                Verdict::Broken(_) => EXIT_BROKEN,
            })
        }
        Err(e) => {
            eprintln!("error: {e}");
            if let (AuditError::InUse(_), Some(config), Some(tenant)) = (&e, config, &args.tenant) {
                let command = format!("verify --tenant {tenant}");
                eprintln!("{}", super::remote::in_use_hint(config, &command));
            }
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// Runs `tenantry replay`: a timeline (or JSONL), the state `--at` a seq, or a what-if replay
/// `--with-flow` (exit 1 when it diverges).
pub fn replay(args: &ReplayArgs, config: &Config) -> Result<ExitCode, AuditError> {
    let log = open_log(config)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let session_ctx = || match (&args.env, &args.session) {
        (Some(env), _) => Ok(TenantCtx::new(
            args.tenant.clone(),
            env.clone(),
            args.team.clone(),
        )),
        (None, Some(session)) => {
            let envs: Vec<EnvId> = config
                .tenant(&args.tenant)
                .map(|t| t.environments.iter().map(|e| e.id.clone()).collect())
                .unwrap_or_default();
            find_session(&log, &args.tenant, &envs, args.team.as_ref(), session)
        }
        (None, None) => Err(AuditError::Usage("--session is needed here".to_owned())),
    };
    let write_error = |e| AuditError::io("writing stdout", e);
    if let (Some(session), Some(seq)) = (&args.session, args.at) {
        let state = state_at(&log, &session_ctx()?, session, seq)?;
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| AuditError::io("encoding the state", e.into()))?;
        writeln!(out, "{text}").map_err(write_error)?;
        out.flush().map_err(write_error)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(session), Some(flow)) = (&args.session, &args.with_flow) {
        let ctx = session_ctx()?;
        let result = what_if_with_config(&log, config, &ctx, session, flow, &mut out)?;
        out.flush().map_err(write_error)?;
        return Ok(if result.identical() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let scope = match &args.session {
        Some(session) => {
            let ctx = session_ctx()?;
            let first = first_kept_seq(&log.scope(&ctx), session)?;
            if first > 1 {
                eprintln!(
                    "replay: session {ctx}/{session} starts at seq {first}: seqs 1..={} were \
                     trimmed by the tenant's retention",
                    first - 1
                );
            }
            ReplayScope::Session {
                ctx,
                session: session.clone(),
            }
        }
        None => ReplayScope::Tenant {
            tenant: args.tenant.clone(),
            env: args.env.clone(),
            team: args.team.clone(),
        },
    };
    let opts = ReplayOptions {
        scope,
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        since_ms: args.since,
        until_ms: args.until,
        format: args.format,
    };
    replay_events(&log, &opts, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// `tenantry verify --tenant T --server URL`: the server verifies the tenant's chain; its
/// progress goes to stderr, the verdict to stdout as offline (saying what the server does not
/// tell), with [`verify`]'s exit statuses.
pub fn verify_through(remote: &Remote) -> ExitCode {
    let tenant = remote.tenant().clone();
    let mut progress = |events: u64, tenant_seq: u64| {
        eprintln!("verify {tenant}: {events} events good, up to tenant_seq {tenant_seq}");
    };
    match remote.verify(&mut progress) {
        Ok(verdict) => {
            println!("{verdict}");
            eprintln!(
                "note: through the server: no session count, session snapshots not checked, a \
                 problem's kind only; `tenantry verify --tenant {tenant}` on the host, with the \
                 server stopped, checks and names everything"
            );
            ExitCode::from(match verdict {
                RemoteVerdict::Intact(_) => EXIT_INTACT,
                RemoteVerdict::Broken { .. } => EXIT_BROKEN,
            })
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// `tenantry export --server URL`: the server's export of the token's env (and `--team`),
/// written as offline (`--out` FILE gets its manifest sidecar too, for JSONL).
pub fn export_through(args: &ExportArgs, remote: &Remote) -> anyhow::Result<ExitCode> {
    if args.from_seq != 1 {
        anyhow::bail!(
            "--from-seq is not available through the server (its export starts at the first \
             event); leave it out, or stop the server to resume offline"
        );
    }
    if let Some(env) = &args.env {
        remote.require_env(env)?;
    }
    let body = remote.export(args.format, args.since, args.until, args.team.as_ref())?;
    let manifest = write_export(body, args.format, args.out.as_deref())?;
    match (&args.out, &manifest) {
        (Some(path), Some(manifest)) => eprintln!(
            "exported {} events of tenant {} to {} (manifest {})",
            manifest.count,
            manifest.tenant,
            path.display(),
            sidecar_path(path).display()
        ),
        (_, None) => eprintln!(
            "note: the server's CSV export carries no manifest (export --format jsonl for one)"
        ),
        (None, Some(_)) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenantry replay --server URL`: the events of the server's export (token's env; `--team`),
/// selected and printed exactly as offline.
pub fn replay_through(args: &ReplayArgs, remote: &Remote) -> anyhow::Result<ExitCode> {
    if args.at.is_some() || args.with_flow.is_some() {
        anyhow::bail!(
            "--at and --with-flow are not available through the server: they read the data dir \
             (stop the server to use them)"
        );
    }
    if let Some(env) = &args.env {
        remote.require_env(env)?;
    }
    let range = args.from_seq.unwrap_or(1)..=args.to_seq.unwrap_or(u64::MAX);
    // A session is looked up in one team (`default` without --team), as offline; the tenant's
    // events are narrowed to --team by the server.
    let session_team = args.team.clone().unwrap_or_else(TeamId::default_team);
    let header_team = args
        .session
        .is_none()
        .then_some(args.team.as_ref())
        .flatten();
    // For a session the time window applies here only, so that a session outside it is told
    // apart from a missing one (as offline).
    let (since, until) = match args.session {
        Some(_) => (None, None),
        None => (args.since, args.until),
    };
    let in_window = |at: u64| {
        args.since.is_none_or(|since| at >= since) && args.until.is_none_or(|until| at < until)
    };
    let body = remote.export(ExportFormat::Jsonl, since, until, header_team)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut session_seen = false;
    read_jsonl(body, &mut |line| {
        let position = match &args.session {
            Some(session) => {
                if line.session != session.as_str() || line.team != session_team.as_str() {
                    return Ok(());
                }
                session_seen = true;
                line.seq
            }
            None => line.tenant_seq,
        };
        if range.contains(&position) && in_window(line.at) {
            write_event(&mut out, &stored_event(line)?, args.format)?;
        }
        Ok(())
    })?;
    out.flush()
        .map_err(|e| AuditError::io("writing stdout", e))?;
    if let (Some(session), false) = (&args.session, session_seen) {
        let env = args.env.as_ref().map_or("the token's env", EnvId::as_str);
        anyhow::bail!(
            "no session {session} in {}/{env}/{session_team} through the server (check --env \
             and --team)",
            args.tenant
        );
    }
    Ok(ExitCode::SUCCESS)
}
