//! The export limits of `[server]`: defaults, bounds, and errors that name the key.

use super::*;

fn limits(section: ServerSection) -> Result<ExportLimits, String> {
    export_limits(Path::new("config.toml"), &section).map_err(|e| e.to_string())
}

#[test]
fn absent_keys_give_the_defaults() {
    assert_eq!(
        limits(ServerSection::default()),
        Ok(ExportLimits::default())
    );
    let one = ServerSection {
        exports_max: Some(1),
        ..ServerSection::default()
    };
    // The per-tenant default never exceeds the total.
    assert_eq!(limits(one).map(|l| l.per_tenant_max), Ok(1));
}

#[test]
fn values_out_of_range_name_their_key_and_the_range() {
    let cases = [
        (
            ServerSection {
                exports_max: Some(0),
                ..ServerSection::default()
            },
            "server.exports_max",
        ),
        (
            ServerSection {
                exports_max: Some(EXPORTS_MAX_MAX + 1),
                ..ServerSection::default()
            },
            "server.exports_max",
        ),
        (
            ServerSection {
                exports_max: Some(4),
                exports_per_tenant_max: Some(5),
                ..ServerSection::default()
            },
            "server.exports_per_tenant_max",
        ),
        (
            ServerSection {
                exports_per_tenant_max: Some(0),
                ..ServerSection::default()
            },
            "server.exports_per_tenant_max",
        ),
        (
            ServerSection {
                export_write_timeout: Some("soon".into()),
                ..ServerSection::default()
            },
            "server.export_write_timeout",
        ),
        (
            ServerSection {
                export_write_timeout: Some("10ms".into()),
                ..ServerSection::default()
            },
            "server.export_write_timeout",
        ),
        (
            ServerSection {
                export_write_timeout: Some("2h".into()),
                ..ServerSection::default()
            },
            "server.export_write_timeout",
        ),
    ];
    for (section, key) in cases {
        let error = limits(section).unwrap_err();
        assert!(error.contains(key), "{error}");
        assert!(
            error.contains("give") || error.contains("write e.g."),
            "{error}"
        );
    }
    let ok = ServerSection {
        exports_max: Some(3),
        exports_per_tenant_max: Some(3),
        export_write_timeout: Some("1s".into()),
        ..ServerSection::default()
    };
    assert_eq!(
        limits(ok),
        Ok(ExportLimits {
            max: 3,
            per_tenant_max: 3,
            write_timeout: Duration::from_secs(1),
        })
    );
}
