//! Where a key ring keeps its tenants' KEKs and pseudonym keys: the data dir's secret store
//! (sled, a single JetStream writer), or the cluster's key stream
//! ([`crate::events::log::replica::keys`]), which every node of a `[cluster]` reads alike.

use zeroize::Zeroizing;

use super::KeyringError;
use crate::events::log::replica::keys::{Created, SharedKeys};
use crate::secrets::name::{Namespace, SecretName};
use crate::secrets::store::SecretStore;
use crate::tenancy::TenantId;

/// Where a key ring's KEKs live.
pub enum KeyHome {
    /// The data dir's secret store: `{tenant}/{name}`.
    Local(SecretStore),
    /// The cluster's key stream: `{stream}_KEYS.t.{tenant}.{name}`.
    Shared(Box<SharedKeys>),
}

fn namespace(tenant: &str) -> Result<Namespace, KeyringError> {
    let id = TenantId::parse(tenant).map_err(|_| KeyringError::Tenant(tenant.to_owned()))?;
    Ok(Namespace::Tenant(id))
}

fn secret_name(name: &'static str) -> SecretName {
    SecretName::parse(name).expect("the key ring's secret names are valid names")
}

impl KeyHome {
    /// The tenant's secret `name`, if stored.
    pub fn get(
        &self,
        tenant: &str,
        name: &'static str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyringError> {
        match self {
            KeyHome::Local(store) => store
                .get(&namespace(tenant)?, &secret_name(name))
                .map(|v| v.map(|v| Zeroizing::new(v.expose().to_vec())))
                .map_err(|source| KeyringError::Secret {
                    tenant: tenant.to_owned(),
                    source,
                }),
            KeyHome::Shared(keys) => {
                namespace(tenant)?;
                keys.get(&keys.tenant_subject(tenant, name))
                    .map_err(|source| KeyringError::Shared {
                        tenant: tenant.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Stores the tenant's secret `name`, replacing (on the key stream: erasing) the old one.
    pub fn set(&self, tenant: &str, name: &'static str, value: &[u8]) -> Result<(), KeyringError> {
        match self {
            KeyHome::Local(store) => store
                .set(&namespace(tenant)?, &secret_name(name), value)
                .map_err(|source| KeyringError::Secret {
                    tenant: tenant.to_owned(),
                    source,
                }),
            KeyHome::Shared(keys) => {
                namespace(tenant)?;
                keys.set(&keys.tenant_subject(tenant, name), value)
                    .map_err(|source| KeyringError::Shared {
                        tenant: tenant.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Stores `value` as the tenant's secret `name` unless one is stored: then returns that
    /// one (`None`: `value` was stored).
    pub fn create(
        &self,
        tenant: &str,
        name: &'static str,
        value: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyringError> {
        match self {
            KeyHome::Local(_) => match self.get(tenant, name)? {
                Some(found) => Ok(Some(found)),
                None => self.set(tenant, name, value).map(|()| None),
            },
            KeyHome::Shared(keys) => {
                namespace(tenant)?;
                match keys.create(&keys.tenant_subject(tenant, name), value) {
                    Ok(Created::Made) => Ok(None),
                    Ok(Created::Found(found)) => Ok(Some(found)),
                    Err(source) => Err(KeyringError::Shared {
                        tenant: tenant.to_owned(),
                        source,
                    }),
                }
            }
        }
    }

    /// Deletes the tenant's secret `name`; whether it was stored.
    pub fn delete(&self, tenant: &str, name: &'static str) -> Result<bool, KeyringError> {
        match self {
            KeyHome::Local(store) => store
                .delete(&namespace(tenant)?, &secret_name(name))
                .map_err(|source| KeyringError::Secret {
                    tenant: tenant.to_owned(),
                    source,
                }),
            KeyHome::Shared(keys) => {
                namespace(tenant)?;
                keys.delete(&keys.tenant_subject(tenant, name))
                    .map_err(|source| KeyringError::Shared {
                        tenant: tenant.to_owned(),
                        source,
                    })
            }
        }
    }
}
