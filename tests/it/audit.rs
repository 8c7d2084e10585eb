//! `tenantry export`, `verify` and `replay` as an auditor runs them: on a data dir written with
//! the library the way the runtime writes it, with two tenants (`acme`, `acmex`) that share env,
//! team, channel and session ids, and hostile text in messages and replies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenantry::audit::record::{unneutralise, EventLine, CSV_COLUMNS};
use tenantry::config::flow::Flow;
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::{Event, EventKind};
use tenantry::flow::engine::{self, Input, TenantInfo};
use tenantry::projections::session::SessionState;
use tenantry::tenancy::TenantCtx;

const FLOW_YAML: &str = r#"name: audit_flow
version: "1"
nodes:
  - id: router
    type: route
    config:
      routes:
        - keyword: bye
          next: done
      default: greet
  - id: done
    type: end
    config:
      reason: "user said bye"
  - id: greet
    type: reply
    config:
      message: "Hello from {{ tenant.name }}! You said: {{ message.text }}"
  - id: ask_name
    type: ask
    config:
      message: "What's your name?"
      key: name
  - id: thanks
    type: reply
    config:
      message: "Thanks, {{ state.name }}"
"#;

const CONFIG: &str = r#"[server]
data_dir = "data"

[tenants.acme]
name = "ACME <Corp>"
environments = ["prod", "staging"]
[tenants.acme.teams.support]
flow = "flow.yaml"
[tenants.acme.teams.support.channels.slack]
provider = "messaging-slack"

[tenants.acmex]
name = "ACMEX <Corp>"
environments = ["prod"]
[tenants.acmex.teams.support]
flow = "flow.yaml"
[tenants.acmex.teams.support.channels.slack]
provider = "messaging-slack"
"#;

/// Spreadsheet formula injection.
const FORMULA: &str = "=cmd|' /C calc'!A0";
/// Quotes, commas, CR/LF, a tab and non-ASCII.
const HOSTILE: &str = "Ada \"the\", Countess\r\nof Lovelace,\t✓ 日本";
/// 2026-11-23T10:00:00Z.
const T0: u64 = 1_795_428_000_000;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn ctx(tenant: &str, env: &str) -> TenantCtx {
    TenantCtx::new(id(tenant), id(env), Some(id("support")))
}

/// A temp dir with `config.toml`, `flow.yaml` and a data dir written through the library.
struct Setup {
    dir: tempfile::TempDir,
    /// State of acme prod/support/s1 after each of its seqs (index 0 = seq 1).
    acme_s1_states: Vec<SessionState>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
        std::fs::write(dir.path().join("flow.yaml"), FLOW_YAML).unwrap();
        let log = EventLog::open(&dir.path().join("data/log"), &LogOptions::default()).unwrap();
        let acme_s1_states = converse(
            &log,
            &ctx("acme", "prod"),
            "s1",
            T0,
            &[FORMULA, HOSTILE, "bye"],
        );
        converse(
            &log,
            &ctx("acmex", "prod"),
            "s1",
            T0,
            &["acmex only", "Bob"],
        );
        converse(
            &log,
            &ctx("acme", "staging"),
            "s1",
            T0 + 3_600_000,
            &["+SUM(1,2)"],
        );
        converse(
            &log,
            &ctx("acme", "prod"),
            "s2",
            T0 + 7_200_000,
            &["-1 @home"],
        );
        Setup {
            dir,
            acme_s1_states,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("TENANTRY_TENANT_ID")
            .env_remove("TENANTRY_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Exports to a file and returns its path.
    fn export(&self, extra: &[&str], name: &str) -> PathBuf {
        let path = self.path(name);
        let mut args = vec![
            "export",
            "--tenant",
            "acme",
            "--out",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        path
    }

    /// `replay` of session prod/support/s1 of `tenant`, with `extra` arguments.
    fn replay_s1(&self, tenant: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "replay",
            "--tenant",
            tenant,
            "--env",
            "prod",
            "--team",
            "support",
            "--session",
            "s1",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn verify(&self, path: &Path) -> Output {
        self.run(&["verify", path.to_str().unwrap()])
    }
}

/// Writes one session's messages as the runtime would; the state after each event.
fn converse(
    log: &EventLog,
    ctx: &TenantCtx,
    session: &str,
    start_ms: u64,
    texts: &[&str],
) -> Vec<SessionState> {
    let flow = Flow::parse(Path::new("flow.yaml"), FLOW_YAML).unwrap();
    let settings = BTreeMap::new();
    let name = format!("{} <Corp>", ctx.tenant.as_str().to_uppercase());
    let info = TenantInfo {
        name: &name,
        settings: &settings,
    };
    let mut state = SessionState::new(
        ctx.tenant.clone(),
        ctx.env.clone(),
        ctx.team_or_default(),
        id(session),
    );
    let mut states = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let message_id = format!("{session}-{i}");
        let input = Input {
            message_id: &message_id,
            user: "ada",
            text,
        };
        let mut kinds = engine::run(&flow, &state, &info, &input);
        if state.last_seq == 0 {
            kinds.insert(
                0,
                EventKind::SessionStarted {
                    user: "ada".into(),
                    flow: flow.name().into(),
                    flow_version: flow.version().into(),
                },
            );
        }
        let at_ms = start_ms + 1000 * i as u64;
        let group = AppendGroup {
            ctx: ctx.clone(),
            channel: id("slack"),
            session: id(session),
            expected_seq: state.last_seq,
            at_ms,
            kinds: kinds.clone(),
            idempotency: None,
        };
        let Ok(AppendOutcome::Appended(appended)) = log.append_blocking(group) else {
            panic!("append failed");
        };
        for (j, kind) in kinds.into_iter().enumerate() {
            state.apply(&Event {
                id: uuid::Uuid::nil(),
                tenant: ctx.tenant.clone(),
                env: ctx.env.clone(),
                team: ctx.team_or_default(),
                channel: id("slack"),
                session: id(session),
                seq: appended.first_seq + j as u64,
                tenant_seq: appended.first_tenant_seq + j as u64,
                at_ms,
                kind,
            });
            states.push(state.clone());
        }
    }
    states
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` to a fresh file (no sidecar) and verifies it.
fn verify_lines(setup: &Setup, name: &str, lines: &[String]) -> Output {
    let path = setup.path(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    setup.verify(&path)
}

fn assert_fails(out: &Output, needles: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "no {needle:?} in\n{all}");
    }
}

/// Asserts exit 0 and `needle` in stdout.
#[track_caller]
fn assert_succeeds_saying(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(needle),
        "{}",
        text(out)
    );
}

#[test]
fn an_export_holds_its_tenant_only() {
    let setup = Setup::new();
    for format in ["jsonl", "csv"] {
        let out = setup.run(&["export", "--tenant", "acme", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            !stdout.contains("acmex"),
            "{format}: acmex leaked:\n{stdout}"
        );
        assert!(!stdout.contains("Bob"), "{format}: acmex text leaked");
        assert!(
            stdout.contains("Countess"),
            "{format}: acme's own text is missing"
        );
        if format == "jsonl" {
            for line in stdout.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["tenant"], "acme", "{line}");
            }
        } else {
            // To stdout, the CSV manifest goes to stderr as one JSON line.
            let stderr = String::from_utf8(out.stderr).unwrap();
            let manifest: serde_json::Value =
                serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
            assert_eq!(manifest["type"], "manifest");
            assert_eq!(manifest["tenant"], "acme");
        }
    }
}

#[test]
fn exports_verify_round_trip_in_both_formats() {
    let setup = Setup::new();
    for name in ["a.jsonl", "a.csv"] {
        let format = name.rsplit('.').next().unwrap();
        let path = setup.export(&["--format", format], name);
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.manifest.json", path.display())).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["format"], "tenantry-audit/1");
        assert_eq!(manifest["contiguous"], true);
        assert_eq!(manifest["complete"], true);
        let out = setup.verify(&path);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: "));
    }
    let out = setup.run(&["verify", "--tenant", "acme"]);
    assert_succeeds_saying(&out, "3 sessions");
}

#[test]
fn every_kind_of_tampering_is_found_and_located() {
    let setup = Setup::new();
    let path = setup.export(&[], "a.jsonl");
    let original = lines(&path);
    let reply = original
        .iter()
        .position(|l| l.contains("\"ReplySent\""))
        .unwrap();

    // A visible text edited; the body still says the truth.
    let mut edited = original.clone();
    let mut rec: EventLine = serde_json::from_str(&edited[reply]).unwrap();
    rec.data["text"] = "We refunded you in full".into();
    edited[reply] = serde_json::to_string(&rec).unwrap();
    let want = format!("line {} (tenant_seq {})", reply + 1, reply + 1);
    assert_fails(
        &verify_lines(&setup, "edit.jsonl", &edited),
        &[&want, "edited", "data"],
    );

    // The body itself edited.
    let mut body_edited = original.clone();
    let mut rec: EventLine = serde_json::from_str(&body_edited[reply]).unwrap();
    let body = rec.body.as_mut().unwrap();
    let at = body.len() / 2;
    let flipped = if &body[at..at + 1] == "A" { "B" } else { "A" };
    body.replace_range(at..at + 1, flipped);
    body_edited[reply] = serde_json::to_string(&rec).unwrap();
    assert_fails(
        &verify_lines(&setup, "body.jsonl", &body_edited),
        &[&want, "bad hash"],
    );

    // A line deleted.
    let mut deleted = original.clone();
    deleted.remove(4);
    assert_fails(
        &verify_lines(&setup, "deleted.jsonl", &deleted),
        &[
            "line 5 (tenant_seq 6)",
            "deleted",
            "tenant_seq 5 is missing",
        ],
    );

    // A copied line inserted.
    let mut inserted = original.clone();
    inserted.insert(6, original[1].clone());
    assert_fails(
        &verify_lines(&setup, "inserted.jsonl", &inserted),
        &["line 7 (tenant_seq 2)", "inserted"],
    );

    // Two lines swapped.
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    assert_fails(
        &verify_lines(&setup, "swapped.jsonl", &swapped),
        &["line 3 (tenant_seq 4)", "reordered"],
    );

    // The manifest truncated, or gone.
    let mut cut = original.clone();
    let last = cut.len() - 1;
    let half = cut[last].len() / 2;
    cut[last].truncate(half);
    assert_fails(
        &verify_lines(&setup, "cut.jsonl", &cut),
        &[&format!("line {}", last + 1), "manifest"],
    );
    let mut gone = original.clone();
    gone.pop();
    assert_fails(
        &verify_lines(&setup, "gone.jsonl", &gone),
        &["missing manifest", "incomplete"],
    );

    // The untouched file still verifies.
    assert_eq!(
        verify_lines(&setup, "same.jsonl", &original).status.code(),
        Some(0)
    );
}

#[test]
fn csv_cells_are_safe_for_spreadsheets_and_round_trip_hostile_text() {
    let setup = Setup::new();
    let path = setup.export(&["--format", "csv"], "a.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_COLUMNS
    );
    let mut texts = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell a spreadsheet would evaluate: {cell:?}"
            );
        }
        let data: serde_json::Value = serde_json::from_str(unneutralise(&row[12])).unwrap();
        for key in ["text", "value"] {
            if let Some(t) = data[key].as_str() {
                texts.push(t.to_owned());
            }
        }
    }
    for expected in [FORMULA, HOSTILE, "+SUM(1,2)", "-1 @home"] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected:?} not in {texts:#?}"
        );
    }
    assert!(texts
        .iter()
        .any(|t| t == &format!("Hello from ACME <Corp>! You said: {FORMULA}")));
}

#[test]
fn csv_has_plain_user_and_text_columns_a_reviewer_can_read() {
    let setup = Setup::new();
    let path = setup.export(&["--format", "csv"], "plain.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (kind, user, text) = (column("kind"), column("user"), column("text"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let said: Vec<(String, String)> = rows
        .iter()
        .filter(|r| &r[kind] == "MessageReceived")
        .map(|r| {
            (
                unneutralise(&r[user]).to_owned(),
                unneutralise(&r[text]).to_owned(),
            )
        })
        .collect();
    for expected in [FORMULA, HOSTILE, "+SUM(1,2)"] {
        assert!(
            said.contains(&("ada".to_owned(), expected.to_owned())),
            "{expected:?} not said by ada in {said:#?}"
        );
    }
    // The formula is plain text in its own cell, neutralised: one leading quote.
    assert!(rows.iter().any(|r| r[text] == format!("'{FORMULA}")));
    let replies = rows.iter().filter(|r| &r[kind] == "ReplySent");
    assert!(replies.into_iter().any(|r| r[text]
        == format!("Hello from ACME <Corp>! You said: {FORMULA}")
        && r[user].is_empty()));
    assert_eq!(setup.verify(&path).status.code(), Some(0));

    // A text cell edited to say something else than the hashed data is caught.
    let original = std::fs::read_to_string(&path).unwrap();
    // The last occurrence: a plain text cell (data comes before it on each row).
    let at = original.rfind("+SUM(1,2)").unwrap();
    let edited = format!("{}+SUM(9,9){}", &original[..at], &original[at + 9..]);
    assert_ne!(edited, original);
    let edited_path = path.with_file_name("edited.csv");
    std::fs::write(&edited_path, edited).unwrap();
    std::fs::copy(
        path.with_file_name("plain.csv.manifest.json"),
        path.with_file_name("edited.csv.manifest.json"),
    )
    .unwrap();
    let out = setup.verify(&edited_path);
    assert_fails(&out, &["edited", "text cell"]);
}

#[test]
fn a_filtered_export_verifies_as_non_contiguous() {
    let setup = Setup::new();
    let path = setup.export(&["--env", "staging"], "staging.jsonl");
    let all = lines(&path);
    assert!(all[..all.len() - 1]
        .iter()
        .all(|l| l.contains("\"env\":\"staging\"")));
    let manifest: serde_json::Value = serde_json::from_str(all.last().unwrap()).unwrap();
    assert_eq!(manifest["contiguous"], false);
    assert_eq!(manifest["env"], "staging");
    let out = setup.verify(&path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("filtered"));

    let path = setup.export(
        &[
            "--since",
            "2026-11-23T10:00:01Z",
            "--until",
            "1795428002000",
        ],
        "window.jsonl",
    );
    let all = lines(&path);
    assert!(
        all.len() > 1
            && all[..all.len() - 1]
                .iter()
                .all(|l| l.contains("\"at\":1795428001000"))
    );
    assert_eq!(setup.verify(&path).status.code(), Some(0));
}

#[test]
fn the_state_at_a_seq_is_the_fold_of_its_prefix() {
    let setup = Setup::new();
    for seq in [1, 5, setup.acme_s1_states.len()] {
        let out = setup.replay_s1("acme", &["--at", &seq.to_string()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let state: SessionState = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(state, setup.acme_s1_states[seq - 1], "at seq {seq}");
    }
}

#[test]
fn the_timeline_is_readable_and_escaped() {
    let setup = Setup::new();
    let out = setup.replay_s1("acme", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), setup.acme_s1_states.len());
    assert!(
        stdout.starts_with("2026-11-23T10:00:00.000Z  #1  prod/support/s1 seq 1  SessionStarted")
    );
    assert!(
        stdout.contains(&format!("StateSet  name = {HOSTILE:?}")),
        "{stdout}"
    );
    assert!(!stdout.contains('\r'));
}

#[test]
fn replay_without_env_finds_the_session_in_any_env_of_the_tenant() {
    let setup = Setup::new();
    // s2 lives only in acme's prod env: found without --env (or --team).
    let out = setup.run(&["replay", "--tenant", "acme", "--session", "s2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("prod/support/s2 seq 1  SessionStarted"),
        "{stdout}"
    );
    assert!(
        stdout.lines().all(|l| l.contains("prod/support/s2")),
        "{stdout}"
    );
    // So does --at.
    let out = setup.run(&["replay", "--tenant", "acme", "--session", "s2", "--at", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // s1 is in acme's prod and staging envs: both are listed, not acmex's s1.
    let out = setup.run(&["replay", "--tenant", "acme", "--session", "s1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("prod/support/s1, staging/support/s1") && said.contains("--env"),
        "{said}"
    );
    assert!(!said.contains("acmex"), "{said}");
    // In acmex, s1 is one session (its prod env).
    let out = setup.run(&["replay", "--tenant", "acmex", "--session", "s1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Another tenant's session is not found, nor an unknown one.
    for (tenant, session) in [("acmex", "s2"), ("acme", "nope")] {
        let out = setup.run(&["replay", "--tenant", tenant, "--session", session]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("not found"), "{}", text(&out));
    }
}

#[test]
fn what_if_with_the_recorded_flow_is_identical() {
    let setup = Setup::new();
    let out = setup.replay_s1(
        "acmex",
        &["--with-flow", setup.path("flow.yaml").to_str().unwrap()],
    );
    assert_succeeds_saying(&out, "identical");
}

#[test]
fn what_if_with_an_edited_reply_shows_the_divergence() {
    let setup = Setup::new();
    let edited = setup.path("edited.yaml");
    std::fs::write(&edited, FLOW_YAML.replace("Thanks, {{", "Cheers, {{")).unwrap();
    let out = setup.replay_s1("acmex", &["--with-flow", edited.to_str().unwrap()]);
    assert_fails(
        &out,
        &[
            "message 1 (seq 2): same",
            "message 2",
            "reply 1: recorded \"Thanks, Bob\" / what-if \"Cheers, Bob\"",
        ],
    );
}

#[test]
fn offline_commands_refuse_a_data_dir_in_use() {
    let setup = Setup::new();
    // Held the way a running server holds it.
    let _held = EventLog::open(&setup.dir.path().join("data/log"), &LogOptions::default()).unwrap();
    // Each child waits ~2 s for the lock before giving up; run them side by side.
    let outputs = std::thread::scope(|s| {
        let handles: Vec<_> = [
            &["export", "--tenant", "acme"][..],
            &["replay", "--tenant", "acme"][..],
            &["verify", "--tenant", "acme"][..],
        ]
        .into_iter()
        .map(|args| s.spawn(|| setup.run(args)))
        .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for out in outputs {
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains("in use by a running server"), "{all}");
        assert!(!all.contains("panicked"), "{all}");
    }
}

#[test]
fn verify_usage_errors_and_unreadable_files_exit_2() {
    let setup = Setup::new();
    assert_eq!(setup.run(&["verify"]).status.code(), Some(2));
    let out = setup.run(&["verify", "/nonexistent/export.jsonl"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/export.jsonl"));
}
