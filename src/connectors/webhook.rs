//! The built-in webhook connector (docs/connectors.md "Webhook delivery"): a channel with `provider =
//! "webhook"` and `config.url` has its replies POSTed there as JSON, signed with the tenant's
//! (or team's) secret `webhook_secret`.
//!
//! Signature rule (the inbound check uses the same bytes): `X-Tenantry-Timestamp: T` (Unix
//! seconds) and `X-Tenantry-Signature: sha256=<lowercase hex of HMAC-SHA256(secret,
//! "{T}.{body}")>`, where `body` is the exact request body.
//!
//! Each webhook channel of each env is an internal connector of the registry
//! ([`webhook_connector_id`]), so its deliveries use the outbox's cursor, acks and dead letters.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::tenancy::{ChannelId, ConnectorId, TeamId};

/// The `provider` of a webhook channel.
pub const WEBHOOK_PROVIDER: &str = "webhook";
/// The secret (team's, else tenant's) that signs a channel's webhook requests.
pub const WEBHOOK_SECRET_NAME: &str = "webhook_secret";
/// The prefix of webhook channels' internal connector ids.
pub const WEBHOOK_CONNECTOR_PREFIX: &str = "webhook-";
/// The request header naming the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Tenantry-Timestamp";
/// The request header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Tenantry-Signature";
/// One request's whole timeout (connect, send, answer).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry's delay after a failed delivery; doubled per failure in a row...
pub const WEBHOOK_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// ... up to this.
pub const WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most replies one delivery round sends before acknowledging them.
pub const WEBHOOK_BATCH_MAX: usize = 50;

/// The internal connector id of `team`'s webhook channel `channel`: the prefix and 16 hex
/// digits of SHA-256 of `team/channel` (ids are short; team and channel are in the registry).
pub fn webhook_connector_id(team: &TeamId, channel: &ChannelId) -> ConnectorId {
    let digest = Sha256::digest(format!("{team}/{channel}").as_bytes());
    let hex = hex::encode(&digest[..8]);
    ConnectorId::parse(&format!("{WEBHOOK_CONNECTOR_PREFIX}{hex}"))
        .expect("the prefix and 16 hex digits are a valid connector id")
}

/// `sha256=<hex>` of HMAC-SHA256 keyed with `secret` over `{timestamp}.{body}`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before the next attempt after `failures` failed deliveries in a row (at least 1).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    WEBHOOK_BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(WEBHOOK_BACKOFF_MAX)
}

/// Why one webhook request failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Transport(String),
}

/// POSTs `body` to `url` with the timestamp and signature headers; blocking (run it on the
/// blocking pool). Any 2xx is a delivery.
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    secret: &[u8],
    timestamp: u64,
) -> Result<(), DeliveryError> {
    let answer = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature(secret, timestamp, body))
        .send(body)
        .map_err(|e| DeliveryError::Transport(e.to_string()))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(DeliveryError::Status(status))
    }
}

/// The HTTP client of webhook deliveries: [`WEBHOOK_TIMEOUT`], statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WEBHOOK_TIMEOUT))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2's key and a message shaped `{t}.{body}`, checked against
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"Jefe",b"1700000000.{}",hashlib.sha256).hexdigest())'
        let sig = signature(b"Jefe", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), WEBHOOK_BACKOFF_BASE);
        assert_eq!(backoff(2), WEBHOOK_BACKOFF_BASE * 2);
        assert_eq!(backoff(3), WEBHOOK_BACKOFF_BASE * 4);
        assert_eq!(backoff(40), WEBHOOK_BACKOFF_MAX);
    }

    #[test]
    fn connector_ids_differ_per_team_and_channel() {
        let (a, b) = (TeamId::parse("a-b").unwrap(), TeamId::parse("a").unwrap());
        let (c, bc) = (
            ChannelId::parse("c").unwrap(),
            ChannelId::parse("b-c").unwrap(),
        );
        assert_ne!(webhook_connector_id(&a, &c), webhook_connector_id(&b, &bc));
        assert!(webhook_connector_id(&a, &c)
            .as_str()
            .starts_with("webhook-"));
    }
}
