//! `tenantry erase --tenant T --env E (--session S | --user U)`: erasure by crypto-shredding,
//! offline (docs/cli.md#erase). Calls [`crate::erase::erase`], closes the log and compacts its
//! files, then prints what it erased. Refuses while a server holds the data dir, and on a
//! `[cluster]` node without a cluster key or while a live node holds the tenant's lease; an
//! unknown session or user changes nothing.
//!
//! On the JetStream backend it works in the offline cache
//! `{data_dir}/log-offline` and publishes the erasure as a record of the stream, holding the
//! lock of the server's cache `{data_dir}/log` throughout: a `serve` of this data dir would keep
//! the erased data keys in its memory, so it must not run meanwhile (and cannot start). That
//! cache applies the erasure's record when `serve` next opens it (the record raises the
//! tenant's ops revision, so the cache is not taken as current).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::TableOrJson;
use crate::config::{Config, LogBackend};
use crate::erase::Target;
use crate::tenancy::{EnvId, SessionId, TenantId};

/// `tenantry erase`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["session", "user"])))]
pub struct EraseArgs {
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The env of the session(s).
    #[arg(long)]
    env: EnvId,
    /// Erase this session (in any team of the env).
    #[arg(long)]
    session: Option<SessionId>,
    /// Erase every session of this user id in the env.
    #[arg(long)]
    user: Option<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    format: TableOrJson,
}

/// Holds the lock of the server's cache `{data_dir}/log` (JetStream): refuses while a `serve`
/// of the data dir runs.
fn hold_server_cache(config: &Config) -> anyhow::Result<Option<std::fs::File>> {
    let dir = crate::cluster::log_dir(config, crate::cluster::Opener::Server);
    match crate::events::log::hold_lock(&dir) {
        Ok(held) => Ok(held),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => anyhow::bail!(
            "the data dir {} is in use by a running server (it holds {}); stop it first: it \
             keeps the data keys in memory (nothing was changed)",
            config.server().data_dir.display(),
            dir.display()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("locking {}", dir.display()))),
    }
}

/// On a `[cluster]`: refuses while a live node holds the tenant's lease (it writes the tenant;
/// erasing is then its job, online).
fn refuse_if_leased(log: &crate::events::log::EventLog, tenant: &TenantId) -> anyhow::Result<()> {
    let holder = crate::cluster::lease::holder(log, tenant)
        .with_context(|| format!("checking whether a node holds tenant {tenant}'s lease"))?;
    if let Some(node) = holder {
        anyhow::bail!(
            "tenant {tenant} is held by node {node} of the cluster (its lease is live): erase \
             online on that node with DELETE /api/v1/sessions/{{id}} and a token with the admin \
             scope, or stop every node first (nothing was changed)"
        );
    }
    Ok(())
}

/// Runs `tenantry erase`.
pub(super) fn run(args: &EraseArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let data_dir = &config.server().data_dir;
    let _server_lock = match config.log().backend {
        LogBackend::JetStream => {
            if crate::cluster::shares_keys(config) && crate::cluster::key::load(data_dir)?.is_none()
            {
                anyhow::bail!("{}", crate::events::log::CLUSTER_REFUSAL)
            }
            Some(hold_server_cache(config)?)
        }
        LogBackend::Sled => None,
    };
    let target = match (&args.session, &args.user) {
        (Some(s), _) => Target::Session(s.clone()),
        (None, Some(u)) => Target::User(u.clone()),
        (None, None) => anyhow::bail!("name --session S or --user U"),
    };
    let log = crate::audit::open_log(config).map_err(|e| match e {
        crate::audit::AuditError::InUse(dir) => anyhow::anyhow!(
            "the data dir {} is in use by a running server; stop it first (nothing was changed)",
            dir.display()
        ),
        other => anyhow::Error::new(other),
    })?;
    if crate::cluster::shares_keys(config) {
        refuse_if_leased(&log, &args.tenant)?;
    }
    // Checked before asking, so a typo is told at once and nothing changes.
    crate::erase::find_sessions(&log, &args.tenant, &args.env, &target)?;
    if !args.yes {
        anyhow::bail!(
            "refusing to erase without --yes{}: erasure cannot be undone (nothing was changed)",
            if std::io::stdin().is_terminal() {
                ""
            } else {
                " (stdin is not a terminal)"
            }
        );
    }
    let projector = crate::projections::projector::Projector::new(&log)?;
    let erased = crate::erase::erase(&log, &projector, data_dir, &args.tenant, &args.env, &target)
        .with_context(|| format!("erasing in tenant {}", args.tenant))?;
    drop(projector);
    let dir = log.dir().to_owned();
    drop(log);
    crate::events::log::compact::compact(&dir).with_context(|| {
        format!(
            "compacting {} after the erasure (the keys are destroyed; run erase again to finish)",
            dir.display()
        )
    })?;
    match args.format {
        TableOrJson::Table => print!("{}", erased.table()),
        TableOrJson::Json => println!("{}", serde_json::to_string_pretty(&erased)?),
    }
    let unsealed =
        erased.sessions.len() as u64 - erased.keys_destroyed.min(erased.sessions.len() as u64);
    if unsealed > 0 {
        eprintln!(
            "warning: {unsealed} of the sessions had no data key: their events were written \
             unsealed (before sealing, or with [log] seal = false) and keep their personal \
             fields inside the hashed log; only their other copies were removed"
        );
    }
    Ok(ExitCode::SUCCESS)
}
