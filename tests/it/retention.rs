//! Retention (`[tenants.X] retention`): a data dir written with the library with old and new
//! event times, trimmed by `tenantry trim --as-of` and by `serve` at its start, then checked
//! with the real binary: `verify --tenant` passes and names where the log starts, the export
//! verifies and carries the anchor, a kept session replays (saying what was trimmed), a wholly
//! trimmed session is reported as trimmed, another tenant is untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tenantry::events::log::{AppendGroup, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::TenantCtx;

use crate::support::{dir_with_flows, Serve};

/// 2026-11-23T10:00:00Z.
const T0: u64 = 1_795_428_000_000;
const DAY: u64 = 86_400_000;

fn config(retention: &str) -> String {
    format!(
        "[server]\ndata_dir = \"data\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nenvironments = [\"prod\"]\n{retention}\n\
         [tenants.acme.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
         [tenants.acme.teams.support.channels.slack]\nprovider = \"messaging-slack\"\n\
         [tenants.acmex]\nenvironments = [\"prod\"]\n\
         [tenants.acmex.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
         [tenants.acmex.teams.support.channels.slack]\nprovider = \"messaging-slack\"\n"
    )
}

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(
        tenant.parse().unwrap(),
        "prod".parse().unwrap(),
        Some("support".parse().unwrap()),
    )
}

/// Appends one group to `session` of `tenant` after its seq `after`.
fn group(
    log: &EventLog,
    tenant: &str,
    session: &str,
    after: u64,
    at_ms: u64,
    kinds: Vec<EventKind>,
) {
    log.append_blocking(AppendGroup {
        ctx: ctx(tenant),
        channel: "slack".parse().unwrap(),
        session: session.parse().unwrap(),
        expected_seq: after,
        at_ms,
        kinds,
        idempotency: None,
    })
    .unwrap();
}

fn start(user: &str, text: &str) -> Vec<EventKind> {
    vec![
        EventKind::SessionStarted {
            user: user.into(),
            flow: "acme_support_flow".into(),
            flow_version: "1.0".into(),
        },
        said(user, text)[0].clone(),
    ]
}

fn said(user: &str, text: &str) -> Vec<EventKind> {
    vec![EventKind::MessageReceived {
        message_id: format!("{user}-{text}"),
        user: user.into(),
        text: text.into(),
    }]
}

/// acme: `old` (ada, tenant_seqs 1..=4, ended) and the start of `mid` (bob, 5..=6) at `old_ms`;
/// `mid`'s next messages (7, 8) and `new` (cy, 9..=10) at `new_ms`. acmex: one session at each.
fn seed(data: &Path, old_ms: u64, new_ms: u64) {
    let log = EventLog::open(&data.join("log"), &LogOptions::default()).unwrap();
    group(&log, "acme", "old", 0, old_ms, start("ada", "hi"));
    group(&log, "acme", "old", 2, old_ms + 1_000, said("ada", "more"));
    let end = vec![EventKind::SessionEnded {
        reason: "bye".into(),
    }];
    group(&log, "acme", "old", 3, old_ms + 2_000, end);
    group(
        &log,
        "acme",
        "mid",
        0,
        old_ms + 3_000,
        start("bob", "hello"),
    );
    group(&log, "acmex", "x1", 0, old_ms, start("ada", "x"));
    group(&log, "acme", "mid", 2, new_ms, said("bob", "again"));
    group(
        &log,
        "acme",
        "mid",
        3,
        new_ms + 1_000,
        said("bob", "still here"),
    );
    group(&log, "acme", "new", 0, new_ms + 2_000, start("cy", "yo"));
    group(&log, "acmex", "x1", 2, new_ms, said("ada", "y"));
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(retention: &str, old_ms: u64, new_ms: u64) -> Setup {
        let dir = dir_with_flows();
        std::fs::write(dir.path().join("config.toml"), config(retention)).unwrap();
        seed(&dir.path().join("data"), old_ms, new_ms);
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(args)
            .arg("--config")
            .arg(self.path("config.toml"))
            .env_remove("TENANTRY_TENANT_ID")
            .env_remove("TENANTRY_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Exports `tenant` to `name`; the file's bytes.
    fn export(&self, tenant: &str, name: &str) -> Vec<u8> {
        let path = self.path(name);
        let out = self.run(&[
            "export",
            "--tenant",
            tenant,
            "--out",
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::fs::read(path).unwrap()
    }

    fn replay(&self, session: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "replay",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--team",
            "support",
            "--session",
            session,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_trimmed_log_verifies_from_its_anchor_and_its_kept_sessions_replay() {
    // Old events on T0, new ones 10 days later; keep 30 days as of T0 + 35 days: the cutoff is
    // T0 + 5 days, between the two.
    let setup = Setup::new("retention = \"30d\"", T0, T0 + 10 * DAY);
    let acmex_before = setup.export("acmex", "acmex-before.jsonl");
    let as_of = (T0 + 35 * DAY).to_string();

    let out = setup.run(&["trim", "--tenant", "acme", "--as-of", &as_of]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("trim acme: 6 events trimmed")
            && stdout(&out).contains("the log starts at tenant_seq 7"),
        "{}",
        text(&out)
    );
    // Trimming again finds nothing more, and changes nothing.
    let again = setup.run(&["trim", "--tenant", "acme", "--as-of", &as_of]);
    assert!(
        stdout(&again).contains("trim acme: 0 events trimmed"),
        "{}",
        text(&again)
    );

    // verify --tenant: passes, and says where the log starts.
    let out = setup.run(&["verify", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("4 events, tenant_seq 7..=10")
            && said.contains("anchored: 6 trimmed up to 2026-11-23T10:00:03.000Z, prev hash "),
        "{}",
        text(&out)
    );

    // The export starts at the anchor, carries it, and verifies.
    let exported = setup.export("acme", "acme.jsonl");
    let manifest: Value =
        serde_json::from_str(String::from_utf8_lossy(&exported).lines().last().unwrap()).unwrap();
    assert_eq!(manifest["first_tenant_seq"], json!(7));
    assert_eq!(manifest["retention"]["first_tenant_seq"], json!(7));
    assert_eq!(manifest["retention"]["trimmed"], json!(6));
    assert_eq!(
        manifest["retention"]["prev_hash"],
        manifest["first_prev_hash"]
    );
    let out = setup.run(&["verify", setup.path("acme.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("anchored: 6 trimmed"),
        "{}",
        text(&out)
    );

    // A session whose start was trimmed replays what remains, saying what is gone.
    let out = setup.replay("mid", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("starts at seq 3: seqs 1..=2 were trimmed by the tenant's retention"),
        "{}",
        text(&out)
    );
    let out = setup.replay("mid", &["--at", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            state["trimmed_before_seq"].clone(),
            state["messages_in"].clone()
        ),
        (json!(3), json!(2))
    );
    let out = setup.replay("mid", &["--at", "1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("seqs 1..=2 were trimmed"),
        "{}",
        text(&out)
    );
    // A session whose every event was trimmed is gone, and the error says it may be trimmed.
    let out = setup.replay("old", &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("trimmed by the tenant's retention (tenant_seq 1..=6"),
        "{}",
        text(&out)
    );
    // A session untouched by the trim replays from seq 1.
    let out = setup.replay("new", &[]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", text(&out));

    // Rebuilding the read models folds what remains.
    let out = setup.run(&["rebuild", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The other tenant is untouched: same export bytes, full chain.
    assert_eq!(setup.export("acmex", "acmex-after.jsonl"), acmex_before);
    let out = setup.run(&["verify", "--tenant", "acmex"]);
    assert!(
        stdout(&out).contains("tenant_seq 1..=3") && !stdout(&out).contains("anchored"),
        "{}",
        text(&out)
    );
}

/// With JetStream the server trims (on the tenant's owner); the offline command, whose cache
/// would write to the stream beside it, refuses and says so, touching nothing.
#[test]
fn offline_trim_with_the_jetstream_backend_is_refused_and_names_the_server() {
    let setup = Setup::new("retention = \"1d\"", T0, T0 + DAY);
    let jetstream = format!(
        "[nats]\nurl = \"nats://127.0.0.1:9\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n{}",
        config("retention = \"1d\"")
    );
    std::fs::write(setup.path("config.toml"), jetstream).unwrap();
    let out = setup.run(&["trim", "--as-of", "2026-11-30T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the running server trims each tenant's retention"),
        "{}",
        text(&out)
    );
    assert!(!setup.path("data/log-offline").exists());
}

#[test]
fn trim_refuses_a_tenant_without_retention() {
    let setup = Setup::new("", T0, T0 + DAY);
    let out = setup.run(&["trim", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("tenant acme has no retention: set [tenants.acme] retention"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_trims_at_start_and_a_trimmed_session_takes_new_messages() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let dir = dir_with_flows();
    let mut serve = Serve::config(&config("retention = \"1h\""))
        .section(
            "audit",
            "head_sign_every_events = 3\nhead_sign_interval = \"1s\"",
        )
        .in_dir(dir.path())
        .seed(move |data| seed(data, now - 3 * 3_600_000, now))
        .start();
    // The trim at start may log before or after the server's listening line.
    if !serve
        .started
        .iter()
        .any(|l| l.contains("retention: trim done"))
    {
        serve.wait_for_line("retention: trim done");
    }
    // bob's session lost its start; his next message continues it.
    let message = json!({"team": "support", "channel": "slack", "user": "bob", "text": "back"});
    let reply = serve.post_as("acme", &message).ok();
    assert_eq!(reply["session"], json!("mid"), "{reply}");
    // ada's session was wholly trimmed: her next message starts a new one.
    let message = json!({"team": "support", "channel": "slack", "user": "ada", "text": "hi"});
    let reply = serve.post_as("acme", &message).ok();
    assert_ne!(reply["session"], json!("old"), "{reply}");
    // Let the signer sign the head past the last message.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert!(serve.stop().success());

    let setup = Setup { dir };
    let out = setup.run(&["verify", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("anchored: 6 trimmed up to "),
        "{}",
        text(&out)
    );
    let out = setup.replay("mid", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("\"back\""), "{}", text(&out));

    // The export of what remains verifies with the signed heads.
    setup.export("acme", "acme.jsonl");
    let key = setup.path("key.pub");
    let out = setup.run(&["keys", "export-pubkey", "--out", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = setup.path("acme.jsonl");
    let out = setup.run(&[
        "verify",
        file.to_str().unwrap(),
        "--pubkey",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("signed heads verified with the public key")
            && stdout(&out).contains("anchored: 6 trimmed"),
        "{}",
        text(&out)
    );
}

/// `kill -9` of `tenantry trim` at a random moment: the log afterwards is the old one or a
/// trimmed one with its anchor, never frames gone without it (one sled batch per step): it
/// opens, verifies, every session's index entries point at frames, and a trim run to its end
/// gives the anchor an uninterrupted trim gives. A failing trial keeps its data dir and names it.
///
/// Most of a 60 ms trim is sled's open, which writes a snapshot; a kill inside that write left
/// a partial `snap.*.generating` that failed every later open (about 1 kill in 300: see
/// `events::log::sled_files`). That window is too narrow to hit on purpose, so every fourth trial
/// also starts from what such a kill leaves (an empty `.generating` file): the trim's own open,
/// or the check's after an early kill, must cope with it.
#[test]
fn a_trim_killed_at_any_moment_leaves_a_log_that_verifies() {
    use crate::support::{copy_dir, crash_seed, crash_trials, XorShift};
    let seeded = crash_seeded();
    let as_of = (T0 + 35 * DAY).to_string();
    let trim = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["trim", "--tenant", "acme", "--as-of", &as_of, "--config"])
            .arg(dir.join("config.toml"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // The whole trim, uninterrupted: how long it takes and where it ends.
    let full = tempfile::tempdir().unwrap();
    copy_dir(seeded.path(), full.path());
    let started = std::time::Instant::now();
    assert!(trim(full.path()).wait().unwrap().success());
    let took = started.elapsed().as_millis() as u64 + 1;
    let end = EventLog::open(&full.path().join("data/log"), &LogOptions::default())
        .unwrap()
        .retention_anchor(&"acme".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((end.first_tenant_seq, end.trimmed), (1_801, 1_800));

    let seed = crash_seed();
    let mut rng = XorShift(seed);
    let (mut unfinished, trials) = (0, crash_trials());
    for trial in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(seeded.path(), dir.path());
        let log_dir = dir.path().join("data/log");
        let planted = trial % 4 == 3;
        if planted {
            std::fs::write(log_dir.join("snap.00000000FFFFFFFF.generating"), b"").unwrap();
        }
        let mut child = trim(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(rng.next() % took));
        let _ = child.kill();
        let _ = child.wait();
        unfinished += usize::from(!planted && unfinished_snapshot(&log_dir));
        let context = format!(
            "seed {seed} trial {trial}{}",
            if planted {
                " (unfinished snapshot planted)"
            } else {
                ""
            }
        );
        let checked = check_killed_trim(&log_dir, &end, &context).and_then(|()| {
            let resumed = trim(dir.path()).wait().map_err(|e| e.to_string())?;
            if !resumed.success() {
                return Err(format!("the resumed trim failed: {resumed}"));
            }
            let log =
                EventLog::open(&log_dir, &LogOptions::default()).map_err(|e| e.to_string())?;
            let done = log.retention_anchor(&"acme".parse().unwrap());
            match done.map_err(|e| e.to_string())? {
                Some(d)
                    if (d.first_tenant_seq, d.trimmed, d.prev_hash)
                        == (end.first_tenant_seq, end.trimmed, end.prev_hash) =>
                {
                    Ok(())
                }
                other => Err(format!("the resumed trim ended at {other:?}, not {end:?}")),
            }
        });
        if let Err(problem) = checked {
            let kept = dir.keep();
            panic!("{context}: {problem} (data dir kept at {})", kept.display());
        }
    }
    eprintln!("{trials} kills; {unfinished} left sled's snapshot unfinished (the open removed it)");
}

/// The crash test's data dir: 1,500 old frames (three batches, 1,800 events) of acme in 300
/// sessions, then two new ones.
fn crash_seeded() -> tempfile::TempDir {
    let seeded = tempfile::tempdir().unwrap();
    std::fs::write(
        seeded.path().join("config.toml"),
        config("retention = \"30d\""),
    )
    .unwrap();
    crate::support::copy_dir(
        &dir_with_flows().path().join("flows"),
        &seeded.path().join("flows"),
    );
    let log = EventLog::open(&seeded.path().join("data/log"), &LogOptions::default()).unwrap();
    for s in 0..300u64 {
        let (session, user) = (format!("s{s}"), format!("u{s}"));
        group(&log, "acme", &session, 0, T0 + s, start(&user, "hi"));
        for m in 0..4u64 {
            let text = format!("m{m}");
            group(&log, "acme", &session, 2 + m, T0 + s, said(&user, &text));
        }
    }
    group(&log, "acme", "s0", 6, T0 + 10 * DAY, said("u0", "late"));
    group(&log, "acme", "s1", 6, T0 + 10 * DAY, said("u1", "late"));
    seeded
}

/// Whether sled's snapshot write was cut short in `log_dir` (a `snap.*.generating` file).
fn unfinished_snapshot(log_dir: &Path) -> bool {
    std::fs::read_dir(log_dir).unwrap().any(|e| {
        let name = e.unwrap().file_name();
        let name = name.to_string_lossy();
        name.starts_with("snap.") && name.ends_with(".generating")
    })
}

/// The log a killed trim left: it opens, starts at its anchor (or at 1), verifies, and every
/// session's events read.
fn check_killed_trim(
    log_dir: &Path,
    end: &tenantry::events::log::RetentionAnchor,
    context: &str,
) -> Result<(), String> {
    use tenantry::audit::verify::{verify_log, Verdict};
    let tenant = "acme".parse().unwrap();
    let log = EventLog::open(log_dir, &LogOptions::default())
        .map_err(|e| format!("the log does not open: {e}"))?;
    let anchor = log.retention_anchor(&tenant).map_err(|e| e.to_string())?;
    eprintln!(
        "{context}: killed with {} of {} events trimmed",
        anchor.map_or(0, |a| a.trimmed),
        end.trimmed
    );
    let first = log.tenant(&tenant).events(1..=u64::MAX).next();
    let first = first.ok_or("no event left")?.map_err(|e| e.to_string())?;
    let starts = anchor.map_or(1, |a| a.first_tenant_seq);
    if first.event.tenant_seq != starts {
        return Err(format!(
            "the log starts at tenant_seq {}, its anchor at {starts}",
            first.event.tenant_seq
        ));
    }
    match verify_log(&log, &tenant).map_err(|e| e.to_string())? {
        Verdict::Intact(_) => {}
        broken => return Err(broken.to_string()),
    }
    let scope = log.scope(&ctx("acme"));
    for info in scope.sessions() {
        let info = info.map_err(|e| e.to_string())?;
        for e in scope.session_events(&info.session, 1..=u64::MAX) {
            e.map_err(|e| format!("session {}: {e}", info.session))?;
        }
    }
    Ok(())
}
