//! `[connectors]`: the connector registry's heartbeat interval (docs/config.md, docs/http.md
//! "Connectors").
//!
//! Invariant: a loaded [`ConnectorsConfig`] has `heartbeat_interval` within
//! [`HEARTBEAT_INTERVAL_MIN`]`..=`[`HEARTBEAT_INTERVAL_MAX`].

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

/// `[connectors]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorsSection {
    /// A humantime duration such as `10s`.
    #[serde(default)]
    pub heartbeat_interval: Option<String>,
}

/// `[connectors]`, checked, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectorsConfig {
    /// How often a connector heartbeats; it is `live` within 2 intervals of its last heartbeat,
    /// `stale` within 5, else `dead`. The registry's sweep runs once per interval.
    pub heartbeat_interval: Duration,
}

impl Default for ConnectorsConfig {
    fn default() -> ConnectorsConfig {
        ConnectorsConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }
}

/// Reads and checks `[connectors]`.
pub(super) fn connectors_config(
    path: &Path,
    raw: ConnectorsSection,
) -> Result<ConnectorsConfig, ConfigError> {
    let Some(text) = &raw.heartbeat_interval else {
        return Ok(ConnectorsConfig::default());
    };
    const FIELD: &str = "connectors.heartbeat_interval";
    let interval = parse_duration(path, FIELD, text, "\"10s\"")?;
    if !(HEARTBEAT_INTERVAL_MIN..=HEARTBEAT_INTERVAL_MAX).contains(&interval)
        || interval.subsec_nanos() != 0
    {
        return Err(invalid(
            path,
            FIELD,
            format!(
                "{text:?} is out of range: give whole seconds within 1s..=10min (e.g. \"10s\")"
            ),
        ));
    }
    Ok(ConnectorsConfig {
        heartbeat_interval: interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(interval: Option<&str>) -> Result<ConnectorsConfig, String> {
        let raw = ConnectorsSection {
            heartbeat_interval: interval.map(str::to_owned),
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
