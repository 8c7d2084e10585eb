//! The admin routes, for a token with the `admin` scope (docs/http.md#admin):
//! `DELETE /api/v1/tenants/{tenant}` deletes the caller's own tenant's data (offboarding);
//! `DELETE /api/v1/sessions/{id}` erases one session of the token's env (crypto-shredding,
//! [`crate::erase`]): found like every session route (another tenant's, env's or team's is 404),
//! refused (409 `erase_offline`) when the session has unsealed copies, done with the tenant
//! paused like a tenant delete.
//!
//! Invariants:
//! - Only the tenant's own admin: the path's tenant must be the token's (another tenant's admin
//!   gets 403 `tenant_mismatch` and nothing is touched), the token must carry `admin` (else 403
//!   `scope_required`) and cover the whole tenant (a team claim or `X-Team-ID`: 403
//!   `team_scoped`). The env of the token does not matter: the whole tenant is deleted.
//! - Nothing writes for the tenant while its data is removed: the runtime refuses its messages
//!   and stops its sessions first (`Runtime::pause_tenant`), and serves it again, empty,
//!   once the deletion answered.
//! - Only the tenant's writer deletes: in a cluster (JetStream) a node that does not own the
//!   tenant answers 409 `not_owner` naming the owner (the request is not forwarded); the other
//!   nodes notice the purged stream subject and drop their copies (see [`crate::offboard`]).
//! - Erasing a session on sled, on a single JetStream node, and on the `[cluster]` node that
//!   owns the tenant (another answers 409 `not_owner`, as for a delete); a `[cluster]` node
//!   without a cluster key seals nothing and erases nothing (501 `not_supported`, naming why:
//!   [`CLUSTER_REFUSAL`]).

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::routes::{find_session, session_of};
use super::state::{blocking, read_team, EdgeState};
use crate::cluster::placement::Route;
use crate::edge::auth::{AuthError, Caller, Scope};
use crate::events::log::{LogEraseError, CLUSTER_REFUSAL};
use crate::offboard::{offboard_tenant, OffboardError};
use crate::tenancy::TenantId;

/// `DELETE /api/v1/tenants/{tenant}`: deletes the tenant's log range (events, sessions,
/// idempotency records, signed heads), read models, snapshots, secrets and metrics series;
/// answers 200 with what was freed (all zero when there was nothing left).
pub(super) async fn delete_tenant(
    caller: Caller,
    state: web::Data<EdgeState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !caller.scope.allows(Scope::Admin) {
        return Err(ApiError::ScopeRequired(Scope::Admin));
    }
    if caller.team().is_some() {
        return Err(ApiError::TeamScoped("deleting a tenant"));
    }
    let tenant = TenantId::parse(&path).map_err(|e| ApiError::field("tenant", e))?;
    if tenant != caller.tenant {
        return Err(AuthError::TenantMismatch.into());
    }
    let not_owner = |owner| ApiError::NotOwner {
        tenant: tenant.to_string(),
        owner,
    };
    match state.runtime().route(&tenant) {
        Route::Local => {}
        Route::Remote(owner) => return Err(not_owner(Some(owner))),
        Route::Unowned => return Err(not_owner(None)),
    }
    let pause = state.runtime().pause_tenant(&tenant).await?;
    let deleting = tenant.clone();
    // The pause moves into the blocking task: a client that goes away drops this handler, not
    // the deletion, and the tenant stays paused until the deletion ended.
    let freed = blocking(state.clone(), move |state| {
        let log = state.runtime().log();
        let mut freed = offboard_tenant(log, state.projector(), state.data_dir(), &deleting)
            .map_err(|e| match e {
                OffboardError::NotOwner(tenant) => ApiError::NotOwner {
                    tenant: tenant.to_string(),
                    owner: None,
                },
                other => ApiError::Internal(other.to_string()),
            })?;
        let envs: Vec<crate::tenancy::EnvId> = state
            .runtime()
            .tenant_config(&deleting)
            .map(|t| t.environments.iter().map(|e| e.id.clone()).collect())
            .unwrap_or_default();
        // Its connectors' system sessions went with the log: they heal by heartbeat if any
        // still runs (with a token of the tenant's signing key).
        let connectors: Vec<_> = (state.connectors().all().into_iter())
            .filter(|(t, _)| *t == deleting)
            .collect();
        state.connectors().forget_tenant(&deleting);
        freed.metrics_series = state.metrics().forget_tenant(&deleting, &envs, &connectors)
            + state.forget_peer_series(&deleting);
        drop(pause);
        Ok(freed)
    })
    .await?;
    tracing::warn!(tenant = %tenant, events = freed.events, "tenant data deleted (offboarding)");
    Ok(HttpResponse::Ok().json(freed))
}

/// `DELETE /api/v1/sessions/{id}`: erases the session (its data key destroyed, the tenant's
/// KEK rotated, its idempotency records and open-session entry removed, the tenant's read models
/// rebuilt, its snapshot removed) and answers 200 with what was erased.
pub(super) async fn erase_session(
    caller: Caller,
    state: web::Data<EdgeState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !caller.scope.allows(Scope::Admin) {
        return Err(ApiError::ScopeRequired(Scope::Admin));
    }
    let session = session_of(&path)?;
    let team = read_team(&state, &caller)?;
    if state.runtime().log().replica().is_some_and(|r| r.cluster()) {
        if !state.runtime().log().has_keyring() {
            return Err(ApiError::NotSupported(CLUSTER_REFUSAL));
        }
        let tenant = &caller.tenant;
        let not_owner = |owner| ApiError::NotOwner {
            tenant: tenant.to_string(),
            owner,
        };
        match state.runtime().route(tenant) {
            Route::Local => {}
            Route::Remote(owner) => return Err(not_owner(Some(owner))),
            Route::Unowned => return Err(not_owner(None)),
        }
    }
    let found = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let target = crate::erase::Target::Session(session.clone());
        let log = state.runtime().log();
        let info = crate::erase::find_sessions(log, &ctx.tenant, &ctx.env, &target)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .find(|i| Some(&i.team) == ctx.team.as_ref())
            .ok_or_else(|| ApiError::SessionNotFound(session.to_string()))?;
        if !info.user_sealed {
            return Err(ApiError::EraseOffline(session.to_string()));
        }
        Ok((ctx, info))
    })
    .await?;
    let (ctx, info) = found;
    let pause = state.runtime().pause_tenant(&ctx.tenant).await?;
    // As for a tenant delete: the pause moves into the blocking task, so a client that goes
    // away does not end it before the erasure did.
    let erased = blocking(state.clone(), move |state| {
        let log = state.runtime().log();
        let ids = (&ctx.tenant, &ctx.env);
        let erased =
            crate::erase::erase_sessions(log, state.projector(), state.data_dir(), ids, vec![info])
                .map_err(|e| match e {
                    crate::erase::EraseError::Log(LogEraseError::Cluster) => {
                        ApiError::NotSupported(CLUSTER_REFUSAL)
                    }
                    other => ApiError::Internal(other.to_string()),
                });
        drop(pause);
        erased
    })
    .await?;
    tracing::warn!(tenant = %erased.tenant, sessions = ?erased.sessions, "session erased");
    Ok(HttpResponse::Ok().json(erased))
}
