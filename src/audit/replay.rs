//! `tenantry replay`: a tenant's or one session's events as a readable timeline or JSONL, and a
//! session's state as of a given seq.
//!
//! A text line is `{at_iso}  #{tenant_seq}  {env}/{team}/{session} seq {seq}  {Kind}  {details}`.
//! Free text (messages, replies, state values, errors, reasons) is quoted with control
//! characters, quotes and backslashes escaped, so hostile text can neither fake a line nor send
//! terminal escapes. JSON mode writes the export's event records (`super::record`) without the
//! body.
//!
//! Invariants: reads only through the tenant's reader or a [`TenantCtx`] scope; one frame in
//! memory at a time; the state is folded with [`SessionState::apply`], the same fold the runtime
//! uses, after checking each event is the next (so a damaged log is an error, not a panic).

use std::io::Write;
use std::str::FromStr;

use super::record::EventLine;
use super::{format_time, in_window, AuditError};
use crate::events::log::{EventLog, ReadError, RetentionAnchor, ScopedReader, StoredEvent};
use crate::events::schema::{Event, EventKind};
use crate::projections::session::SessionState;
use crate::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// How replay prints events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event (the export's fields without `body`).
    Json,
}

impl FromStr for ReplayFormat {
    type Err = String;

    fn from_str(raw: &str) -> Result<ReplayFormat, String> {
        match raw {
            "text" => Ok(ReplayFormat::Text),
            "json" => Ok(ReplayFormat::Json),
            other => Err(format!("unknown format {other:?}: expected text or json")),
        }
    }
}

/// Which events to replay.
#[derive(Clone, Debug)]
pub enum ReplayScope {
    /// The tenant's events in `tenant_seq` order, optionally only one env and/or team.
    Tenant {
        /// The tenant.
        tenant: TenantId,
        /// Only this env.
        env: Option<EnvId>,
        /// Only this team.
        team: Option<TeamId>,
    },
    /// One session's events in `seq` order.
    Session {
        /// Tenant, env and team (`default` when `None`) of the session.
        ctx: TenantCtx,
        /// The session.
        session: SessionId,
    },
}

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Tenant or session.
    pub scope: ReplayScope,
    /// First position (inclusive): `tenant_seq` for a tenant, `seq` for a session.
    pub from_seq: Option<u64>,
    /// Last position (inclusive), like `from_seq`.
    pub to_seq: Option<u64>,
    /// Only events at or after this time (unix ms).
    pub since_ms: Option<u64>,
    /// Only events before this time (unix ms).
    pub until_ms: Option<u64>,
    /// Text or JSON.
    pub format: ReplayFormat,
}

/// Writes the selected events to `out`; returns how many.
pub fn replay(
    log: &EventLog,
    opts: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let range = opts.from_seq.unwrap_or(1)..=opts.to_seq.unwrap_or(u64::MAX);
    let mut count = 0;
    let mut emit = |stored: &StoredEvent| -> Result<(), AuditError> {
        if in_window(stored.event.at_ms, opts.since_ms, opts.until_ms) {
            write_event(out, stored, opts.format)?;
            count += 1;
        }
        Ok(())
    };
    match &opts.scope {
        ReplayScope::Tenant { tenant, env, team } => {
            for item in log.tenant(tenant).events(range) {
                let stored = item?;
                let e = &stored.event;
                if env.as_ref().is_none_or(|env| &e.env == env)
                    && team.as_ref().is_none_or(|team| &e.team == team)
                {
                    emit(&stored)?;
                }
            }
        }
        ReplayScope::Session { ctx, session } => {
            let scope = log.scope(ctx);
            require_session(scope.session_last_seq(session)?, &scope, session)?;
            for item in scope.session_events(session, range) {
                emit(&item?)?;
            }
        }
    }
    out.flush()
        .map_err(|e| AuditError::io("writing stdout", e))?;
    Ok(count)
}

/// The session's state after folding its events `1..=seq`.
pub fn state_at(
    log: &EventLog,
    ctx: &TenantCtx,
    session: &SessionId,
    seq: u64,
) -> Result<SessionState, AuditError> {
    let scope = log.scope(ctx);
    let last = scope.session_last_seq(session)?;
    require_session(last, &scope, session)?;
    let first = first_kept_seq(&scope, session)?;
    if seq < first && seq > 0 {
        return Err(AuditError::Usage(format!(
            "--at {seq}: session {ctx}/{session}'s seqs 1..={} were trimmed by the tenant's \
             retention; it has seqs {first}..={last}",
            first - 1
        )));
    }
    if seq == 0 || seq > last {
        return Err(AuditError::Usage(format!(
            "--at {seq}: session {ctx}/{session} has seqs {first}..={last}"
        )));
    }
    let mut state = SessionState::new(
        ctx.tenant.clone(),
        ctx.env.clone(),
        ctx.team_or_default(),
        session.clone(),
    );
    for item in scope.session_events(session, 1..=seq) {
        let stored = item?;
        apply_checked(&mut state, &stored.event)?;
    }
    Ok(state)
}

/// Applies `event` after checking it is the state's next, so a damaged log is an error here
/// rather than the assertion in [`SessionState::apply`].
/// A new state takes a first event past seq 1: the session's start was trimmed by retention.
pub(super) fn apply_checked(state: &mut SessionState, event: &Event) -> Result<(), AuditError> {
    let next = event.seq == state.last_seq + 1 || (state.last_seq == 0 && event.seq > 1);
    if !next || event.session != state.session {
        return Err(AuditError::Read(ReadError {
            tenant: event.tenant.clone(),
            position: format!("session {} seq {}", event.session, event.seq),
            detail: format!("expected seq {} of the session", state.last_seq + 1),
        }));
    }
    state.apply(event);
    Ok(())
}

pub(super) fn require_session(
    last_seq: u64,
    scope: &ScopedReader,
    session: &SessionId,
) -> Result<(), AuditError> {
    if last_seq == 0 {
        return Err(AuditError::Usage(format!(
            "no session {session} in {} (check --env and --team){}",
            scope.ctx(),
            trimmed_note(scope.retention_anchor()?)
        )));
    }
    Ok(())
}

/// For a "not found": what the tenant's retention trimmed, if anything (a session whose every
/// event was trimmed is gone from the log).
fn trimmed_note(anchor: Option<RetentionAnchor>) -> String {
    anchor.map_or_else(String::new, |a| {
        format!(
            "; or its events were all trimmed by the tenant's retention (tenant_seq 1..={}, up \
             to {})",
            a.first_tenant_seq - 1,
            format_time(a.last_trimmed_at_ms)
        )
    })
}

/// The session's first seq in the log: 1, or past 1 when its start was trimmed by retention.
pub fn first_kept_seq(scope: &ScopedReader, session: &SessionId) -> Result<u64, AuditError> {
    match scope.session_events(session, 1..=u64::MAX).next() {
        Some(first) => Ok(first?.event.seq),
        None => Ok(1),
    }
}

/// Writes one event as `replay` prints it (a timeline line, or a JSON line).
pub fn write_event(
    out: &mut dyn Write,
    stored: &StoredEvent,
    format: ReplayFormat,
) -> Result<(), AuditError> {
    let written = match format {
        ReplayFormat::Text => writeln!(out, "{}", timeline_line(&stored.event)),
        ReplayFormat::Json => {
            serde_json::to_writer(&mut *out, &EventLine::new(stored, None))
                .map_err(|e| AuditError::io("writing stdout", e.into()))?;
            out.write_all(b"\n")
        }
    };
    written.map_err(|e| AuditError::io("writing stdout", e))
}

/// One event as a timeline line (without a newline).
pub fn timeline_line(e: &Event) -> String {
    format!(
        "{}  #{}  {}/{}/{} seq {}  {}  {}",
        format_time(e.at_ms),
        e.tenant_seq,
        e.env,
        e.team,
        e.session,
        e.seq,
        e.kind.name(),
        details(&e.kind)
    )
}

/// The kind's data, readable.
pub fn details(kind: &EventKind) -> String {
    match kind {
        EventKind::SessionStarted {
            user,
            flow,
            flow_version,
        } => format!(
            "user {} flow {} version {}",
            quote(user),
            quote(flow),
            quote(flow_version)
        ),
        EventKind::MessageReceived {
            message_id,
            user,
            text,
        } => format!(
            "{} from {} (message_id {})",
            quote(text),
            quote(user),
            quote(message_id)
        ),
        EventKind::NodeEntered { node } => format!("node {}", ident(node)),
        EventKind::ReplySent { node, text } => format!("{} (node {})", quote(text), ident(node)),
        EventKind::StateSet { key, value } => format!("{} = {}", ident(key), quote(value)),
        EventKind::AwaitingInput { node, key } => {
            format!("waiting after node {} for {}", ident(node), ident(key))
        }
        EventKind::FlowFailed { node, error } => {
            format!("node {}: error {}", ident(node), quote(error))
        }
        EventKind::SessionEnded { reason } => format!("reason {}", quote(reason)),
        EventKind::ConnectorRegistered {
            connector,
            provider,
            version,
            capabilities,
            healed,
        } => {
            let capabilities: Vec<String> = capabilities.iter().map(|c| quote(c)).collect();
            format!(
                "connector {} provider {} version {} capabilities [{}]{}",
                ident(connector),
                quote(provider),
                quote(version),
                capabilities.join(", "),
                if *healed { " (healed)" } else { "" }
            )
        }
        EventKind::ConnectorStateChanged {
            connector,
            from,
            to,
        } => format!(
            "connector {} {} -> {}",
            ident(connector),
            ident(from),
            ident(to)
        ),
        EventKind::OutboxAcked { connector, up_to } => {
            format!("connector {} acked up to {up_to}", ident(connector))
        }
        EventKind::OutboxDeadLettered {
            connector,
            from,
            up_to,
            count,
        } => format!(
            "connector {} dead-lettered {count} replies {from}..={up_to}",
            ident(connector)
        ),
    }
}

/// Free text in double quotes, with control characters, quotes and backslashes escaped.
pub fn quote(text: &str) -> String {
    format!("{text:?}")
}

/// A node id or state key: as it is when it is a plain identifier, else quoted.
fn ident(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        text.to_owned()
    } else {
        quote(text)
    }
}

/// Where a session lives when its env is not given: every env of `config_envs` and every env
/// the tenant's log has sessions in is searched, in the team `team` when given, else in every
/// team. One match is its scope; none is "not found"; several are an error listing each
/// `env/team/session`, so the caller can pick with `--env` (and `--team`).
pub fn find_session(
    log: &EventLog,
    tenant: &TenantId,
    config_envs: &[EnvId],
    team: Option<&TeamId>,
    session: &SessionId,
) -> Result<TenantCtx, AuditError> {
    let mut envs: Vec<EnvId> = config_envs.to_vec();
    envs.extend(log.tenant(tenant).session_envs()?);
    envs.sort();
    envs.dedup();
    let mut found = Vec::new();
    for env in &envs {
        let scope = log.scope(&TenantCtx::new(tenant.clone(), env.clone(), team.cloned()));
        for info in scope.sessions() {
            let info = info?;
            if &info.session == session {
                found.push(TenantCtx::new(tenant.clone(), env.clone(), Some(info.team)));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(AuditError::Usage(format!(
            "session {session} not found in tenant {tenant}{} (searched envs: {}){}",
            team.map_or_else(String::new, |t| format!(", team {t}")),
            envs.iter()
                .map(EnvId::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            trimmed_note(log.retention_anchor(tenant)?)
        ))),
        _ => Err(AuditError::Usage(format!(
            "session {session} is in more than one env or team of tenant {tenant}: {}; give \
             --env (and --team) to pick one",
            found
                .iter()
                .map(|c| format!("{}/{}/{session}", c.env, c.team_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests;
