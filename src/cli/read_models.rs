//! `tenantry usage` and `tenantry rebuild`: the read models, offline (no running server);
//! `usage --server URL` through a running server's API.

use std::process::ExitCode;

use super::remote::Remote;
use super::{load_config, TableOrJson, UsageGroup};
use crate::config::Config;
use crate::events::log::EventLog;
use crate::projections::projector::UsageRow;
use crate::projections::snapshot::SnapshotStore;

/// Opens the data dir's log for an offline command.
fn open_offline(config: &Config) -> anyhow::Result<EventLog> {
    Ok(crate::audit::open_log(config)?)
}

pub(super) fn usage(
    config: &Config,
    tenant: &crate::tenancy::TenantId,
    env: Option<&crate::tenancy::EnvId>,
    by: UsageGroup,
    format: TableOrJson,
) -> anyhow::Result<ExitCode> {
    use crate::projections::projector::{Projector, UsageBy};
    let log = open_offline(config)?;
    let projector = Projector::new(&log)?;
    projector.catch_up(&log, tenant, &mut |_| {})?;
    let by = match by {
        UsageGroup::Team => UsageBy::Team,
        UsageGroup::Channel => UsageBy::Channel,
        UsageGroup::Day => UsageBy::Day,
    };
    let rows = projector.usage(tenant, env, None, by)?;
    print_usage(tenant, &rows, format)
}

/// `tenantry usage --server URL`: the server's usage of the token's env, printed as offline.
pub(super) fn usage_through(
    remote: &Remote,
    tenant: &crate::tenancy::TenantId,
    env: Option<&crate::tenancy::EnvId>,
    by: UsageGroup,
    format: TableOrJson,
) -> anyhow::Result<ExitCode> {
    let by = match by {
        UsageGroup::Team => "team",
        UsageGroup::Channel => "channel",
        UsageGroup::Day => "day",
    };
    if let Some(env) = env {
        remote.require_env(env)?;
    }
    let answer = remote.usage(by)?;
    let rows: Vec<UsageRow> = serde_json::from_value(answer["usage"].clone())
        .map_err(|e| anyhow::anyhow!("the server's usage rows: {e}"))?;
    print_usage(tenant, &rows, format)
}

fn print_usage(
    tenant: &crate::tenancy::TenantId,
    rows: &[UsageRow],
    format: TableOrJson,
) -> anyhow::Result<ExitCode> {
    use crate::projections::projector::usage_table;
    match format {
        TableOrJson::Table => print!("{}", usage_table(rows)),
        TableOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tenant": tenant, "usage": rows }))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn rebuild(
    config_path: &std::path::Path,
    tenant: Option<crate::tenancy::TenantId>,
    snapshots: bool,
    jobs: Option<std::num::NonZeroUsize>,
) -> anyhow::Result<ExitCode> {
    use crate::projections::projector::{longest_logs_first, rebuild_jobs, Projector};
    let config = load_config(config_path)?;
    let log = open_offline(&config)?;
    let projector = Projector::new(&log)?;
    let tenants = match tenant {
        Some(t) => vec![t],
        None => longest_logs_first(&log, log.tenants()?)?,
    };
    let jobs = jobs.unwrap_or_else(|| rebuild_jobs(tenants.len()));
    let store = SnapshotStore::new(config.server().data_dir.join("sessions"));
    let started = std::time::Instant::now();
    let progress = |tenant: &crate::tenancy::TenantId, n: u64| {
        eprintln!("rebuild {tenant}: {n} events folded");
    };
    let done = |tenant: &crate::tenancy::TenantId, folded: u64| -> anyhow::Result<()> {
        eprintln!("rebuild {tenant}: read models done, {folded} events");
        if snapshots {
            let written =
                crate::projections::load::rewrite_snapshots(&log, &projector, &store, tenant)?;
            eprintln!("rebuild {tenant}: {written} snapshots rewritten from the log");
        }
        Ok(())
    };
    let folded = projector.rebuild_tenants(&log, &tenants, jobs, &progress, &done)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "rebuild: {} tenants, {folded} events in {secs:.2} s ({jobs} {})",
        tenants.len(),
        if jobs.get() == 1 { "job" } else { "jobs" }
    );
    Ok(ExitCode::SUCCESS)
}
