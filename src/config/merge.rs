//! Combines the tenant definitions of `config.toml`, the seed bundle, seed tenant files and seed
//! team files into one tree of tenants and teams, before any flow is loaded.
//!
//! Precedence for a tenant's own fields (`name`, `settings`, `environments`, `flow`):
//! `config.toml`, then tenant files, then the bundle; the first source that sets a field wins, so
//! the TOML can override a seed without copying it. Teams are the union of all sources.
//!
//! Invariants: a team is defined in exactly one place (a second definition is an error naming
//! both); a tenant is defined by at most one tenant file; a team file names a tenant that some
//! source defines; every path in the tree is already resolved against the file that named it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use crate::tenancy::{ChannelId, TeamId, TenantId};

use super::error::ConfigError;
use super::files::resolve;
use super::raw::{BundleFile, ChannelSection, TeamFile, TeamSection, TenantFile, TenantSection};
use super::validate::{check_name, check_path, check_requests, check_value, invalid};
use super::validate::{BURST_WHAT, RATE_WHAT};
use super::{ChannelConfig, Environment};

/// Where something was declared: a file and the dotted field inside it.
#[derive(Clone, Debug)]
pub(super) struct Origin {
    pub file: PathBuf,
    pub field: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.file.display(), self.field)
    }
}

/// A flow file named by some field, not loaded yet.
#[derive(Debug)]
pub(super) struct FlowRef {
    /// Resolved against the directory of `origin.file`.
    pub path: PathBuf,
    pub origin: Origin,
}

/// A tenant as merged so far.
#[derive(Debug)]
pub(super) struct TenantDraft {
    /// The tenant file that defines it, to refuse a second one.
    pub tenant_file: Option<PathBuf>,
    pub name: Option<String>,
    pub settings: Option<BTreeMap<String, String>>,
    pub environments: Option<Vec<Environment>>,
    pub flow: Option<FlowRef>,
    /// The tenant's own HTTP rate limit, when a source sets one.
    pub rate_limit_per_s: Option<NonZeroU32>,
    /// The tenant's own quota burst, when a source sets one.
    pub rate_limit_burst: Option<NonZeroU32>,
    /// The tenant's `retention`, when a source sets one.
    pub retention: Option<std::time::Duration>,
    pub teams: BTreeMap<TeamId, TeamDraft>,
}

/// A team as defined in its one source.
#[derive(Debug)]
pub(super) struct TeamDraft {
    pub origin: Origin,
    pub name: Option<String>,
    pub flow: Option<FlowRef>,
    pub channels: BTreeMap<ChannelId, ChannelConfig>,
}

/// All tenants from all sources, merged.
#[derive(Debug, Default)]
pub(super) struct Tree {
    pub tenants: BTreeMap<TenantId, TenantDraft>,
}

impl Tree {
    /// Adds the `[tenants]` of `config.toml` (the file at `config`).
    pub fn add_config_tenants(
        &mut self,
        config: &Path,
        tenants: BTreeMap<TenantId, TenantSection>,
    ) -> Result<(), ConfigError> {
        for (id, section) in tenants {
            let draft = tenant_section(config, &id, section)?;
            self.add_tenant(id, draft)?;
        }
        Ok(())
    }

    /// Adds the tenants of the seed bundle at `file`.
    pub fn add_bundle(&mut self, file: &Path, bundle: BundleFile) -> Result<(), ConfigError> {
        for (id, section) in bundle.tenants {
            let draft = tenant_section(file, &id, section)?;
            self.add_tenant(id, draft)?;
        }
        Ok(())
    }

    /// Adds the tenant of the seed tenant file at `file`.
    pub fn add_tenant_file(&mut self, file: &Path, parsed: TenantFile) -> Result<(), ConfigError> {
        let TenantFile {
            tenant,
            environments,
        } = parsed;
        let name = tenant
            .name
            .map(|name| check_name(file, "tenant.name", name))
            .transpose()?;
        let settings = tenant
            .settings
            .map(|s| settings(file, "tenant.settings", s))
            .transpose()?;
        let environments = environments
            .map(|entries| {
                let entries = entries
                    .into_iter()
                    .enumerate()
                    .map(|(index, entry)| {
                        let field = format!("environments[{index}].name");
                        let name = entry
                            .name
                            .map(|n| check_name(file, &field, n))
                            .transpose()?;
                        Ok(Environment { id: entry.id, name })
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?;
                check_environments(file, "environments", entries)
            })
            .transpose()?;
        let flow = tenant
            .flow
            .map(|flow| flow_ref(file, "tenant.flow", &flow))
            .transpose()?;
        let draft = TenantDraft {
            tenant_file: Some(file.to_owned()),
            name,
            settings,
            environments,
            flow,
            rate_limit_per_s: None,
            rate_limit_burst: None,
            retention: None,
            teams: BTreeMap::new(),
        };
        self.add_tenant(tenant.id, draft)
    }

    /// Adds the team of the seed team file at `file`; its tenant must already be in the tree.
    pub fn add_team_file(&mut self, file: &Path, parsed: TeamFile) -> Result<(), ConfigError> {
        let TeamFile { team, channels } = parsed;
        let known = known_list(&self.tenants);
        let Some(tenant) = self.tenants.get_mut(&team.tenant_id) else {
            return Err(invalid(
                file,
                "team.tenant_id",
                format!(
                    "tenant `{}` is not configured (configured: {known}); define it under \
                     [tenants] in config.toml, in a tenant file or in the bundle",
                    team.tenant_id
                ),
            ));
        };
        let draft = TeamDraft {
            origin: Origin {
                file: file.to_owned(),
                field: "team".to_owned(),
            },
            name: team
                .name
                .map(|name| check_name(file, "team.name", name))
                .transpose()?,
            flow: team
                .flow
                .map(|flow| flow_ref(file, "team.flow", &flow))
                .transpose()?,
            channels: channels_of(file, "channels", channels)?,
        };
        add_team(&team.tenant_id, tenant, team.id, draft)
    }

    fn add_tenant(&mut self, id: TenantId, incoming: TenantDraft) -> Result<(), ConfigError> {
        let Some(existing) = self.tenants.get_mut(&id) else {
            self.tenants.insert(id, incoming);
            return Ok(());
        };
        if let (Some(first), Some(second)) = (&existing.tenant_file, &incoming.tenant_file) {
            return Err(ConfigError::DuplicateTenantFile {
                tenant: id,
                first: first.clone(),
                second: second.clone(),
            });
        }
        let TenantDraft {
            tenant_file,
            name,
            settings,
            environments,
            flow,
            rate_limit_per_s,
            rate_limit_burst,
            retention,
            teams,
        } = incoming;
        // Sources arrive in precedence order, so only fields that are still unset are taken.
        existing.tenant_file = existing.tenant_file.take().or(tenant_file);
        existing.name = existing.name.take().or(name);
        existing.settings = existing.settings.take().or(settings);
        existing.environments = existing.environments.take().or(environments);
        existing.flow = existing.flow.take().or(flow);
        existing.rate_limit_per_s = existing.rate_limit_per_s.or(rate_limit_per_s);
        existing.rate_limit_burst = existing.rate_limit_burst.or(rate_limit_burst);
        existing.retention = existing.retention.or(retention);
        for (team_id, team) in teams {
            add_team(&id, existing, team_id, team)?;
        }
        Ok(())
    }
}

fn add_team(
    tenant_id: &TenantId,
    tenant: &mut TenantDraft,
    team_id: TeamId,
    team: TeamDraft,
) -> Result<(), ConfigError> {
    match tenant.teams.entry(team_id) {
        Entry::Vacant(vacant) => {
            vacant.insert(team);
            Ok(())
        }
        Entry::Occupied(occupied) => Err(ConfigError::DuplicateTeam {
            tenant: tenant_id.clone(),
            team: occupied.key().clone(),
            first: occupied.get().origin.to_string(),
            second: team.origin.to_string(),
        }),
    }
}

/// A `[tenants.<id>]` section of `config.toml` or the bundle in `file`.
fn tenant_section(
    file: &Path,
    id: &TenantId,
    section: TenantSection,
) -> Result<TenantDraft, ConfigError> {
    let prefix = format!("tenants.{id}");
    let TenantSection {
        name,
        settings: raw_settings,
        environments,
        flow,
        rate_limit_per_s,
        rate_limit_burst,
        retention,
        teams,
    } = section;
    let name = name
        .map(|name| check_name(file, &format!("{prefix}.name"), name))
        .transpose()?;
    let settings = raw_settings
        .map(|s| settings(file, &format!("{prefix}.settings"), s))
        .transpose()?;
    let environments = environments
        .map(|ids| {
            let entries = ids
                .into_iter()
                .map(|id| Environment { id, name: None })
                .collect();
            check_environments(file, &format!("{prefix}.environments"), entries)
        })
        .transpose()?;
    let flow = flow
        .map(|flow| flow_ref(file, &format!("{prefix}.flow"), &flow))
        .transpose()?;
    let rate_limit_per_s = rate_limit_per_s
        .map(|rate| check_requests(file, &format!("{prefix}.rate_limit_per_s"), rate, RATE_WHAT))
        .transpose()?;
    let rate_limit_burst = rate_limit_burst
        .map(|burst| {
            check_requests(
                file,
                &format!("{prefix}.rate_limit_burst"),
                burst,
                BURST_WHAT,
            )
        })
        .transpose()?;
    let retention = retention
        .map(|raw| super::retention::retention(file, &format!("{prefix}.retention"), &raw))
        .transpose()?;
    let mut drafts = BTreeMap::new();
    for (team_id, team) in teams {
        let draft = team_section(file, &format!("{prefix}.teams.{team_id}"), team)?;
        drafts.insert(team_id, draft);
    }
    Ok(TenantDraft {
        tenant_file: None,
        name,
        settings,
        environments,
        flow,
        rate_limit_per_s,
        rate_limit_burst,
        retention,
        teams: drafts,
    })
}

/// A `[tenants.<t>.teams.<id>]` section (field path `prefix`) in `file`.
fn team_section(file: &Path, prefix: &str, section: TeamSection) -> Result<TeamDraft, ConfigError> {
    Ok(TeamDraft {
        origin: Origin {
            file: file.to_owned(),
            field: prefix.to_owned(),
        },
        name: section
            .name
            .map(|name| check_name(file, &format!("{prefix}.name"), name))
            .transpose()?,
        flow: section
            .flow
            .map(|flow| flow_ref(file, &format!("{prefix}.flow"), &flow))
            .transpose()?,
        channels: channels_of(file, &format!("{prefix}.channels"), section.channels)?,
    })
}

fn channels_of(
    file: &Path,
    prefix: &str,
    channels: BTreeMap<ChannelId, ChannelSection>,
) -> Result<BTreeMap<ChannelId, ChannelConfig>, ConfigError> {
    channels
        .into_iter()
        .map(|(id, section)| {
            let field = format!("{prefix}.{id}");
            let provider = check_name(file, &format!("{field}.provider"), section.provider)?;
            let config = settings(file, &format!("{field}.config"), section.config)?;
            if provider == crate::connectors::webhook::WEBHOOK_PROVIDER {
                webhook_url(file, &field, config.get("url"))?;
            }
            Ok((
                id.clone(),
                ChannelConfig {
                    id,
                    provider,
                    config,
                },
            ))
        })
        .collect()
}

/// A webhook channel's `config.url`, when set: `http://HOST[:PORT]/...` (plain HTTP: the
/// built-in client has no TLS; put a TLS-terminating proxy in front of an https receiver).
/// Without one the channel takes signed inbound messages only and its replies are not POSTed.
fn webhook_url(file: &Path, field: &str, url: Option<&String>) -> Result<(), ConfigError> {
    let field = format!("{field}.config.url");
    let Some(url) = url else {
        return Ok(());
    };
    let host = url
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next());
    if !matches!(host, Some(Some(h)) if !h.is_empty()) || url.chars().any(char::is_whitespace) {
        return Err(super::validate::invalid(
            file,
            &field,
            format!(
                "{url:?} is not an http:// URL with a host (https is not built in: use a \
                 TLS-terminating proxy), e.g. \"http://127.0.0.1:9000/replies\""
            ),
        ));
    }
    Ok(())
}

/// A string-to-string map (tenant settings, channel config): keys are names, values bounded.
fn settings(
    file: &Path,
    field: &str,
    map: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    map.into_iter()
        .map(|(key, value)| {
            let key = check_name(file, field, key)?;
            let value = check_value(file, &format!("{field}.{key}"), value)?;
            Ok((key, value))
        })
        .collect()
}

/// An env list: not empty (leave the field out for `["default"]`) and without repeats.
fn check_environments(
    file: &Path,
    field: &str,
    entries: Vec<Environment>,
) -> Result<Vec<Environment>, ConfigError> {
    if entries.is_empty() {
        return Err(invalid(
            file,
            field,
            "the list is empty; list at least one env, or leave the field out to get [\"default\"]"
                .to_owned(),
        ));
    }
    let mut seen = BTreeSet::new();
    for entry in &entries {
        if !seen.insert(&entry.id) {
            return Err(invalid(
                file,
                field,
                format!("env `{}` is listed twice", entry.id),
            ));
        }
    }
    Ok(entries)
}

fn flow_ref(file: &Path, field: &str, flow: &Path) -> Result<FlowRef, ConfigError> {
    check_path(file, field, flow)?;
    Ok(FlowRef {
        path: resolve(file, flow),
        origin: Origin {
            file: file.to_owned(),
            field: field.to_owned(),
        },
    })
}

/// The configured tenant ids, for error messages.
pub(super) fn known_list<V>(tenants: &BTreeMap<TenantId, V>) -> String {
    if tenants.is_empty() {
        return "none".to_owned();
    }
    const SHOWN_MAX: usize = 20;
    let mut shown: Vec<&str> = tenants
        .keys()
        .take(SHOWN_MAX)
        .map(TenantId::as_str)
        .collect();
    let more = tenants.len().saturating_sub(SHOWN_MAX);
    let more = format!("... {more} more");
    if tenants.len() > SHOWN_MAX {
        shown.push(&more);
    }
    shown.join(", ")
}
