//! `Config::summary`: the readable overview printed by `tenantry check-config`.
//!
//! Invariant: shows no secrets and no free-form values (tenant settings and channel config are
//! counted, not printed), so the output is safe to paste into a ticket.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use super::flow::Flow;
use super::{Config, LogBackend, TenantConfig};

impl Config {
    /// A multi-line summary: mode, listen address, data dir, NATS, auth, runtime, log and
    /// cluster, counts, then each tenant with its envs and each team with its flow and channels.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail, so the results of `writeln!` are ignored.
        let _ = writeln!(out, "config: {}", self.source.display());
        let mode = match (&self.dedicated, self.excluded.is_empty()) {
            (Some(tenant), _) => format!("dedicated: {tenant}"),
            (None, true) => "shared".to_owned(),
            (None, false) => {
                let excluded: Vec<&str> = self.excluded.iter().map(|id| id.as_str()).collect();
                format!("shared, excluding {}", excluded.join(", "))
            }
        };
        let _ = writeln!(out, "mode: {mode}");
        let _ = writeln!(out, "listen: {}", self.server.listen);
        let _ = writeln!(out, "data dir: {}", self.server.data_dir.display());
        match &self.nats {
            Some(nats) => {
                let _ = writeln!(
                    out,
                    "nats: on ({}, subject prefix {}, {})",
                    nats.url_for_display(),
                    nats.subject_prefix,
                    nats.auth
                );
            }
            None => {
                let _ = writeln!(out, "nats: off");
            }
        }
        let _ = writeln!(
            out,
            "auth: issuer {}, audience {}",
            self.auth.issuer, self.auth.audience
        );
        let _ = writeln!(
            out,
            "runtime: session idle timeout {}, snapshot every {} events, {} messages in flight at \
             most, {} per tenant, {} running at once (shared by the busy tenants)",
            humantime::format_duration(self.runtime.session_idle_timeout),
            self.runtime.snapshot_every,
            self.runtime.inflight_max,
            self.inflight_per_tenant_max(),
            self.running_max()
        );
        let _ = writeln!(
            out,
            "sessions: {} live at most ({} per tenant), message ids remembered {}",
            self.runtime.sessions_max,
            self.runtime.tenant_sessions_max,
            humantime::format_duration(self.runtime.idempotency_window)
        );
        let _ = writeln!(out, "{}", self.log_line());
        let _ = writeln!(out, "{}", self.counts_line());
        for tenant in self.tenants.values() {
            write_tenant(&mut out, tenant);
        }
        out
    }

    /// "log: sled", or "log: jetstream (stream S, N replicas), cluster node N, lease ttl T".
    fn log_line(&self) -> String {
        let mut line = format!("log: {}", self.log.backend);
        if self.log.backend == LogBackend::JetStream {
            let _ = write!(
                line,
                " (stream {}, {} replicas)",
                self.log.stream, self.log.replicas
            );
        }
        if let Some(cluster) = &self.cluster {
            let _ = write!(
                line,
                ", cluster node {}, lease ttl {}",
                cluster.node,
                humantime::format_duration(cluster.lease_ttl)
            );
        }
        line
    }

    /// "N tenants, N envs, N teams, N channels, N flows"; flows counts distinct flow files.
    fn counts_line(&self) -> String {
        let tenants = self.tenants.len();
        let mut envs = 0usize;
        let mut teams = 0usize;
        let mut channels = 0usize;
        let mut flows: BTreeSet<&Path> = BTreeSet::new();
        for tenant in self.tenants.values() {
            envs += tenant.environments.len();
            teams += tenant.teams.len();
            if let Some(flow) = &tenant.flow {
                flows.insert(flow.source());
            }
            for team in tenant.teams.values() {
                channels += team.channels.len();
                flows.insert(team.flow.source());
            }
        }
        format!(
            "{tenants} tenants, {envs} envs, {teams} teams, {channels} channels, {} flows",
            flows.len()
        )
    }
}

fn write_tenant(out: &mut String, tenant: &TenantConfig) {
    let _ = writeln!(out, "tenant {}: {:?}", tenant.id, tenant.name);
    let envs: Vec<String> = tenant
        .environments
        .iter()
        .map(|env| match &env.name {
            Some(name) => format!("{} ({name:?})", env.id),
            None => env.id.to_string(),
        })
        .collect();
    let _ = writeln!(out, "  envs: {}", envs.join(", "));
    if !tenant.settings.is_empty() {
        let _ = writeln!(out, "  settings: {} keys", tenant.settings.len());
    }
    if let Some(flow) = &tenant.flow {
        let _ = writeln!(out, "  default flow: {}", describe_flow(flow));
    }
    if tenant.teams.is_empty() {
        let _ = writeln!(out, "  no teams");
    }
    for team in tenant.teams.values() {
        let _ = writeln!(out, "  team {}: {:?}", team.id, team.name);
        let _ = writeln!(out, "    flow: {}", describe_flow(&team.flow));
        let channels: Vec<String> = team
            .channels
            .values()
            .map(|channel| format!("{}: {}", channel.id, channel.provider))
            .collect();
        let channels = if channels.is_empty() {
            "none".to_owned()
        } else {
            channels.join(", ")
        };
        let _ = writeln!(out, "    channels: {channels}");
    }
}

fn describe_flow(flow: &Flow) -> String {
    format!(
        "{} v{} ({}, {} nodes)",
        flow.name(),
        flow.version(),
        flow.source().display(),
        flow.nodes().len()
    )
}
