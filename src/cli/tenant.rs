//! `tenantry tenant delete T`: offboarding, offline (docs/cli.md#tenant-delete). Deletes the
//! tenant's data from the data dir with [`crate::offboard::offboard_tenant`] and prints what it
//! freed. Refuses while a server holds the data dir (then `DELETE /api/v1/tenants/{tenant}` with
//! an `admin` token does it online); with the JetStream backend (its offline cache,
//! `log-offline`), while a live cluster node holds the tenant's lease (the same online route, on
//! that node).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::TableOrJson;
use crate::config::{Config, LogBackend};
use crate::projections::projector::Projector;
use crate::tenancy::TenantId;

/// `tenantry tenant`.
#[derive(Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    action: TenantAction,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Delete every event, session, idempotency record, signed chain head, read model,
    /// snapshot and secret of the tenant from the data dir, and print what was freed. Offline
    /// (a running server: DELETE /api/v1/tenants/{tenant} with an admin token; with JetStream,
    /// refused while a live node holds the tenant's lease). Running it again frees nothing.
    Delete(DeleteArgs),
}

#[derive(Args)]
struct DeleteArgs {
    /// The tenant whose data is deleted (it need not be in config.toml any more).
    tenant: TenantId,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    format: TableOrJson,
}

/// Runs `tenantry tenant ...`.
pub(super) fn run(args: &TenantArgs, config: &Config) -> anyhow::Result<ExitCode> {
    match &args.action {
        TenantAction::Delete(args) => delete(args, config),
    }
}

fn delete(args: &DeleteArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let tenant = &args.tenant;
    let data_dir = &config.server().data_dir;
    let log = crate::audit::open_log(config).map_err(|e| match e {
        crate::audit::AuditError::InUse(dir) => anyhow::anyhow!(
            "the data dir {} is in use by a running server; stop it, or delete online with \
             DELETE /api/v1/tenants/{tenant} and a token with the admin scope \
             (`tenantry token --tenant {tenant} --env E --scope admin`)",
            dir.display()
        ),
        other => anyhow::Error::new(other),
    })?;
    if config.log().backend == LogBackend::JetStream {
        refuse_if_leased(&log, tenant)?;
    }
    if !args.yes && !confirmed(tenant, data_dir)? {
        eprintln!("not deleted");
        return Ok(ExitCode::FAILURE);
    }
    let projector = Projector::new(&log)?;
    let freed = crate::offboard::offboard_tenant(&log, &projector, data_dir, tenant)
        .with_context(|| format!("deleting tenant {tenant}"))?;
    match args.format {
        TableOrJson::Table => print!("{}", freed.table()),
        TableOrJson::Json => println!("{}", serde_json::to_string_pretty(&freed)?),
    }
    if freed.is_empty() {
        eprintln!(
            "tenant {tenant}: nothing to free (no data of it in {})",
            data_dir.display()
        );
    }
    if freed.resumed {
        eprintln!("tenant {tenant}: an interrupted deletion was finished");
    }
    if config.tenant(tenant).is_some() {
        eprintln!(
            "warning: tenant {tenant} is still in the config: `serve` will serve it again, with \
             no data; remove [tenants.{tenant}] (or its seed file) to stop serving it"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// With JetStream: refuses while a live node holds the tenant's lease (it writes the tenant and
/// serves it from its own cache; deleting under it is the owner's job, online).
fn refuse_if_leased(log: &crate::events::log::EventLog, tenant: &TenantId) -> anyhow::Result<()> {
    let holder = crate::cluster::lease::holder(log, tenant)
        .with_context(|| format!("checking whether a node holds tenant {tenant}'s lease"))?;
    if let Some(node) = holder {
        anyhow::bail!(
            "tenant {tenant} is held by node {node} of the cluster (its lease is live): delete \
             it online on that node with DELETE /api/v1/tenants/{tenant} and a token with the \
             admin scope (`tenantry token --tenant {tenant} --env E --scope admin`), or stop \
             every node first (nothing was changed)"
        );
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses and names the flag.
fn confirmed(tenant: &TenantId, data_dir: &std::path::Path) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "refusing to delete tenant {tenant} without confirmation: stdin is not a terminal; \
             add --yes to delete without asking (nothing was changed)"
        );
    }
    let mut stderr = std::io::stderr().lock();
    write!(
        stderr,
        "Delete every event, session, snapshot and secret of tenant {tenant} in {}? \
         This cannot be undone. Type the tenant id to confirm: ",
        data_dir.display()
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(answer.trim() == tenant.as_str())
}
