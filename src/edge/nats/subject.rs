//! NATS subjects of the messaging edge (docs/nats.md):
//! `{prefix}.ingress.{env}.{tenant}.{team}.{channel}` and the same with `egress`.
//!
//! Invariant: every token taken from a subject is validated into an id newtype before use; a
//! subject that does not have exactly this shape is rejected as a whole.

use crate::tenancy::{ChannelId, EnvId, InvalidId, TeamId, TenantId};

/// The ids a valid ingress subject carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub env: EnvId,
    pub tenant: TenantId,
    pub team: TeamId,
    pub channel: ChannelId,
}

/// Why a subject was refused. `tenant` is the raw tenant token when one could be read, for the
/// tenant-tagged log line.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("subject does not start with {0:?}")]
    Prefix(String),
    #[error("subject must have 4 tokens after the prefix (env.tenant.team.channel), has {0}")]
    Shape(usize),
    #[error(transparent)]
    Id(#[from] InvalidId),
}

/// `{prefix}.ingress.` (or `egress`) as written on the wire.
pub fn stem(prefix: &str, direction: &str) -> String {
    format!("{prefix}.{direction}.")
}

/// Parses an ingress subject under `prefix`.
pub fn parse_ingress(prefix: &str, subject: &str) -> Result<Address, SubjectError> {
    let stem = stem(prefix, "ingress");
    let rest = subject
        .strip_prefix(&stem)
        .ok_or_else(|| SubjectError::Prefix(stem.clone()))?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let [env, tenant, team, channel] = tokens.as_slice() else {
        return Err(SubjectError::Shape(tokens.len()));
    };
    Ok(Address {
        env: EnvId::parse(env)?,
        tenant: TenantId::parse(tenant)?,
        team: TeamId::parse(team)?,
        channel: ChannelId::parse(channel)?,
    })
}

/// The raw tenant token of an ingress-shaped subject, for logging a rejected one.
pub fn tenant_token<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(&stem(prefix, "ingress"))?;
    rest.split('.').nth(1)
}

/// The egress subject of an address. Ids are valid NATS tokens by construction.
pub fn egress(
    prefix: &str,
    env: &EnvId,
    tenant: &TenantId,
    team: &TeamId,
    channel: &ChannelId,
) -> String {
    format!("{}{env}.{tenant}.{team}.{channel}", stem(prefix, "egress"))
}

/// What to subscribe to: every tenant, or only the dedicated one.
pub fn ingress_filter(prefix: &str, dedicated: Option<&TenantId>) -> String {
    match dedicated {
        Some(t) => format!("{}*.{t}.*.*", stem(prefix, "ingress")),
        None => format!("{}*.*.*.*", stem(prefix, "ingress")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "greentic.messaging";

    #[test]
    fn valid_subjects_parse_into_ids() {
        let a = parse_ingress(P, "greentic.messaging.ingress.prod.acme.support.slack").unwrap();
        assert_eq!(
            (
                a.env.as_str(),
                a.tenant.as_str(),
                a.team.as_str(),
                a.channel.as_str()
            ),
            ("prod", "acme", "support", "slack")
        );
        assert_eq!(
            egress(P, &a.env, &a.tenant, &a.team, &a.channel),
            "greentic.messaging.egress.prod.acme.support.slack"
        );
    }

    #[test]
    fn malformed_subjects_are_rejected() {
        for bad in [
            "greentic.messaging.ingress.prod.acme.support",
            "greentic.messaging.ingress.prod.acme.support.slack.extra",
            "greentic.messaging.ingress.prod.ACME.support.slack",
            "greentic.messaging.ingress.prod..support.slack",
            "greentic.messaging.egress.prod.acme.support.slack",
            "other.ingress.prod.acme.support.slack",
            "greentic.messaging.ingress.prod.acme.support.sl%ck",
        ] {
            assert!(parse_ingress(P, bad).is_err(), "{bad}");
        }
        assert_eq!(
            tenant_token(P, "greentic.messaging.ingress.prod.ACME.support.slack"),
            Some("ACME")
        );
    }

    #[test]
    fn filters_follow_the_deployment_mode() {
        assert_eq!(
            ingress_filter(P, None),
            "greentic.messaging.ingress.*.*.*.*"
        );
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            ingress_filter(P, Some(&acme)),
            "greentic.messaging.ingress.*.acme.*.*"
        );
    }
}
