use super::*;
use crate::audit::fixture;
use crate::audit::record::{hash_hex, Manifest};
use crate::events::codec::GENESIS_HASH;
use crate::tenancy::fixtures::id;

fn run(log: &EventLog, opts: &ExportOptions) -> (String, Manifest) {
    let mut out = Vec::new();
    let manifest = export(log, opts, &mut out, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    (String::from_utf8(out).unwrap(), manifest)
}

fn events(text: &str) -> Vec<EventLine> {
    text.lines()
        .filter(|l| l.starts_with("{\"type\":\"event\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_jsonl_export_holds_the_tenant_and_ends_with_its_manifest() {
    let fx = fixture::build();
    let (text, manifest) = run(
        &fx.log,
        &ExportOptions::new(id("acme"), ExportFormat::Jsonl),
    );
    let lines = events(&text);
    let head = fx.log.tenant(&id("acme")).head().unwrap().unwrap();
    assert_eq!(lines.len() as u64, head.tenant_seq);
    assert!(lines.iter().all(|l| l.tenant == "acme"));
    assert!(
        !text.contains("acmex"),
        "another tenant leaked into the export"
    );
    let seqs: Vec<u64> = lines.iter().map(|l| l.tenant_seq).collect();
    assert_eq!(seqs, (1..=head.tenant_seq).collect::<Vec<_>>());

    let last: Manifest = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last, manifest);
    assert_eq!(manifest.format, "tenantry-audit/1");
    assert_eq!(manifest.count, head.tenant_seq);
    assert_eq!(
        (manifest.first_tenant_seq, manifest.last_tenant_seq),
        (Some(1), Some(head.tenant_seq))
    );
    assert_eq!(manifest.first_prev_hash, Some(hash_hex(&GENESIS_HASH)));
    assert_eq!(manifest.head_hash, Some(hash_hex(&head.hash)));
    assert!(manifest.contiguous && manifest.complete);
    assert_eq!(manifest.env, None);
}

#[test]
fn a_csv_export_has_a_header_and_one_row_per_event() {
    let fx = fixture::build();
    let (text, manifest) = run(&fx.log, &ExportOptions::new(id("acme"), ExportFormat::Csv));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_COLUMNS.to_vec()
    );
    let rows: Vec<EventLine> = reader
        .records()
        .map(|r| EventLine::from_csv_row(&r.unwrap()).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, manifest.count);
    assert!(text.contains("\r\n"), "RFC 4180 lines end in CRLF");
    assert!(
        !text.contains("manifest"),
        "the CSV manifest is returned, not written"
    );
    let texts: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.data["text"].as_str())
        .collect();
    assert!(texts.contains(&crate::audit::fixture::HOSTILE));
}

#[test]
fn env_and_time_filters_make_a_non_contiguous_export() {
    let fx = fixture::build();
    let mut opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    opts.env = Some(id("staging"));
    let (text, manifest) = run(&fx.log, &opts);
    let lines = events(&text);
    assert!(!lines.is_empty() && lines.iter().all(|l| l.env == "staging"));
    assert!(!manifest.contiguous);
    assert_eq!(manifest.env.as_deref(), Some("staging"));

    let mut opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    opts.since_ms = Some(1_795_428_001_000);
    opts.until_ms = Some(1_795_428_002_000);
    let (text, manifest) = run(&fx.log, &opts);
    let lines = events(&text);
    assert!(!lines.is_empty() && lines.iter().all(|l| l.at == 1_795_428_001_000));
    assert!(!manifest.contiguous);
}

#[test]
fn from_seq_starts_later_and_anchors_on_the_previous_hash() {
    let fx = fixture::build();
    let all = events(
        &run(
            &fx.log,
            &ExportOptions::new(id("acme"), ExportFormat::Jsonl),
        )
        .0,
    );
    let mut opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    opts.from_seq = 4;
    let (text, manifest) = run(&fx.log, &opts);
    let lines = events(&text);
    assert_eq!(lines.first().unwrap().tenant_seq, 4);
    assert!(manifest.contiguous);
    assert_eq!(
        manifest.first_prev_hash.as_deref(),
        Some(all[2].hash.as_str())
    );
    assert_eq!(lines.as_slice(), &all[3..]);
}

#[test]
fn an_empty_tenant_exports_an_empty_manifest() {
    let fx = fixture::build();
    let (text, manifest) = run(
        &fx.log,
        &ExportOptions::new(id("nobody"), ExportFormat::Jsonl),
    );
    assert_eq!(text.lines().count(), 1);
    assert_eq!(manifest.count, 0);
    assert_eq!(manifest.first_tenant_seq, None);
    assert_eq!(manifest.head_hash, None);
}

#[test]
fn a_cancelled_export_has_no_manifest_and_says_where_to_resume() {
    let fx = fixture::build();
    let mut out = Vec::new();
    let mut opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    opts.from_seq = 3;
    let err = export(
        &fx.log,
        &opts,
        &mut out,
        &mut |_| {},
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert_eq!(err.resume_from_seq(), Some(3));
    assert!(out.is_empty());
}

#[test]
fn a_failing_output_reports_a_partial_export() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let fx = fixture::build();
    let opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    let err = export(
        &fx.log,
        &opts,
        &mut Broken,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Partial {
                next_tenant_seq: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn export_to_a_file_writes_the_sidecar_last() {
    let fx = fixture::build();
    let path = fx.dir.path().join("out.csv");
    let sidecar = sidecar_path(&path);
    std::fs::write(&sidecar, "stale").unwrap();
    let opts = ExportOptions::new(id("acme"), ExportFormat::Csv);
    let manifest = export_to(&fx.log, &opts, Some(&path), &AtomicBool::new(false)).unwrap();
    let written: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    assert_eq!(written, manifest);
    assert_eq!(sidecar.file_name().unwrap(), "out.csv.manifest.json");

    // A failed export to the same file leaves no manifest vouching for it.
    let err = export_to(&fx.log, &opts, Some(&path), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(err, AuditError::Interrupted { .. }));
    assert!(!sidecar.exists());
}

#[test]
fn formats_parse_from_their_names() {
    assert_eq!(
        "jsonl".parse::<ExportFormat>().unwrap(),
        ExportFormat::Jsonl
    );
    assert_eq!("csv".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
    assert!("xml".parse::<ExportFormat>().is_err());
}

/// acme with two sessions of 40 groups of 63 events each, long texts: over 1 MB of frames,
/// so an export's reading thread hands it over in many batches.
fn big_log(dir: &std::path::Path) -> (EventLog, u64) {
    use crate::events::log::{AppendGroup, AppendOutcome, LogOptions};
    use crate::events::schema::EventKind;
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    let mut last = [0u64; 2];
    for g in 0..40 {
        for (s, seq) in last.iter_mut().enumerate() {
            let mut kinds: Vec<EventKind> = (0..63)
                .map(|i| EventKind::ReplySent {
                    node: format!("n{i}"),
                    text: format!("{g} {i} {}", fixture::HOSTILE.repeat(4)),
                })
                .collect();
            if *seq == 0 {
                kinds[0] = EventKind::SessionStarted {
                    user: "u".into(),
                    flow: "f".into(),
                    flow_version: "1".into(),
                };
            }
            let group = AppendGroup {
                ctx: fixture::ctx("acme", "prod"),
                channel: id("web"),
                session: id(&format!("s{s}")),
                expected_seq: *seq,
                at_ms: 1_700_000_000_000 + g,
                kinds,
                idempotency: None,
            };
            match log.append_blocking(group).unwrap() {
                AppendOutcome::Appended(a) => *seq = a.last_seq,
                other => panic!("{other:?}"),
            }
        }
    }
    let head = log.tenant(&id("acme")).head().unwrap().unwrap().tenant_seq;
    (log, head)
}

#[test]
fn an_export_read_ahead_in_many_batches_verifies_and_holds_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, head) = big_log(dir.path());
    let opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    let (text, manifest) = run(&log, &opts);
    assert!(text.len() > 4 * EXPORT_BATCH_BYTES * EXPORT_BATCHES_IN_FLIGHT);
    // Line for line what the event read gives, with the stored bodies.
    let expected: Vec<EventLine> = log
        .tenant(&id("acme"))
        .events(1..=head)
        .map(|e| {
            let e = e.unwrap();
            let body = encode_body(&e.event);
            EventLine::new(&e, Some(&body))
        })
        .collect();
    assert_eq!(events(&text), expected);
    assert_eq!(manifest.count, head);
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, &text).unwrap();
    let verdict = crate::audit::verify::verify_file(&path, None).unwrap();
    assert!(verdict.is_intact(), "{verdict:?}");
}

#[test]
fn a_corrupt_frame_part_way_ends_the_export_right_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, head) = big_log(dir.path());
    drop(log);
    // Flip a byte of the frame holding tenant_seq 4000 (a later batch), below the log API.
    let corrupt_at = {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree(b"log").unwrap();
        let (start, _) = crate::events::keys::frame_range(&id("acme"));
        let (key, value) = tree
            .range(start..=crate::events::keys::frame_key(&id("acme"), 4000))
            .next_back()
            .unwrap()
            .unwrap();
        let mut value = value.to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x40;
        tree.insert(&key, value).unwrap();
        db.flush().unwrap();
        crate::events::keys::frame_key_seq(&key, &id("acme")).unwrap()
    };
    assert!(1 < corrupt_at && corrupt_at < head);
    let log = EventLog::open(dir.path(), &crate::events::log::LogOptions::default()).unwrap();
    let mut out = Vec::new();
    let opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    let err = export(&log, &opts, &mut out, &mut |_| {}, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(err.resume_from_seq(), Some(corrupt_at), "{err}");
    assert!(matches!(err, AuditError::Partial { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("tenant_seq {corrupt_at}")),
        "{err}"
    );
    // Every line before it was written, and no manifest.
    let text = String::from_utf8(out).unwrap();
    let lines = events(&text);
    assert_eq!(lines.len() as u64, corrupt_at - 1);
    assert_eq!(lines.last().unwrap().tenant_seq, corrupt_at - 1);
    assert!(!text.contains("\"type\":\"manifest\""));
}
