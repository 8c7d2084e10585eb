use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::audit::export::{export_to, ExportFormat, ExportOptions};
use crate::audit::fixture::{self, Fixture};
use crate::audit::record::{encode_base64, hash_hex, EventLine, Manifest};
use crate::events::codec::{chain_hash, encode_body};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;

fn export_file(fx: &Fixture, opts: &ExportOptions, name: &str) -> PathBuf {
    let path = fx.dir.path().join(name);
    export_to(&fx.log, opts, Some(&path), &AtomicBool::new(false)).unwrap();
    path
}

/// A fresh fixture and its acme JSONL export (without the sidecar), as lines.
fn acme_jsonl() -> (Fixture, PathBuf, Vec<String>) {
    let fx = fixture::build();
    let (path, lines) = jsonl(&fx);
    (fx, path, lines)
}

fn jsonl(fx: &Fixture) -> (PathBuf, Vec<String>) {
    let path = export_file(
        fx,
        &ExportOptions::new(id("acme"), ExportFormat::Jsonl),
        "a.jsonl",
    );
    // The sidecar must agree with the trailer; tamper tests edit the file alone.
    std::fs::remove_file(sidecar_path(&path)).unwrap();
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (path, lines)
}

fn verify_lines(path: &Path, lines: &[String]) -> Verdict {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    verify_file(path, None).unwrap()
}

fn broken(verdict: Verdict) -> Problem {
    match verdict {
        Verdict::Broken(p) => p,
        Verdict::Intact(s) => panic!("expected a problem, got intact: {s}"),
    }
}

/// The first problem of `lines` written to `path`, asserted to be of `kind`.
fn broken_as(path: &Path, lines: &[String], kind: ProblemKind) -> Problem {
    let p = broken(verify_lines(path, lines));
    assert_eq!(p.kind, kind, "{p}");
    p
}

/// The first problem of `lines` written to `path`, asserted to be `kind` at line `line`.
fn broken_at(path: &Path, lines: &[String], kind: ProblemKind, line: u64) -> Problem {
    let p = broken_as(path, lines, kind);
    assert_eq!(p.line, Some(line), "{p}");
    p
}

fn edit(line: &str, f: impl FnOnce(&mut EventLine)) -> String {
    let mut rec: EventLine = serde_json::from_str(line).unwrap();
    f(&mut rec);
    serde_json::to_string(&rec).unwrap()
}

#[test]
fn untouched_exports_verify() {
    let fx = fixture::build();
    for (format, name) in [
        (ExportFormat::Jsonl, "a.jsonl"),
        (ExportFormat::Csv, "a.csv"),
    ] {
        let path = export_file(&fx, &ExportOptions::new(id("acme"), format), name);
        let verdict = verify_file(&path, None).unwrap();
        assert!(verdict.is_intact(), "{name}: {verdict}");
        assert!(verdict.to_string().starts_with("OK: "), "{verdict}");
    }
    // An extension-less file is sniffed.
    let path = export_file(
        &fx,
        &ExportOptions::new(id("acmex"), ExportFormat::Jsonl),
        "x",
    );
    assert!(verify_file(&path, None).unwrap().is_intact());
}

#[test]
fn a_filtered_export_verifies_event_by_event() {
    let fx = fixture::build();
    let mut opts = ExportOptions::new(id("acme"), ExportFormat::Jsonl);
    opts.env = Some(id("prod"));
    let path = export_file(&fx, &opts, "prod.jsonl");
    let verdict = verify_file(&path, None).unwrap();
    let Verdict::Intact(summary) = &verdict else {
        panic!("{verdict}");
    };
    assert!(!summary.contiguous);
    assert!(verdict.to_string().contains("filtered"), "{verdict}");

    // Deleting a line cannot break a link that is not there, but the count catches it.
    std::fs::remove_file(sidecar_path(&path)).unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.remove(lines.len() - 3);
    broken_as(&path, &lines, ProblemKind::Deleted);
}

#[test]
fn an_edited_visible_field_is_named() {
    let (fx, path, mut lines) = acme_jsonl();
    let i = lines
        .iter()
        .position(|l| l.contains("\"ReplySent\""))
        .unwrap();
    lines[i] = edit(&lines[i], |r| {
        r.data["text"] = "Welcome, all is fine".into()
    });
    let p = broken_at(&path, &lines, ProblemKind::Edited, i as u64 + 1);
    assert!(p.detail.contains("field data"), "{p}");
    assert_eq!(p.tenant_seq, Some(i as u64 + 1));

    let (path, mut lines) = jsonl(&fx);
    lines[2] = edit(&lines[2], |r| r.session = "s9".into());
    let p = broken_at(&path, &lines, ProblemKind::Edited, 3);
    assert!(p.detail.contains("field session"), "{p}");
}

#[test]
fn an_edited_body_fails_its_hash() {
    let (_fx, path, mut lines) = acme_jsonl();
    lines[3] = edit(&lines[3], |r| {
        let body = r.body.as_mut().unwrap();
        let flipped = if body.starts_with('j') { "k" } else { "j" };
        body.replace_range(0..1, flipped);
    });
    broken_at(&path, &lines, ProblemKind::BadHash, 4);
}

#[test]
fn a_forged_line_with_a_fresh_hash_breaks_the_chain_at_the_next_line() {
    let (fx, path, mut lines) = acme_jsonl();
    let i = lines
        .iter()
        .position(|l| l.contains("\"ReplySent\""))
        .unwrap();
    let mut stored = fx
        .log
        .tenant(&id("acme"))
        .events(i as u64 + 1..=i as u64 + 1)
        .next()
        .unwrap()
        .unwrap();
    stored.event.kind = EventKind::ReplySent {
        node: "greet".into(),
        text: "forged".into(),
    };
    let body = encode_body(&stored.event);
    stored.hash = chain_hash(&stored.prev_hash, &body);
    lines[i] = serde_json::to_string(&EventLine::new(&stored, Some(&body))).unwrap();
    assert!(lines[i].contains(&encode_base64(&body)));
    broken_at(&path, &lines, ProblemKind::BrokenChain, i as u64 + 2);
}

#[test]
fn deleted_inserted_and_reordered_lines_are_told_apart() {
    let (_fx, path, lines) = acme_jsonl();

    let mut deleted = lines.clone();
    deleted.remove(4);
    let p = broken(verify_lines(&path, &deleted));
    assert_eq!(
        (p.kind, p.line, p.tenant_seq),
        (ProblemKind::Deleted, Some(5), Some(6)),
        "{p}"
    );
    assert!(p.detail.contains("tenant_seq 5"), "{p}");

    let mut inserted = lines.clone();
    inserted.insert(6, lines[2].clone());
    let p = broken(verify_lines(&path, &inserted));
    assert_eq!(
        (p.kind, p.line, p.tenant_seq),
        (ProblemKind::Inserted, Some(7), Some(3)),
        "{p}"
    );

    let mut repeated = lines.clone();
    repeated.insert(3, lines[2].clone());
    broken_at(&path, &repeated, ProblemKind::Inserted, 4);

    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    let p = broken(verify_lines(&path, &swapped));
    assert_eq!(
        (p.kind, p.line, p.tenant_seq),
        (ProblemKind::Reordered, Some(4), Some(5)),
        "{p}"
    );

    let mut first_gone = lines.clone();
    first_gone.remove(0);
    broken_at(&path, &first_gone, ProblemKind::Deleted, 1);

    let mut last_event_gone = lines.clone();
    last_event_gone.remove(lines.len() - 2);
    broken_as(&path, &last_event_gone, ProblemKind::Deleted);
}

#[test]
fn another_tenants_line_is_foreign() {
    let (fx, path, mut lines) = acme_jsonl();
    let other = export_file(
        &fx,
        &ExportOptions::new(id("acmex"), ExportFormat::Jsonl),
        "x.jsonl",
    );
    let other_line = std::fs::read_to_string(other)
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    lines.insert(2, other_line);
    broken_at(&path, &lines, ProblemKind::ForeignTenant, 3);
}

#[test]
fn a_missing_or_cut_manifest_is_incomplete() {
    let (_fx, path, mut lines) = acme_jsonl();
    let manifest = lines.pop().unwrap();
    let p = broken_as(&path, &lines, ProblemKind::MissingManifest);
    assert!(
        p.detail.contains(&format!("after line {}", lines.len())),
        "{p}"
    );

    lines.push(manifest[..manifest.len() / 2].to_owned());
    let p = broken_at(&path, &lines, ProblemKind::Malformed, lines.len() as u64);
    assert!(p.detail.contains("manifest"), "{p}");

    std::fs::write(&path, lines.join("\n")).unwrap();
    let p = broken(verify_file(&path, None).unwrap());
    assert_eq!(p.kind, ProblemKind::Malformed, "{p}");
    assert!(p.detail.contains("truncated"), "{p}");

    std::fs::write(&path, "").unwrap();
    assert_eq!(
        broken(verify_file(&path, None).unwrap()).kind,
        ProblemKind::MissingManifest
    );
}

#[test]
fn an_edited_manifest_disagrees() {
    let (_fx, path, mut lines) = acme_jsonl();
    let last = lines.len() - 1;
    let mut m: Manifest = serde_json::from_str(&lines[last]).unwrap();
    m.count += 1;
    lines[last] = serde_json::to_string(&m).unwrap();
    broken_at(&path, &lines, ProblemKind::Deleted, last as u64 + 1);
}

#[test]
fn a_jsonl_sidecar_must_match_its_trailer() {
    let fx = fixture::build();
    let path = export_file(
        &fx,
        &ExportOptions::new(id("acme"), ExportFormat::Jsonl),
        "a.jsonl",
    );
    assert!(verify_file(&path, None).unwrap().is_intact());
    let sidecar = sidecar_path(&path);
    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(&sidecar, text.replace("\"count\":", "\"count\":1")).unwrap();
    let p = broken(verify_file(&path, None).unwrap());
    assert_eq!(p.kind, ProblemKind::ManifestMismatch, "{p}");
}

#[test]
fn a_csv_without_its_manifest_is_incomplete_and_tampering_is_located() {
    let fx = fixture::build();
    let path = export_file(
        &fx,
        &ExportOptions::new(id("acme"), ExportFormat::Csv),
        "a.csv",
    );
    let sidecar = sidecar_path(&path);
    let moved = fx.dir.path().join("elsewhere.json");
    std::fs::rename(&sidecar, &moved).unwrap();
    assert_eq!(
        broken(verify_file(&path, None).unwrap()).kind,
        ProblemKind::MissingManifest
    );
    assert!(verify_file(&path, Some(&moved)).unwrap().is_intact());

    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows: Vec<&str> = text.split("\r\n").collect();
    rows.swap(2, 3);
    std::fs::write(&path, rows.join("\r\n")).unwrap();
    let p = broken(verify_file(&path, Some(&moved)).unwrap());
    assert_eq!((p.kind, p.line), (ProblemKind::Reordered, Some(3)), "{p}");
}

#[test]
fn unreadable_files_are_errors_not_verdicts() {
    let err = verify_file(Path::new("/nonexistent/a.jsonl"), None).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/a.jsonl"), "{err}");
}

#[test]
fn the_log_verifies_from_genesis() {
    let fx = fixture::build();
    for tenant in ["acme", "acmex", "nobody"] {
        let verdict = verify_log(&fx.log, &id(tenant)).unwrap();
        assert!(verdict.is_intact(), "{tenant}: {verdict}");
    }
    let Verdict::Intact(summary) = verify_log(&fx.log, &id("acme")).unwrap() else {
        unreachable!()
    };
    assert_eq!(summary.sessions, Some(3));
    assert_eq!(
        summary.head_hash,
        Some(hash_hex(
            &fx.log.tenant(&id("acme")).head().unwrap().unwrap().hash
        ))
    );
}

#[test]
fn log_verification_reports_progress_per_event_and_stops_when_asked() {
    let fx = fixture::build();
    let mut seen = Vec::new();
    let verdict = verify_log_with_progress(&fx.log, &id("acme"), &mut |p| {
        seen.push(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    let Verdict::Intact(summary) = verdict else {
        panic!("{verdict}")
    };
    assert_eq!(seen.len() as u64, summary.count);
    for (i, p) in seen.iter().enumerate() {
        assert_eq!((p.events, p.tenant_seq), (i as u64 + 1, i as u64 + 1));
    }
    // Asked to stop after the second event: no verdict.
    let mut calls = 0;
    let stopped = verify_log_with_progress(&fx.log, &id("acme"), &mut |_| {
        calls += 1;
        if calls == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(matches!(stopped, Err(AuditError::Usage(_))), "{stopped:?}");
    assert_eq!(calls, 2);
}
