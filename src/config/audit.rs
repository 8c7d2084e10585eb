//! `[audit]`: how often `serve` signs each tenant's chain head (docs/audit.md, "Anchored chain
//! heads").
//!
//! Invariant: a loaded [`AuditConfig`] has `head_sign_every_events` within
//! `1..=`[`HEAD_SIGN_EVERY_EVENTS_MAX`] and `head_sign_interval` within
//! [`HEAD_SIGN_INTERVAL_MIN`]`..=`[`HEAD_SIGN_INTERVAL_MAX`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{invalid, parse_duration};
use super::ConfigError;

/// `audit.head_sign_every_events` when absent: events after which a tenant's head is signed.
pub const DEFAULT_HEAD_SIGN_EVERY_EVENTS: u64 = 10_000;
/// Largest `audit.head_sign_every_events`.
pub const HEAD_SIGN_EVERY_EVENTS_MAX: u64 = 100_000_000;
/// `audit.head_sign_interval` when absent: a tenant whose head moved is signed at least this
/// often.
pub const DEFAULT_HEAD_SIGN_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest `audit.head_sign_interval`.
pub const HEAD_SIGN_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Longest `audit.head_sign_interval`.
pub const HEAD_SIGN_INTERVAL_MAX: Duration = Duration::from_secs(24 * 3600);

/// `[audit]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditSection {
    #[serde(default)]
    pub head_sign_every_events: Option<u64>,
    /// A humantime duration such as `60s`.
    #[serde(default)]
    pub head_sign_interval: Option<String>,
}

/// `[audit]`, checked, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// A tenant's head is signed once this many events were appended since its last signed head.
    pub head_sign_every_events: u64,
    /// ... or once this long passed since its last signed head, if it moved at all.
    pub head_sign_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            head_sign_every_events: DEFAULT_HEAD_SIGN_EVERY_EVENTS,
            head_sign_interval: DEFAULT_HEAD_SIGN_INTERVAL,
        }
    }
}

/// Reads and checks `[audit]`.
pub(super) fn audit_config(path: &Path, raw: AuditSection) -> Result<AuditConfig, ConfigError> {
    let every = raw
        .head_sign_every_events
        .unwrap_or(DEFAULT_HEAD_SIGN_EVERY_EVENTS);
    if !(1..=HEAD_SIGN_EVERY_EVENTS_MAX).contains(&every) {
        return Err(invalid(
            path,
            "audit.head_sign_every_events",
            format!(
                "{every} is out of range: give 1..={HEAD_SIGN_EVERY_EVENTS_MAX} events between \
                 signed heads"
            ),
        ));
    }
    let interval = match &raw.head_sign_interval {
        None => DEFAULT_HEAD_SIGN_INTERVAL,
        Some(text) => {
            const FIELD: &str = "audit.head_sign_interval";
            let interval = parse_duration(path, FIELD, text, "\"60s\"")?;
            if !(HEAD_SIGN_INTERVAL_MIN..=HEAD_SIGN_INTERVAL_MAX).contains(&interval) {
                return Err(invalid(
                    path,
                    FIELD,
                    format!("{text:?} is out of range: give 1s..=24h (e.g. \"60s\")"),
                ));
            }
            interval
        }
    };
    Ok(AuditConfig {
        head_sign_every_events: every,
        head_sign_interval: interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(every: Option<u64>, interval: Option<&str>) -> Result<AuditConfig, String> {
        let raw = AuditSection {
            head_sign_every_events: every,
            head_sign_interval: interval.map(str::to_owned),
        };
        audit_config(Path::new("config.toml"), raw).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_bounds_name_the_field() {
        assert_eq!(load(None, None), Ok(AuditConfig::default()));
        let ok = load(Some(5), Some("2s")).expect("in range");
        assert_eq!(ok.head_sign_every_events, 5);
        assert_eq!(ok.head_sign_interval, Duration::from_secs(2));
        let zero = load(Some(0), None).expect_err("0 events");
        assert!(zero.contains("audit.head_sign_every_events"), "{zero}");
        let short = load(None, Some("100ms")).expect_err("too short");
        assert!(short.contains("audit.head_sign_interval"), "{short}");
        let bad = load(None, Some("soon")).expect_err("not a duration");
        assert!(bad.contains("audit.head_sign_interval"), "{bad}");
    }
}
