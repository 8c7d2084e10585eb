//! `tenantry cluster status`: the stream, the live nodes and the tenants' owners.

use std::io::Write;
use std::process::ExitCode;

use super::{load_config, TableOrJson};
use crate::cluster::status::{status, ClusterStatus};
use crate::cluster::{connect_replica, replica_options, Opener};

#[derive(clap::Args)]
pub(super) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// The stream (leader, current replicas, records), the nodes with a live heartbeat, and
    /// each tenant's owner. Works while the cluster runs.
    Status {
        #[arg(long, value_enum, default_value = "table")]
        format: TableOrJson,
    },
}

pub(super) fn run(config_path: &std::path::Path, args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Status { format } = &args.command;
    let config = load_config(config_path)?;
    let Some(opts) = replica_options(&config, Opener::Offline) else {
        anyhow::bail!(
            "log.backend is \"sled\": a single node, no cluster (set [log] backend = \"jetstream\" \
             and [cluster] node)"
        );
    };
    let replica = connect_replica(&config, &opts)?;
    let tenants: Vec<String> = config.tenants().keys().map(ToString::to_string).collect();
    let status = status(&replica, &tenants).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    match format {
        TableOrJson::Json => writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?,
        TableOrJson::Table => print_table(&mut out, &status)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(out: &mut impl Write, status: &ClusterStatus) -> std::io::Result<()> {
    let s = &status.stream;
    writeln!(
        out,
        "stream {}: {} replicas, leader {}, {}/{} followers current, {} records, {} bytes",
        s.name,
        s.replicas,
        s.leader.as_deref().unwrap_or("-"),
        s.followers_current,
        s.followers,
        s.records,
        s.bytes
    )?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    writeln!(out, "\n{:<24} {:>18}", "node", "last heartbeat")?;
    for n in &status.nodes {
        let age = now_ms.saturating_sub(u128::from(n.heartbeat_ms));
        writeln!(out, "{:<24} {:>15} ms ago", n.node, age)?;
    }
    writeln!(out, "\n{:<24} {:<24}", "tenant", "owner")?;
    for t in &status.tenants {
        writeln!(
            out,
            "{:<24} {:<24}",
            t.tenant,
            t.owner.as_deref().unwrap_or("- (none)")
        )?;
    }
    Ok(())
}
