//! `[connectors]`: the connector registry's heartbeat interval and the outboxes' time to live
//! (docs/config.md, docs/connectors.md "Connectors").
//!
//! Invariant: a loaded [`ConnectorsConfig`] has `heartbeat_interval` within
//! [`HEARTBEAT_INTERVAL_MIN`]`..=`[`HEARTBEAT_INTERVAL_MAX`] and `outbox_ttl` within
//! [`OUTBOX_TTL_MIN`]`..=`[`OUTBOX_TTL_MAX`], both whole seconds.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{invalid, parse_duration};
use super::ConfigError;

/// `connectors.heartbeat_interval` when absent.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest `connectors.heartbeat_interval`.
pub const HEARTBEAT_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Longest `connectors.heartbeat_interval`.
pub const HEARTBEAT_INTERVAL_MAX: Duration = Duration::from_secs(10 * 60);

/// `connectors.outbox_ttl` when absent.
pub const DEFAULT_OUTBOX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest `connectors.outbox_ttl`.
pub const OUTBOX_TTL_MIN: Duration = Duration::from_secs(1);
/// Longest `connectors.outbox_ttl`.
pub const OUTBOX_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// `[connectors]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorsSection {
    /// A humantime duration such as `10s`.
    #[serde(default)]
    pub heartbeat_interval: Option<String>,
    /// A humantime duration such as `24h`.
    #[serde(default)]
    pub outbox_ttl: Option<String>,
}

/// `[connectors]`, checked, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectorsConfig {
    /// How often a connector heartbeats; it is `live` within 2 intervals of its last heartbeat,
    /// `stale` within 5, else `dead`. The registry's sweep runs once per interval.
    pub heartbeat_interval: Duration,
    /// How long a reply waits in a connector's outbox unacknowledged before the sweep gives it
    /// up as a dead letter (`OutboxDeadLettered`).
    pub outbox_ttl: Duration,
}

impl Default for ConnectorsConfig {
    fn default() -> ConnectorsConfig {
        ConnectorsConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            outbox_ttl: DEFAULT_OUTBOX_TTL,
        }
    }
}

/// Reads and checks `[connectors]`.
pub(super) fn connectors_config(
    path: &Path,
    raw: ConnectorsSection,
) -> Result<ConnectorsConfig, ConfigError> {
    let defaults = ConnectorsConfig::default();
    let heartbeat_interval = match &raw.heartbeat_interval {
        None => defaults.heartbeat_interval,
        Some(text) => whole_seconds(
            path,
            ("connectors.heartbeat_interval", text),
            HEARTBEAT_INTERVAL_MIN..=HEARTBEAT_INTERVAL_MAX,
            ("1s..=10min", "\"10s\""),
        )?,
    };
    let outbox_ttl = match &raw.outbox_ttl {
        None => defaults.outbox_ttl,
        Some(text) => whole_seconds(
            path,
            ("connectors.outbox_ttl", text),
            OUTBOX_TTL_MIN..=OUTBOX_TTL_MAX,
            ("1s..=30days", "\"24h\""),
        )?,
    };
    Ok(ConnectorsConfig {
        heartbeat_interval,
        outbox_ttl,
    })
}

/// `text` of `field` as a duration of whole seconds within `range` (else an error naming the
/// field, the range and an `example`).
fn whole_seconds(
    path: &Path,
    (field, text): (&'static str, &str),
    range: std::ops::RangeInclusive<Duration>,
    (range_text, example): (&str, &str),
) -> Result<Duration, ConfigError> {
    let value = parse_duration(path, field, text, example)?;
    if !range.contains(&value) || value.subsec_nanos() != 0 {
        return Err(invalid(
            path,
            field,
            format!(
                "{text:?} is out of range: give whole seconds within {range_text} (e.g. {example})"
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(interval: Option<&str>) -> Result<ConnectorsConfig, String> {
        let raw = ConnectorsSection {
            heartbeat_interval: interval.map(str::to_owned),
            outbox_ttl: None,
        };
        connectors_config(Path::new("config.toml"), raw).map_err(|e| e.to_string())
    }

    #[test]
    fn default_bounds_and_errors_name_the_field() {
        assert_eq!(load(None), Ok(ConnectorsConfig::default()));
        assert_eq!(
            load(Some("1s")).map(|c| c.heartbeat_interval),
            Ok(Duration::from_secs(1))
        );
        for bad in ["500ms", "1500ms", "11min", "soon"] {
            let e = load(Some(bad)).expect_err(bad);
            assert!(e.contains("connectors.heartbeat_interval"), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod outbox_ttl_tests {
    use super::*;

    fn load(ttl: &str) -> Result<Duration, String> {
        let raw = ConnectorsSection {
            heartbeat_interval: None,
            outbox_ttl: Some(ttl.to_owned()),
        };
        connectors_config(Path::new("config.toml"), raw)
            .map(|c| c.outbox_ttl)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn outbox_ttl_default_bounds_and_errors_name_the_field() {
        assert_eq!(ConnectorsConfig::default().outbox_ttl, DEFAULT_OUTBOX_TTL);
        assert_eq!(load("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(load("30days"), Ok(OUTBOX_TTL_MAX));
        for bad in ["0s", "500ms", "31days", "later"] {
            let e = load(bad).expect_err(bad);
            assert!(e.contains("connectors.outbox_ttl"), "{bad}: {e}");
        }
    }
}
