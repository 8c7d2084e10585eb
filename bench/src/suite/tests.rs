use super::*;

fn sample_rows() -> Vec<Row> {
    vec![
        row(
            "log",
            "best / raw sled (same run)",
            "0.89×",
            "≥ 0.5×",
            Some(true),
        ),
        row(
            "http",
            "HTTP acks",
            "9,442 req/s",
            "≥ 20,000 req/s",
            Some(false),
        ),
        row("history", "replay", "236,000 events/s", "", None),
    ]
}

#[test]
fn counts_are_grouped_by_thousands() {
    assert_eq!(count(0.0), "0");
    assert_eq!(count(999.4), "999");
    assert_eq!(count(1_000.0), "1,000");
    assert_eq!(count(104_099.2), "104,099");
    assert_eq!(count(10_100_065.0), "10,100,065");
    assert_eq!(count(-5.0), "0");
}

#[test]
fn the_table_marks_hits_misses_and_plain_figures() {
    let table = markdown_table(&sample_rows());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[2].ends_with("| ≥ 0.5× | hit |"), "{}", lines[2]);
    assert!(lines[3].ends_with("| **missed** |"), "{}", lines[3]);
    assert!(lines[4].ends_with("| – |  |"), "{}", lines[4]);
}

#[test]
fn only_the_text_between_the_markers_is_replaced() {
    let doc =
        format!("# Benchmarks\nintro\n{TABLE_BEGIN}\nold table\n{TABLE_END}\n## Details\nkept\n");
    let new = replace_section(&doc, "NEW\n").unwrap();
    assert_eq!(
        new,
        format!("# Benchmarks\nintro\n{TABLE_BEGIN}\nNEW\n{TABLE_END}\n## Details\nkept\n")
    );
    // Idempotent: regenerating gives the same document.
    assert_eq!(replace_section(&new, "NEW\n").unwrap(), new);
}

#[test]
fn missing_markers_are_an_error_that_names_them() {
    let err = replace_section("# no markers\n", "x").unwrap_err();
    assert!(err.contains("bench-table:begin"), "{err}");
    let err = replace_section(&format!("{TABLE_BEGIN}\nno end\n"), "x").unwrap_err();
    assert!(err.contains("bench-table:end"), "{err}");
}

#[test]
fn update_markdown_rewrites_the_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BENCHMARKS.md");
    std::fs::write(
        &path,
        format!("top\n{TABLE_BEGIN}\nold\n{TABLE_END}\nbottom\n"),
    )
    .unwrap();
    let report = SuiteReport {
        tenantry_version: "0.0.0",
        size: Size::Quick,
        started_unix_s: 0,
        seconds: 12.0,
        machine: Machine {
            cpu: "Test CPU".to_owned(),
            cores: 2,
            memory_gib: 24.0,
            kernel: "6.1".to_owned(),
        },
        rows: sample_rows(),
        scenarios: BTreeMap::new(),
    };
    update_markdown(&path, &report).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("top\n"));
    assert!(text.ends_with(&format!("{TABLE_END}\nbottom\n")));
    assert!(!text.contains("\nold\n"));
    assert!(text.contains("`tenantry-bench --quick` (12 s)"), "{text}");
    assert!(text.contains("| http | HTTP acks | 9,442 req/s | ≥ 20,000 req/s | **missed** |"));
    // A file without markers is left alone.
    let bare = dir.path().join("bare.md");
    std::fs::write(&bare, "nothing here\n").unwrap();
    assert!(update_markdown(&bare, &report).is_err());
    assert_eq!(std::fs::read_to_string(&bare).unwrap(), "nothing here\n");
}

#[test]
fn the_log_scenario_reports_the_fdatasync_floor_beside_raw_sled() {
    let dir = tempfile::tempdir().unwrap();
    let opts = log::LogBenchOptions {
        appenders: vec![1],
        log: tenantry::events::log::LogOptions::default(),
        duration: std::time::Duration::from_millis(100),
        paced_fraction: 0.0,
    };
    let report = log::run(dir.path(), &opts, &mut |_| {}).unwrap();
    // The floor wrote every event's bytes (and a length each) to its file, fdatasynced.
    assert!(report.floor.events > 0, "{:?}", report.floor);
    assert!(
        report.floor.disk_bytes_per_event >= report.event_bytes_avg,
        "{:?} vs {} bytes/event",
        report.floor,
        report.event_bytes_avg
    );
    assert!(report.ratio_to_floor > 0.0);
    let rows = log_rows(&report);
    let figures: Vec<&str> = rows.iter().map(|r| r.figure.as_str()).collect();
    assert!(
        figures
            .iter()
            .any(|f| f.starts_with("fdatasync floor (") && f.ends_with("events/batch, plain file)")),
        "{figures:?}"
    );
    assert!(
        figures.contains(&"best / fdatasync floor (same run)"),
        "{figures:?}"
    );
}
