//! Runtime tests: real actors, a real log and real snapshot files in a temp dir; time from a
//! manual clock.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::clock::ManualClock;
use super::messages::{Ack, Inbound, RuntimeError};
use super::runtime::{Runtime, RuntimeOptions};
use super::session::PANIC_PROBE;
use crate::config::{Config, LoadOptions};
use crate::events::log::{EventLog, LogOptions};
use crate::events::schema::EventKind;
use crate::projections::session::{SessionState, SessionStatus};
use crate::projections::snapshot::{SnapshotKey, SnapshotStore};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

const FLOW: &str = r#"
name: test_flow
version: "3"
nodes:
  - id: start
    type: route
    config:
      routes:
        - keyword: bye
          next: goodbye
        - regex: "^name"
          next: ask_name
      default: echo
  - id: ask_name
    type: ask
    config:
      message: "What is your name?"
      key: name
  - id: greet
    type: reply
    config:
      message: "Nice to meet you, {{ state.name }}"
    next: last
  - id: echo
    type: reply
    config:
      message: "{{ tenant.name }} heard: {{ message.text }}"
    next: last
  - id: goodbye
    type: end
    config:
      reason: user said bye
  - id: last
    type: set
    config:
      key: seen
      value: "yes"
"#;

fn config_toml(data_dir: &Path) -> String {
    format!(
        r#"
[server]
data_dir = "{}"
[runtime]
session_idle_timeout = "10m"
snapshot_every = 5
[tenants.acme]
name = "ACME"
environments = ["prod", "staging"]
[tenants.acme.teams.support]
flow = "flow.yaml"
[tenants.acme.teams.support.channels.web]
provider = "messaging-webchat"
[tenants.acme.teams.support.channels.slack]
provider = "messaging-slack"
[tenants.bigcorp]
name = "BigCorp"
environments = ["prod"]
[tenants.bigcorp.teams.support]
flow = "flow.yaml"
[tenants.bigcorp.teams.support.channels.web]
provider = "messaging-webchat"
"#,
        data_dir.display()
    )
}

pub(super) struct Harness {
    pub(super) dir: tempfile::TempDir,
    pub(super) config: Config,
    pub(super) clock: ManualClock,
}

impl Harness {
    pub(super) fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flow.yaml"), FLOW).unwrap();
        let data = dir.path().join("data");
        std::fs::write(dir.path().join("config.toml"), config_toml(&data)).unwrap();
        let config =
            Config::load(&dir.path().join("config.toml"), &LoadOptions::default()).unwrap();
        Harness {
            dir,
            config,
            clock: ManualClock::new(1_700_000_000_000),
        }
    }

    pub(super) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A harness, its runtime started, and the context of tenant acme's env prod.
    pub(super) fn started() -> (Harness, Runtime, TenantCtx) {
        let h = Harness::new();
        let rt = h.start();
        (h, rt, ctx("acme", "prod"))
    }

    pub(super) fn start(&self) -> Runtime {
        self.start_with(|_| {})
    }

    pub(super) fn start_with(&self, tune: impl FnOnce(&mut RuntimeOptions)) -> Runtime {
        let log = EventLog::open(&self.data().join("log"), &LogOptions::default()).unwrap();
        let snapshots = SnapshotStore::new(self.data().join("sessions"));
        let mut opts = RuntimeOptions::from_config(&self.config);
        opts.clock = Arc::new(self.clock.clone());
        // The timer never fires during a test; tests sweep explicitly after moving the clock.
        opts.sweep_interval = Duration::from_secs(3600);
        tune(&mut opts);
        Runtime::start(&self.config, log, snapshots, opts)
    }
}

/// Submits `texts` from `user` to session `s1` on `web`, each admitted; the answers are not
/// awaited, so each message holds its in-flight place until its future is.
fn submit_all(
    rt: &Runtime,
    at: &TenantCtx,
    user: &str,
    texts: &[&str],
) -> Vec<impl std::future::Future<Output = Result<Ack, RuntimeError>>> {
    texts
        .iter()
        .map(|text| rt.submit(at, &web(), msg(Some("s1"), user, text)).unwrap())
        .collect()
}

/// Runs `f` with the harness's snapshot store and the key of `session` in team `support` of `at`.
pub(super) fn with_support_snapshot<R>(
    h: &Harness,
    at: &TenantCtx,
    session: &SessionId,
    f: impl FnOnce(&SnapshotStore, &SnapshotKey<'_>) -> R,
) -> R {
    let store = SnapshotStore::new(h.data().join("sessions"));
    let team = TeamId::parse("support").unwrap();
    let key = SnapshotKey {
        tenant: &at.tenant,
        env: &at.env,
        team: &team,
        session,
    };
    f(&store, &key)
}

pub(super) fn ctx(tenant: &str, env: &str) -> TenantCtx {
    TenantCtx::new(
        TenantId::parse(tenant).unwrap(),
        EnvId::parse(env).unwrap(),
        Some(TeamId::parse("support").unwrap()),
    )
}

pub(super) fn web() -> ChannelId {
    ChannelId::parse("web").unwrap()
}

pub(super) fn msg(session: Option<&str>, user: &str, text: &str) -> Inbound {
    Inbound {
        session: session.map(|s| SessionId::parse(s).unwrap()),
        user: user.into(),
        text: text.into(),
        message_id: None,
    }
}

pub(super) async fn say(rt: &Runtime, ctx: &TenantCtx, m: Inbound) -> Ack {
    rt.send(ctx, &web(), m).await.unwrap()
}

/// Folds every event of the session from the log: the reference the runtime must match.
fn full_replay(rt: &Runtime, ctx: &TenantCtx, session: &SessionId) -> SessionState {
    let log = rt.log();
    let mut state = SessionState::new(
        ctx.tenant.clone(),
        ctx.env.clone(),
        ctx.team_or_default(),
        session.clone(),
    );
    for e in log.scope(ctx).session_events(session, 1..=u64::MAX) {
        state.apply(&e.unwrap().event);
    }
    state
}

#[actix_rt::test]
async fn a_conversation_runs_the_flow_and_acks_after_the_append() {
    let (_h, rt, acme) = Harness::started();
    let first = say(&rt, &acme, msg(None, "ada", "hello")).await;
    assert_eq!(first.replies, vec!["ACME heard: hello"]);
    // SessionStarted is seq 1, so the message is seq 2.
    assert_eq!(first.seq, 2);
    let s = Some(first.session.as_str());
    let ask = say(&rt, &acme, msg(s, "ada", "name please")).await;
    assert_eq!(ask.replies, vec!["What is your name?"]);
    let greet = say(&rt, &acme, msg(s, "ada", "Ada")).await;
    assert_eq!(greet.replies, vec!["Nice to meet you, Ada"]);
    let state = rt.session_state(&acme, &first.session).unwrap().unwrap();
    assert_eq!(state.vars.get("name").map(String::as_str), Some("Ada"));
    assert_eq!(state.vars.get("seen").map(String::as_str), Some("yes"));
    assert_eq!(state.messages_in, 3);
    // Everything acked is in the log, and the log's fold is the runtime's state.
    assert_eq!(full_replay(&rt, &acme, &first.session), state);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn messages_without_a_session_go_to_the_users_open_session() {
    let (_h, rt, acme) = Harness::started();
    let a1 = say(&rt, &acme, msg(None, "ada", "one")).await;
    let a2 = say(&rt, &acme, msg(None, "ada", "two")).await;
    let b1 = say(&rt, &acme, msg(None, "bob", "one")).await;
    assert_eq!(a1.session, a2.session);
    assert_ne!(a1.session, b1.session);
    // Another channel of the same user is another conversation.
    let slack = rt
        .send(
            &acme,
            &ChannelId::parse("slack").unwrap(),
            msg(None, "ada", "hi"),
        )
        .await
        .unwrap();
    assert_ne!(slack.session, a1.session);
    // After the session ends, the next message opens a new one; naming the ended one is refused.
    let bye = say(&rt, &acme, msg(None, "ada", "bye")).await;
    assert_eq!(bye.session, a1.session);
    let state = rt.session_state(&acme, &a1.session).unwrap().unwrap();
    assert!(matches!(state.status, SessionStatus::Ended { .. }));
    let next = say(&rt, &acme, msg(None, "ada", "back again")).await;
    assert_ne!(next.session, a1.session);
    let named = rt
        .send(
            &acme,
            &web(),
            msg(Some(a1.session.as_str()), "ada", "hello?"),
        )
        .await;
    assert!(
        matches!(named, Err(RuntimeError::SessionEnded(_))),
        "{named:?}"
    );
    rt.shutdown().await;
}

#[actix_rt::test]
async fn the_same_session_id_in_two_tenants_and_two_envs_are_different_sessions() {
    let h = Harness::new();
    let rt = h.start();
    let places = [
        ctx("acme", "prod"),
        ctx("acme", "staging"),
        ctx("bigcorp", "prod"),
    ];
    for (i, place) in places.iter().enumerate() {
        // A different number of messages in each place, so their states must differ.
        for n in 0..=i {
            say(
                &rt,
                place,
                msg(Some("shared-id"), &format!("user{i}"), &format!("m{n}")),
            )
            .await;
        }
    }
    let sid = SessionId::parse("shared-id").unwrap();
    let states: Vec<SessionState> = places
        .iter()
        .map(|p| rt.session_state(p, &sid).unwrap().unwrap())
        .collect();
    for (i, state) in states.iter().enumerate() {
        assert_eq!(state.messages_in, i as u64 + 1);
        assert_eq!(state.user, format!("user{i}"));
        assert_eq!(&state.tenant, &places[i].tenant);
        assert_eq!(&state.env, &places[i].env);
    }
    rt.shutdown().await; // snapshots every session
    let store = SnapshotStore::new(h.data().join("sessions"));
    let team = TeamId::parse("support").unwrap();
    let mut paths = Vec::new();
    for (i, place) in places.iter().enumerate() {
        let key = SnapshotKey {
            tenant: &place.tenant,
            env: &place.env,
            team: &team,
            session: &sid,
        };
        let snap = store
            .read::<SessionState>(&key)
            .unwrap()
            .expect("snapshot written at shutdown");
        assert_eq!(snap.state, states[i]);
        paths.push(store.path(&key));
    }
    assert!(
        paths[0].ends_with("acme/prod/support/shared-id.cbor"),
        "{:?}",
        paths[0]
    );
    paths.dedup();
    assert_eq!(paths.len(), 3);
}

#[actix_rt::test]
async fn passivation_then_rehydration_gives_identical_state() {
    let (h, rt, acme) = Harness::started();
    let first = say(&rt, &acme, msg(None, "ada", "name")).await;
    let s = Some(first.session.as_str());
    say(&rt, &acme, msg(s, "ada", "Ada")).await;
    let before = rt.session_state(&acme, &first.session).unwrap().unwrap();
    let active = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    // Not idle yet: a sweep leaves the session running.
    rt.sweep().await;
    assert_eq!(active(), 1);
    h.clock.advance_ms(11 * 60 * 1000);
    rt.sweep().await;
    assert_eq!(active(), 0);
    let snap = with_support_snapshot(&h, &acme, &first.session, |store, key| {
        store.read::<SessionState>(key).unwrap()
    })
    .expect("passivation wrote a snapshot");
    assert_eq!(snap.state, before);
    // The next message rehydrates and continues where the session was.
    let after = say(&rt, &acme, msg(s, "ada", "hello")).await;
    assert_eq!(after.seq, before.last_seq + 1);
    let state = rt.session_state(&acme, &first.session).unwrap().unwrap();
    assert_eq!(state.vars.get("name").map(String::as_str), Some("Ada"));
    assert_eq!(state, full_replay(&rt, &acme, &first.session));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_corrupt_snapshot_is_rebuilt_from_the_log() {
    let h = Harness::new();
    let acme = ctx("acme", "prod");
    let session;
    {
        let rt = h.start();
        let a = say(&rt, &acme, msg(None, "ada", "name")).await;
        say(&rt, &acme, msg(Some(a.session.as_str()), "ada", "Ada")).await;
        session = a.session;
        rt.shutdown().await;
    }
    let path = with_support_snapshot(&h, &acme, &session, |store, key| store.path(key));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let rt = h.start();
    let next = say(&rt, &acme, msg(Some(session.as_str()), "ada", "still me?")).await;
    assert_eq!(next.replies, vec!["ACME heard: still me?"]);
    let state = rt.session_state(&acme, &session).unwrap().unwrap();
    assert_eq!(state.vars.get("name").map(String::as_str), Some("Ada"));
    assert_eq!(state, full_replay(&rt, &acme, &session));
    assert!(rt.metrics().snapshot_fallbacks.load(Ordering::Relaxed) >= 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_retried_message_id_is_appended_once_and_gets_the_first_ack() {
    let (_h, rt, acme) = Harness::started();
    let mut m = msg(None, "ada", "hello");
    m.message_id = Some("client-42".into());
    let first = say(&rt, &acme, m.clone()).await;
    let retry = say(&rt, &acme, m.clone()).await;
    assert_eq!(
        (retry.session.clone(), retry.seq, retry.replies.clone()),
        (first.session.clone(), first.seq, first.replies)
    );
    assert!(retry.duplicate);
    let state = rt.session_state(&acme, &first.session).unwrap().unwrap();
    assert_eq!(state.messages_in, 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_flow_panic_is_isolated_recorded_and_quarantines_after_repeats() {
    let (_h, rt, acme) = Harness::started();
    let big = ctx("bigcorp", "prod");
    let victim = say(&rt, &acme, msg(None, "ada", "hello")).await.session;
    let v = Some(victim.as_str());
    // A concurrent conversation of another tenant keeps working while acme's session panics.
    let bystander = {
        let rt = rt.clone();
        let big = big.clone();
        actix_rt::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..20 {
                acks.push(
                    rt.send(&big, &web(), msg(Some("calm"), "bob", &format!("m{i}")))
                        .await,
                );
            }
            acks
        })
    };
    let crashed = rt.send(&acme, &web(), msg(v, "ada", PANIC_PROBE)).await;
    assert!(
        matches!(crashed, Err(RuntimeError::FlowCrashed(_))),
        "{crashed:?}"
    );
    // The session still works after the restart, and the failure is in the log.
    let ok = say(&rt, &acme, msg(v, "ada", "after")).await;
    assert_eq!(ok.replies, vec!["ACME heard: after"]);
    let state = rt.session_state(&acme, &victim).unwrap().unwrap();
    assert_eq!(state.flow_errors, 1);
    let failed = rt
        .log()
        .scope(&acme)
        .session_events(&victim, 1..=u64::MAX)
        .filter(|e| matches!(e.as_ref().unwrap().event.kind, EventKind::FlowFailed { .. }))
        .count();
    assert_eq!(failed, 1);
    for ack in bystander.await.unwrap() {
        assert_eq!(ack.unwrap().replies.len(), 1);
    }
    // Three more panics within 5 s (four in all) quarantine the session.
    for _ in 0..3 {
        let r = rt.send(&acme, &web(), msg(v, "ada", PANIC_PROBE)).await;
        assert!(matches!(r, Err(RuntimeError::FlowCrashed(_))), "{r:?}");
    }
    let parked = rt.send(&acme, &web(), msg(v, "ada", "hello?")).await;
    assert!(
        matches!(parked, Err(RuntimeError::Quarantined(_))),
        "{parked:?}"
    );
    // Other sessions of the same tenant are not affected.
    say(&rt, &acme, msg(None, "eve", "hi")).await;
    // The runtime lists the quarantined session in its tenant, env and team only.
    let team_ctx = |team: &str| {
        let team = TeamId::parse(team).unwrap();
        TenantCtx::new(acme.tenant.clone(), acme.env.clone(), Some(team))
    };
    let support = team_ctx("support");
    let listed = vec![(TeamId::parse("support").unwrap(), victim.clone())];
    let all_teams = TenantCtx::new(acme.tenant.clone(), acme.env.clone(), None);
    assert_eq!(rt.quarantined_sessions(&all_teams), listed);
    assert_eq!(rt.quarantined_sessions(&support), listed);
    assert!(rt.quarantined_sessions(&team_ctx("sales")).is_empty());
    assert!(rt.quarantined_sessions(&ctx("acme", "staging")).is_empty());
    assert!(rt.quarantined_sessions(&big).is_empty());
    // A reset resolves once lifted: the list is empty at once.
    rt.reset_session(&acme, &victim).await.unwrap();
    assert!(rt.quarantined_sessions(&acme).is_empty());
    let back = say(&rt, &acme, msg(v, "ada", "back")).await;
    assert_eq!(back.replies, vec!["ACME heard: back"]);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_full_mailbox_yields_overloaded_and_loses_nothing_acked() {
    let (_h, rt, acme) = Harness::started();
    let flood: Vec<_> = (0..600)
        .map(|i| {
            let rt = rt.clone();
            let acme = acme.clone();
            actix_rt::spawn(async move {
                rt.send(&acme, &web(), msg(Some("hot"), "ada", &format!("m{i}")))
                    .await
            })
        })
        .collect();
    let mut acked = 0u64;
    let mut overloaded = 0;
    for task in flood {
        match task.await.unwrap() {
            Ok(_) => acked += 1,
            Err(RuntimeError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        overloaded > 0,
        "600 concurrent messages to one session never filled its mailbox"
    );
    let state = rt
        .session_state(&acme, &SessionId::parse("hot").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(state.messages_in, acked);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn past_inflight_max_new_messages_are_refused_at_once_and_nothing_is_half_done() {
    let h = Harness::new();
    let rt = h.start_with(|opts| opts.inflight_max = 2);
    let (acme, big) = (ctx("acme", "prod"), ctx("bigcorp", "prod"));
    // Submitted, not yet awaited: both hold their place.
    let first = rt
        .submit(&acme, &web(), msg(Some("s1"), "ada", "a1"))
        .unwrap();
    let second = rt
        .submit(&big, &web(), msg(Some("s1"), "bob", "b1"))
        .unwrap();
    // The limit is over all tenants: a third message, of either tenant, is refused.
    for (c, id) in [(&acme, "a2"), (&big, "b2")] {
        match rt.submit(c, &web(), msg(Some("s2"), "eve", id)) {
            Err(RuntimeError::Overloaded) => {}
            Err(e) => panic!("expected Overloaded, got {e}"),
            Ok(_) => panic!("a message past inflight_max was accepted"),
        }
    }
    assert_eq!(rt.metrics().inflight_refused.load(Ordering::Relaxed), 2);
    let first = first.await.unwrap();
    second.await.unwrap();
    assert_eq!(rt.metrics().inflight.load(Ordering::Relaxed), 0);
    // The refused messages left nothing behind, and there is room again.
    assert_eq!(
        rt.session_state(&acme, &SessionId::parse("s2").unwrap())
            .unwrap(),
        None
    );
    let again = rt
        .send(&acme, &web(), msg(Some("s2"), "eve", "a2"))
        .await
        .unwrap();
    // A new session like the first one: nothing of the refused attempt is in it.
    assert_eq!(again.seq, first.seq);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_tenant_at_its_inflight_share_is_refused_while_another_is_admitted() {
    let h = Harness::new();
    // Two tenants: by default each may hold half of inflight_max.
    assert_eq!(h.config.inflight_per_tenant_max(), 512);
    let rt = h.start_with(|opts| {
        opts.inflight_max = 4;
        opts.inflight_per_tenant_max = 2;
    });
    let (acme, big) = (ctx("acme", "prod"), ctx("bigcorp", "prod"));
    let held = submit_all(&rt, &acme, "ada", &["a1", "a2"]);
    // acme holds its share: its next message is refused though the runtime has room ...
    assert!(rt.saturated(&acme.tenant));
    assert!(!rt.saturated(&big.tenant));
    match rt.submit(&acme, &web(), msg(Some("s1"), "ada", "a3")) {
        Err(RuntimeError::Overloaded) => {}
        Err(e) => panic!("expected Overloaded, got {e}"),
        Ok(_) => panic!("acme got past its share of the in-flight budget"),
    }
    // ... which is bigcorp's: both of its messages are admitted.
    let theirs = submit_all(&rt, &big, "bob", &["b1", "b2"]);
    assert_eq!(rt.metrics().inflight.load(Ordering::Relaxed), 4);
    assert_eq!(rt.metrics().inflight_refused.load(Ordering::Relaxed), 1);
    for pending in held.into_iter().chain(theirs) {
        pending.await.unwrap();
    }
    // Answered: both shares are given back.
    assert_eq!(rt.metrics().inflight.load(Ordering::Relaxed), 0);
    assert!(!rt.saturated(&acme.tenant));
    rt.send(&acme, &web(), msg(Some("s1"), "ada", "a3"))
        .await
        .unwrap();
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_restarted_runtime_resumes_every_session_where_it_was() {
    let h = Harness::new();
    let acme = ctx("acme", "prod");
    let big = ctx("bigcorp", "prod");
    let (waiting, plain, before_a, before_b);
    {
        let rt = h.start();
        // One session is mid-ask (waiting for a name), one is a plain conversation.
        waiting = say(&rt, &acme, msg(None, "ada", "name")).await.session;
        plain = say(&rt, &big, msg(None, "bob", "hello")).await.session;
        before_a = rt.session_state(&acme, &waiting).unwrap().unwrap();
        before_b = rt.session_state(&big, &plain).unwrap().unwrap();
        rt.shutdown().await;
    }
    let rt = h.start();
    assert_eq!(
        rt.session_state(&acme, &waiting).unwrap().unwrap(),
        before_a
    );
    assert_eq!(rt.session_state(&big, &plain).unwrap().unwrap(), before_b);
    // The user's next message without a session id reaches the same, still-waiting session.
    let named = say(&rt, &acme, msg(None, "ada", "Ada")).await;
    assert_eq!(named.session, waiting);
    assert_eq!(named.replies, vec!["Nice to meet you, Ada"]);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let (_h, rt, acme) = Harness::started();
    let cases = [
        (ctx("acme", "dev"), web(), msg(None, "ada", "x")),
        (
            acme.clone(),
            ChannelId::parse("telegram").unwrap(),
            msg(None, "ada", "x"),
        ),
        (acme.clone(), web(), msg(None, "", "x")),
        (
            acme.clone(),
            web(),
            msg(
                None,
                "ada",
                &"x".repeat(crate::events::codec::TEXT_BYTES_MAX + 1),
            ),
        ),
        (ctx("nobody", "prod"), web(), msg(None, "ada", "x")),
    ];
    for (c, channel, m) in cases {
        let r = rt.send(&c, &channel, m).await;
        assert!(
            matches!(
                r,
                Err(RuntimeError::UnknownEnv { .. }
                    | RuntimeError::UnknownChannel { .. }
                    | RuntimeError::Invalid(_)
                    | RuntimeError::UnknownTenant(_))
            ),
            "{r:?}"
        );
    }
    let other_team = TenantCtx::new(
        acme.tenant.clone(),
        acme.env.clone(),
        Some(TeamId::parse("sales").unwrap()),
    );
    assert!(matches!(
        rt.send(&other_team, &web(), msg(None, "a", "x")).await,
        Err(RuntimeError::UnknownTeam { .. })
    ));
    assert!(
        rt.log().tenants().unwrap().is_empty(),
        "a refused message wrote something"
    );
    rt.shutdown().await;
}

/// A burst to a session that does not exist yet: the session actor's mailbox has its full size
/// from the first message on, not actix's default of 16 until the actor has started.
#[actix_rt::test]
async fn a_cold_burst_within_the_session_mailbox_is_all_accepted() {
    let (_h, rt, acme) = Harness::started();
    // The tenant and env actors are up (their mailboxes are another matter).
    rt.send(&acme, &web(), msg(Some("warm"), "bob", "hi"))
        .await
        .unwrap();
    let burst = crate::actors::session::SESSION_MAILBOX - 16;
    let pending: Vec<_> = (0..burst)
        .map(|i| {
            rt.submit(&acme, &web(), msg(Some("cold"), "ada", &format!("m{i}")))
                .unwrap()
        })
        .collect();
    let mut refused = 0;
    for answer in pending {
        match answer.await {
            Ok(_) => {}
            Err(RuntimeError::Overloaded) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(refused, 0, "{refused} of {burst} refused as overloaded");
    rt.shutdown().await;
}
