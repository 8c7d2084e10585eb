//! The envs a tenant's log has sessions in, for finding a session whose env is not given
//! (`tenantry replay --session` without `--env`).

use super::{ReadError, TenantReader};
use crate::events::keys;
use crate::events::log::contain::contained;
use crate::tenancy::EnvId;

impl TenantReader {
    /// The envs with at least one session meta in this tenant's log, in id order. One seek per
    /// env (keys are `{t}\0 M {env}\0 ...`, so the env's keys end before `{env}\x01`).
    pub fn session_envs(&self) -> Result<Vec<EnvId>, ReadError> {
        let err = |detail: String| ReadError {
            tenant: self.tenant.clone(),
            position: "session index".into(),
            detail,
        };
        let tree = self.parts.tree.as_ref().map_err(Clone::clone)?;
        let (start, end) = keys::session_meta_range(&self.tenant);
        let mut envs = Vec::new();
        let mut cursor = start.clone();
        while cursor < end {
            let next = contained(|| tree.range(cursor.clone()..end.clone()).next()).map_err(err)?;
            let Some(entry) = next else { break };
            let (key, _) = entry.map_err(|e| err(e.to_string()))?;
            let rest = key.get(start.len()..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| err("malformed session key".into()))?;
            let env = std::str::from_utf8(&rest[..len])
                .ok()
                .and_then(|e| EnvId::parse(e).ok())
                .ok_or_else(|| err("malformed session key".into()))?;
            cursor = keys::session_meta_scope(&self.tenant, &env, None);
            if let Some(last) = cursor.last_mut() {
                *last = 1;
            }
            envs.push(env);
        }
        Ok(envs)
    }
}
