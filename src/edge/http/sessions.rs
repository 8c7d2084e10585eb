//! `GET /api/v1/sessions`: the caller's env's sessions (its team's, or every team's), filtered
//! (`q`, `status`, `since`), latest activity first, in pages with an opaque cursor. Connectors'
//! system sessions (`crate::connectors`) are not conversations and are never listed.
//!
//! The list is read from the read models (`Projector::sessions_with_last_message`), brought up
//! to date first, as `/usage` is: every session's state with the text of its last message.
//! Which sessions are quarantined comes from the runtime (`Runtime::quarantined_sessions`,
//! in memory). Cost: a page scans every session of the env (or team) in the read models, and
//! keeps only `limit + 1` of them in memory (a bounded heap), whatever the page's depth.
//!
//! Paging is by key: a page holds the sessions that come after the cursor's
//! (`last_activity`, team, session) in the list's order. A session active again between two
//! requests moves to the front: a later page may then miss it or show it twice.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::dto::{SessionItem, SessionsBody, SessionsQuery};
use super::error::ApiError;
use super::routes::{SESSIONS_PAGE_DEFAULT, SESSIONS_PAGE_MAX};
use super::state::{blocking, read_team, EdgeState};
use crate::edge::auth::Caller;
use crate::projections::session::{SessionState, SessionStatus};
use crate::tenancy::{SessionId, TeamId};

/// Longest `q`, in bytes.
pub const SESSIONS_QUERY_BYTES_MAX: usize = 256;

/// A place in the list's order: latest activity first, then team, then session id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    last_activity: Reverse<u64>,
    team: TeamId,
    session: SessionId,
}

impl Position {
    fn of(state: &SessionState) -> Position {
        Position {
            last_activity: Reverse(state.last_activity_ms),
            team: state.team.clone(),
            session: state.session.clone(),
        }
    }

    /// The opaque cursor of this place (`next_after`).
    pub(super) fn cursor(&self) -> String {
        let raw = format!("{}/{}/{}", self.last_activity.0, self.team, self.session);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor made by [`Position::cursor`].
    pub(super) fn parse(raw: &str) -> Result<Position, ApiError> {
        let bad = || {
            ApiError::field(
                "after",
                "expected the next_after value of a previous page, unchanged",
            )
        };
        let text = URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mut parts = text.splitn(3, '/');
        let (Some(at), Some(team), Some(session)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Position {
            last_activity: Reverse(at.parse().map_err(|_| bad())?),
            team: TeamId::parse(team).map_err(|_| bad())?,
            session: SessionId::parse(session).map_err(|_| bad())?,
        })
    }
}

/// Which sessions a page shows.
#[derive(Debug, Default)]
pub(super) struct Filter {
    /// Lowercased; matched against the lowercased user and last message.
    pub(super) q: Option<String>,
    pub(super) status: Option<&'static str>,
    /// Unix ms: last activity at or after it.
    pub(super) since_ms: Option<u64>,
}

impl Filter {
    /// The filter of `query`'s `q`, `status` and `since`; a bad one names its field.
    fn parse(query: &SessionsQuery) -> Result<Filter, ApiError> {
        let q = match query.q.as_deref() {
            Some(q) if q.len() > SESSIONS_QUERY_BYTES_MAX => {
                return Err(ApiError::field(
                    "q",
                    format!("must be at most {SESSIONS_QUERY_BYTES_MAX} bytes"),
                ))
            }
            Some("") | None => None,
            Some(q) => Some(q.to_lowercase()),
        };
        let status = match query.status.as_deref() {
            None => None,
            Some("open") => Some("open"),
            Some("ended") => Some("ended"),
            Some("quarantined") => Some("quarantined"),
            Some(_) => {
                return Err(ApiError::field(
                    "status",
                    "must be open, ended or quarantined",
                ))
            }
        };
        let since_ms = query.since.as_deref().map(parse_since).transpose()?;
        Ok(Filter {
            q,
            status,
            since_ms,
        })
    }

    fn keeps(&self, state: &SessionState, status: &str, last_message: Option<&str>) -> bool {
        self.status.is_none_or(|wanted| wanted == status)
            && self
                .since_ms
                .is_none_or(|since| state.last_activity_ms >= since)
            && self.q.as_deref().is_none_or(|q| {
                state.user.to_lowercase().contains(q)
                    || last_message.is_some_and(|m| m.to_lowercase().contains(q))
            })
    }
}

/// `since`: unix ms, an RFC 3339 date (`2026-11-30`, its UTC midnight) or date-time.
fn parse_since(raw: &str) -> Result<u64, ApiError> {
    let raw = raw.trim();
    let is_date = raw.len() == 10 && raw.as_bytes().get(4) == Some(&b'-');
    let full = if is_date {
        format!("{raw}T00:00:00Z")
    } else {
        raw.to_owned()
    };
    crate::audit::parse_time(&full).map_err(|e| {
        ApiError::field(
            "since",
            format!("{e}; give unix ms, a date (2026-11-30) or an RFC 3339 date-time"),
        )
    })
}

/// A session's status as the list shows it: quarantined (a parked, open session), else ended or
/// open.
fn status_of(state: &SessionState, quarantined: &HashSet<(TeamId, SessionId)>) -> &'static str {
    match &state.status {
        SessionStatus::Ended { .. } => "ended",
        SessionStatus::Open
            if quarantined.contains(&(state.team.clone(), state.session.clone())) =>
        {
            "quarantined"
        }
        SessionStatus::Open => "open",
    }
}

/// One candidate of a page, ordered by its position.
struct Candidate {
    at: Position,
    state: SessionState,
    status: &'static str,
    last_message: Option<String>,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// The page of `sessions` that `filter` keeps after `after`, at most `limit`, in order; and
/// the cursor of its last item when more follow. Holds at most `limit + 1` sessions.
pub(super) fn page<E>(
    sessions: impl Iterator<Item = Result<(SessionState, Option<String>), E>>,
    filter: &Filter,
    quarantined: &HashSet<(TeamId, SessionId)>,
    after: Option<&Position>,
    limit: usize,
) -> Result<SessionsBody, E> {
    // A max-heap of the `limit + 1` first in order: the last of them is dropped first.
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit + 1);
    for entry in sessions {
        let (state, last_message) = entry?;
        if crate::connectors::is_system_session(state.session.as_str()) {
            continue;
        }
        let at = Position::of(&state);
        if after.is_some_and(|after| at <= *after) {
            continue;
        }
        if heap.len() > limit && heap.peek().is_some_and(|last| at >= last.at) {
            continue;
        }
        let status = status_of(&state, quarantined);
        if !filter.keeps(&state, status, last_message.as_deref()) {
            continue;
        }
        heap.push(Candidate {
            at,
            state,
            status,
            last_message,
        });
        if heap.len() > limit + 1 {
            heap.pop();
        }
    }
    let mut sorted = heap.into_sorted_vec();
    let more = sorted.len() > limit;
    sorted.truncate(limit);
    let next_after = more.then(|| sorted.last().map(|c| c.at.cursor())).flatten();
    let sessions = sorted
        .into_iter()
        .map(|c| SessionItem::new(&c.state, c.status, c.last_message))
        .collect();
    Ok(SessionsBody {
        sessions,
        next_after,
    })
}

/// `GET /api/v1/sessions`: the caller's env's sessions, in its team or all teams, filtered,
/// latest activity first, paged.
pub(super) async fn list(
    caller: Caller,
    query: web::Query<SessionsQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(SESSIONS_PAGE_DEFAULT);
    if !(1..=SESSIONS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be 1..={SESSIONS_PAGE_MAX}"),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let after = query.after.as_deref().map(Position::parse).transpose()?;
    let filter = Filter::parse(&query)?;
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = caller.ctx(team);
        let quarantined: HashSet<_> = state
            .runtime()
            .quarantined_sessions(&ctx)
            .into_iter()
            .collect();
        let projector = state.projector();
        let internal =
            |e: crate::projections::projector::ProjectorError| ApiError::Internal(e.to_string());
        projector
            .catch_up(state.runtime().log(), &ctx.tenant, &mut |_| {})
            .map_err(internal)?;
        let sessions =
            projector.sessions_with_last_message(&ctx.tenant, &ctx.env, ctx.team.as_ref());
        page(sessions, &filter, &quarantined, after.as_ref(), limit).map_err(internal)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
mod tests;
