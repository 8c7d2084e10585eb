//! `tenantry trim`: the retention trim `serve` runs hourly, run once offline
//! (docs/cli.md#trim, docs/storage.md#retention).

use std::process::ExitCode;

use crate::actors::clock::{Clock, SystemClock};
use crate::actors::retention::{cutoff_ms, trim_all};
use crate::config::Config;
use crate::tenancy::TenantId;

/// `tenantry trim`.
#[derive(clap::Args)]
pub struct TrimArgs {
    /// Only this tenant (it must have a `retention`); default: every tenant that has one.
    #[arg(long)]
    pub tenant: Option<TenantId>,
    /// Trim as if the time were TIME (RFC 3339 or unix ms), not now: a later time trims more.
    /// For previews on a copy of the data dir, and for tests.
    #[arg(long, value_name = "TIME", value_parser = crate::audit::parse_time)]
    pub as_of: Option<u64>,
}

/// Trims the tenants `args` names; prints one line per tenant (stdout) and exits 1 if any
/// trim failed. Refused with the JetStream backend (the server trims there).
pub(super) fn trim(args: &TrimArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut policies = Vec::new();
    for t in config.tenants().values() {
        if args.tenant.as_ref().is_some_and(|only| only != &t.id) {
            continue;
        }
        match t.retention {
            Some(keep) => policies.push((t.id.clone(), keep)),
            None if args.tenant.is_some() => anyhow::bail!(
                "tenant {} has no retention: set [tenants.{}] retention = \"90d\" in {}",
                t.id,
                t.id,
                config.source().display()
            ),
            None => {}
        }
    }
    if let Some(only) = &args.tenant {
        if policies.is_empty() {
            anyhow::bail!("tenant {only} is not configured");
        }
    }
    if config.log().backend == crate::config::LogBackend::JetStream {
        // Its offline cache would write to the stream beside a live server that owns the
        // tenant, fencing that server out of it.
        anyhow::bail!(
            "tenantry trim works with log.backend = \"sled\" only; with \"jetstream\" the \
             running server trims each tenant's retention on its own (hourly, on the node that \
             owns the tenant)"
        );
    }
    let log = crate::audit::open_log(config).map_err(|e| match e {
        crate::audit::AuditError::InUse(_) => {
            anyhow::anyhow!("{e}; the running server trims on its own (hourly)")
        }
        e => anyhow::Error::new(e),
    })?;
    let now = args.as_of.unwrap_or_else(|| Clock::now_ms(&SystemClock));
    let mut failed = false;
    for ((tenant, result), (_, keep)) in trim_all(&log, &policies, now).into_iter().zip(&policies) {
        let cutoff = crate::audit::format_time(cutoff_ms(now, *keep));
        match result {
            Ok(r) => match r.anchor {
                Some(a) => println!(
                    "trim {tenant}: {} events trimmed (before {cutoff}); the log starts at \
                     tenant_seq {}, {} trimmed in all",
                    r.events, a.first_tenant_seq, a.trimmed
                ),
                None => println!("trim {tenant}: nothing before {cutoff}"),
            },
            Err(e) => {
                eprintln!("trim {tenant}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
