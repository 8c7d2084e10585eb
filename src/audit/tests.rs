use super::*;
use crate::audit::fixture;

#[test]
fn times_parse_from_rfc3339_or_unix_ms() {
    assert_eq!(
        parse_time("2026-11-23T10:00:00Z").unwrap(),
        1_795_428_000_000
    );
    assert_eq!(
        parse_time("2026-11-23T10:00:00.123Z").unwrap(),
        1_795_428_000_123
    );
    assert_eq!(parse_time("1795428000000").unwrap(), 1_795_428_000_000);
    for bad in [
        "",
        "yesterday",
        "2026-11-23",
        "2026-11-23T10:00:00+02:00",
        "-5",
    ] {
        let err = parse_time(bad).unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{bad}: {err}");
    }
}

#[test]
fn times_format_as_rfc3339_utc_with_milliseconds() {
    assert_eq!(format_time(1_795_428_000_123), "2026-11-23T10:00:00.123Z");
    assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_time(u64::MAX), format!("unix-ms:{}", u64::MAX));
    assert_eq!(
        parse_time(&format_time(1_795_428_000_123)).unwrap(),
        1_795_428_000_123
    );
}

#[test]
fn windows_include_since_and_exclude_until() {
    assert!(in_window(10, Some(10), Some(11)));
    assert!(!in_window(11, Some(10), Some(11)));
    assert!(!in_window(9, Some(10), None));
    assert!(in_window(9, None, None));
}

#[test]
fn resume_points_come_only_from_stopped_exports() {
    let interrupted = AuditError::Interrupted { next_tenant_seq: 7 };
    assert_eq!(interrupted.resume_from_seq(), Some(7));
    assert!(interrupted.to_string().contains("--from-seq 7"));
    let partial = AuditError::Partial {
        next_tenant_seq: 3,
        cause: Box::new(AuditError::Reencode { tenant_seq: 3 }),
    };
    assert!(partial.to_string().contains("tenant_seq 3"));
    assert!(partial.to_string().contains("--from-seq 3"));
    assert_eq!(AuditError::Usage("x".into()).resume_from_seq(), None);
}

#[test]
fn a_held_data_dir_is_reported_as_in_use() {
    let fx = fixture::build();
    let err = open_log_at(fx.dir.path(), &fx.dir.path().join("log"))
        .err()
        .unwrap();
    assert!(matches!(err, AuditError::InUse(_)), "{err}");
    assert!(
        err.to_string().contains("in use by a running server"),
        "{err}"
    );
}
