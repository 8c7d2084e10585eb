use super::*;
use crate::events::codec::decode_frame;
use crate::events::log::fixtures::{acme_support, ada_group, keyring};
use crate::events::log::{AppendOutcome, LogOptions, ReadError};
use crate::events::schema::{EventKind, KindView};

fn append(log: &EventLog, expected_seq: u64, text: &str) {
    let group = ada_group(expected_seq, format!("m{expected_seq}"), text, 1_000);
    let outcome = log.append_blocking(group).unwrap();
    assert!(matches!(outcome, AppendOutcome::Appended(_)));
}

/// Every event of the tenant as (kind, erased).
fn read(log: &EventLog) -> Vec<(EventKind, bool)> {
    let tenant = acme_support().tenant;
    log.tenant(&tenant)
        .events(1..=u64::MAX)
        .map(|e| e.map(|s| (s.event.kind, s.erased)).unwrap())
        .collect()
}

/// The fold's view of every MessageReceived's text.
fn folded_texts(log: &EventLog) -> Vec<String> {
    let tenant = acme_support().tenant;
    let mut texts = Vec::new();
    log.tenant(&tenant)
        .fold_frames(1..=u64::MAX, &mut |views| {
            for v in views {
                if let KindView::MessageReceived { text } = v.kind {
                    texts.push(text.to_owned());
                }
            }
            Ok::<(), ReadError>(())
        })
        .unwrap();
    texts
}

#[test]
fn a_v2_log_keeps_reading_after_sealing_starts_and_erasure_empties_only_the_sealed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    // Written before sealing (v2).
    let log = EventLog::open(&log_dir, &LogOptions::default()).unwrap();
    append(&log, 0, "");
    append(&log, 1, "plain-canary");
    drop(log);
    // Reopened with a key ring: new events are sealed, old ones still read.
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&log_dir, &opts).unwrap();
    append(&log, 2, "sealed-canary");
    let texts = folded_texts(&log);
    assert_eq!(texts, ["plain-canary", "sealed-canary"]);
    let events = read(&log);
    assert!(events.iter().all(|(_, erased)| !erased));
    // The sealed text is not in the frame's bytes.
    let tenant = acme_support().tenant;
    let store = log.inner.shared.store().unwrap();
    let (start, end) = crate::events::keys::frame_range(&tenant);
    let last = store.tree.range(start..end).next_back().unwrap().unwrap().1;
    let frame = decode_frame(&last).unwrap();
    assert!(!frame.bodies[0].windows(13).any(|w| w == b"sealed-canary"));
    drop(store);

    // Erase: the v3 text is gone, the v2 one (written unsealed) reads as before.
    let sessions: Vec<SessionInfo> = log
        .scope(&acme_support())
        .sessions()
        .map(Result::unwrap)
        .collect();
    let done = log.erase_sessions_offline(&tenant, &sessions).unwrap();
    assert_eq!(done.keys_destroyed, 1);
    assert_eq!(folded_texts(&log), ["plain-canary", ""]);
    let events = read(&log);
    let last = events.last().unwrap();
    assert!(last.1, "the sealed event reads as erased");
    assert_eq!(
        last.0,
        EventKind::MessageReceived {
            message_id: "m2".into(),
            user: String::new(),
            text: String::new(),
        }
    );
    assert!(!events[1].1, "a v2 event has nothing sealed to erase");
    // The session meta forgot the user.
    let users: Vec<String> = log
        .scope(&acme_support())
        .sessions()
        .map(|s| s.unwrap().user)
        .collect();
    assert_eq!(users, [""]);
}

#[test]
fn a_stored_reply_is_sealed_on_disk_opens_for_retries_and_not_after_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    append(&log, 0, "");
    let canary = b"reply-canary-7f3a".to_vec();
    let mut group = ada_group(1, "m1".into(), "hello", 1_000);
    group.idempotency = Some(crate::events::log::Idempotency {
        message_id: "m1".into(),
        ack: canary.clone(),
    });
    let outcome = log.append_blocking(group.clone()).unwrap();
    assert!(matches!(outcome, AppendOutcome::Appended(_)));
    // The stored record does not hold the reply in plain.
    let tenant = acme_support().tenant;
    let store = log.inner.shared.store().unwrap();
    let (start, end) = crate::events::keys::idempotency_range(&tenant);
    let raw: Vec<_> = store
        .tree
        .range(start..end)
        .map(|kv| kv.unwrap().1)
        .collect();
    assert_eq!(raw.len(), 1);
    assert!(!raw[0].windows(canary.len()).any(|w| w == canary.as_slice()));
    drop(store);
    // A retry reads it back (from the log, past the stager's memory: a reopened log).
    drop(log);
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    let channel = crate::tenancy::ChannelId::parse("slack").unwrap();
    let rec = log
        .scope(&acme_support())
        .idempotency(&channel, "m1")
        .unwrap();
    assert_eq!(rec.unwrap().ack, canary);
    match log.append_blocking(group).unwrap() {
        AppendOutcome::Duplicate(rec) => {
            assert_eq!(rec.ack, canary);
            assert!(!rec.sealed);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Only the data key destroyed (the record stays): the reply no longer opens, and a retry
    // is still a duplicate (nothing appended twice).
    let store = log.inner.shared.store().unwrap();
    let scope = crate::events::seal::SealScope {
        tenant: tenant.as_str(),
        env: "prod",
        team: "support",
        session: "s1",
    };
    let ring = log.inner.shared.opts.keyring.clone().unwrap();
    assert_eq!(
        ring.erase_sessions(&store.tree, &tenant, &[scope]).unwrap(),
        1
    );
    drop(store);
    let rec = log
        .scope(&acme_support())
        .idempotency(&channel, "m1")
        .unwrap();
    let rec = rec.unwrap();
    assert!(rec.sealed);
    assert!(!rec
        .ack
        .windows(canary.len())
        .any(|w| w == canary.as_slice()));
    let mut again = ada_group(2, "m1".into(), "hello", 1_000);
    again.idempotency = Some(crate::events::log::Idempotency {
        message_id: "m1".into(),
        ack: canary.clone(),
    });
    let outcome = log.append_blocking(again).unwrap();
    assert!(
        matches!(&outcome, AppendOutcome::Duplicate(rec) if rec.sealed),
        "{outcome:?}"
    );
}

/// A group of session `s1` of [`acme_support`] by `user`: its start at seq 0, else one message
/// (or its end when `end`).
fn user_group(expected_seq: u64, user: &str, end: bool) -> crate::events::log::AppendGroup {
    let mut group = ada_group(expected_seq, format!("m{expected_seq}"), "t", 1_000);
    group.kinds = if expected_seq == 0 {
        vec![EventKind::SessionStarted {
            user: user.into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }]
    } else if end {
        vec![EventKind::SessionEnded {
            reason: "done".into(),
        }]
    } else {
        vec![EventKind::MessageReceived {
            message_id: format!("m{expected_seq}"),
            user: user.into(),
            text: "t".into(),
        }]
    };
    group
}

/// True when any key or value of the log's trees (the log, the read models), or any file under
/// `dir`, holds `needle`.
fn anywhere(log: &EventLog, dir: &std::path::Path, needle: &[u8]) -> bool {
    let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    let store = log.inner.shared.store().unwrap();
    store.db.flush().unwrap();
    let in_tree = store.db.tree_names().into_iter().any(|name| {
        store.db.open_tree(name).unwrap().iter().any(|kv| {
            let (k, v) = kv.unwrap();
            has(&k) || has(&v)
        })
    });
    let mut in_files = false;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                in_files |= has(&std::fs::read(&path).unwrap());
            }
        }
    }
    in_tree || in_files
}

#[test]
fn a_sealed_session_keeps_no_user_id_in_plain_and_its_open_session_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log_dir = dir.path().join("log");
    let log = EventLog::open(&log_dir, &opts).unwrap();
    let user = "user-canary-51c9";
    log.append_blocking(user_group(0, user, false)).unwrap();
    log.append_blocking(user_group(1, user, false)).unwrap();
    let channel = crate::tenancy::ChannelId::parse("slack").unwrap();
    let scope = log.scope(&acme_support());
    assert_eq!(
        scope
            .open_session(&channel, user)
            .unwrap()
            .unwrap()
            .as_str(),
        "s1"
    );
    assert_eq!(scope.open_session(&channel, "someone-else").unwrap(), None);
    let sessions: Vec<SessionInfo> = scope.sessions().map(Result::unwrap).collect();
    assert_eq!(sessions[0].user, user);
    assert!(!anywhere(&log, &log_dir, user.as_bytes()));
    // After a restart (no cached session head) the end still clears the index entry.
    drop(scope);
    drop(log);
    let log = EventLog::open(&log_dir, &opts).unwrap();
    log.append_blocking(user_group(2, user, true)).unwrap();
    let scope = log.scope(&acme_support());
    assert_eq!(scope.open_session(&channel, user).unwrap(), None);
    // Erasure forgets the user: the sealed id no longer opens.
    let sessions: Vec<SessionInfo> = scope.sessions().map(Result::unwrap).collect();
    let tenant = acme_support().tenant;
    log.erase_sessions_offline(&tenant, &sessions).unwrap();
    let users: Vec<String> = scope.sessions().map(|s| s.unwrap().user).collect();
    assert_eq!(users, [""]);
}

#[test]
fn a_session_started_before_sealing_is_found_and_closed_by_its_plain_user() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = EventLog::open(&log_dir, &LogOptions::default()).unwrap();
    log.append_blocking(user_group(0, "old-user", false))
        .unwrap();
    drop(log);
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&log_dir, &opts).unwrap();
    // Another session makes the tenant's pseudonym key exist.
    let mut other = user_group(0, "new-user", false);
    other.session = crate::tenancy::SessionId::parse("s2").unwrap();
    log.append_blocking(other).unwrap();
    let channel = crate::tenancy::ChannelId::parse("slack").unwrap();
    let scope = log.scope(&acme_support());
    assert_eq!(
        scope
            .open_session(&channel, "old-user")
            .unwrap()
            .unwrap()
            .as_str(),
        "s1"
    );
    assert_eq!(
        scope
            .open_session(&channel, "new-user")
            .unwrap()
            .unwrap()
            .as_str(),
        "s2"
    );
    log.append_blocking(user_group(1, "old-user", true))
        .unwrap();
    assert_eq!(scope.open_session(&channel, "old-user").unwrap(), None);
    let users: Vec<String> = scope.sessions().map(|s| s.unwrap().user).collect();
    assert_eq!(users, ["old-user", "new-user"]);
}

#[test]
fn the_read_models_of_a_sealed_session_hold_no_user_or_text_in_plain_until_erased() {
    use crate::projections::projector::Projector;
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log_dir = dir.path().join("log");
    let log = EventLog::open(&log_dir, &opts).unwrap();
    let (user, text) = ("user-canary-9b2e", "text-canary-4d71");
    log.append_blocking(user_group(0, user, false)).unwrap();
    let mut message = user_group(1, user, false);
    message.kinds = vec![
        EventKind::MessageReceived {
            message_id: "m1".into(),
            user: user.into(),
            text: text.into(),
        },
        EventKind::StateSet {
            key: "name".into(),
            value: text.into(),
        },
    ];
    log.append_blocking(message).unwrap();
    let ctx = acme_support();
    let projector = Projector::new(&log).unwrap();
    projector.catch_up(&log, &ctx.tenant, &mut |_| {}).unwrap();
    let listed: Vec<_> = projector
        .sessions_with_last_message(&ctx.tenant, &ctx.env, None)
        .map(Result::unwrap)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0.user, user);
    assert_eq!(listed[0].0.vars["name"], text);
    assert_eq!(listed[0].1.as_deref(), Some(text));
    for canary in [user, text] {
        assert!(!anywhere(&log, &log_dir, canary.as_bytes()), "{canary}");
    }
    // A later fold reads the stored (sealed) state back and adds to it.
    let mut more = user_group(3, user, false);
    more.kinds = vec![EventKind::MessageReceived {
        message_id: "m2".into(),
        user: user.into(),
        text: "second".into(),
    }];
    log.append_blocking(more).unwrap();
    projector.catch_up(&log, &ctx.tenant, &mut |_| {}).unwrap();
    let state = projector
        .sessions(&ctx.tenant, &ctx.env, None)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((state.messages_in, state.vars["name"].as_str()), (2, text));
    // Erased: the rebuilt read models hold the session without its personal fields.
    let sessions: Vec<SessionInfo> = log.scope(&ctx).sessions().map(Result::unwrap).collect();
    log.erase_sessions_offline(&ctx.tenant, &sessions).unwrap();
    projector.rebuild(&log, &ctx.tenant, &mut |_| {}).unwrap();
    let listed: Vec<_> = projector
        .sessions_with_last_message(&ctx.tenant, &ctx.env, None)
        .map(Result::unwrap)
        .collect();
    assert_eq!(listed[0].0.user, "");
    assert_eq!(listed[0].0.messages_in, 2);
    assert!(listed[0].0.vars.values().all(String::is_empty));
    assert_eq!(listed[0].1.as_deref(), Some(""));
}

#[test]
fn a_sealed_sessions_rebuilt_read_models_equal_the_incremental_fold_byte_for_byte() {
    use crate::projections::projector::Projector;
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    let tenant = acme_support().tenant;
    let projector = Projector::new(&log).unwrap();
    log.append_blocking(user_group(0, "ada", false)).unwrap();
    projector.catch_up(&log, &tenant, &mut |_| {}).unwrap();
    let mut message = user_group(1, "ada", false);
    message.kinds = vec![EventKind::StateSet {
        key: "name".into(),
        value: "Ada".into(),
    }];
    log.append_blocking(message).unwrap();
    projector.catch_up(&log, &tenant, &mut |_| {}).unwrap();
    let incremental = projector.dump(&tenant).unwrap();
    projector.rebuild(&log, &tenant, &mut |_| {}).unwrap();
    assert_eq!(projector.dump(&tenant).unwrap(), incremental);
    // Sealed indeed: the stored entries hold neither the user nor the value.
    let stored = format!("{incremental:?}");
    assert!(!stored.contains("Ada"), "{stored}");
}

/// More kept sessions than one tenant-ops call holds: the erasure's re-wrapped keys go out in
/// several parts, and every kept key still opens afterwards.
#[test]
fn erasing_in_a_tenant_whose_kept_keys_exceed_one_record_succeeds() {
    use crate::events::log::ops::TENANT_OPS_BYTES_MAX;
    use crate::events::seal::SealScope;

    let dir = tempfile::tempdir().unwrap();
    let ring = keyring(dir.path());
    let opts = LogOptions {
        keyring: Some(ring.clone()),
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    append(&log, 0, "");
    append(&log, 1, "sealed-canary");
    assert_eq!(folded_texts(&log), ["sealed-canary"]);
    let tenant = acme_support().tenant;
    // Other sessions' wrapped keys, enough that re-wrapping them all is over one record.
    let store = log.inner.shared.store().unwrap();
    let names: Vec<String> = (0..8_000).map(|i| format!("kept-{i:05}")).collect();
    let scopes: Vec<SealScope<'_>> = names
        .iter()
        .map(|s| SealScope {
            tenant: "acme",
            env: "prod",
            team: "support",
            session: s,
        })
        .collect();
    for scope in &scopes {
        ring.write_key(&store.tree, scope).unwrap();
    }
    let (start, end) = crate::events::keys::data_key_range(&tenant);
    let wrapped_bytes: usize = store
        .tree
        .range(start..end)
        .map(|kv| {
            let (k, v) = kv.unwrap();
            k.len() + v.len()
        })
        .sum();
    assert!(wrapped_bytes > TENANT_OPS_BYTES_MAX, "{wrapped_bytes}");
    let kept: Vec<Vec<u8>> = scopes
        .iter()
        .map(|s| {
            ring.read_key(&store.tree, s)
                .unwrap()
                .unwrap()
                .expose()
                .to_vec()
        })
        .collect();
    drop(store);

    let sessions: Vec<SessionInfo> = log
        .scope(&acme_support())
        .sessions()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sessions.len(), 1);
    let done = log.erase_sessions_offline(&tenant, &sessions).unwrap();
    assert_eq!(done.keys_destroyed, 1);
    assert_eq!(folded_texts(&log), [""]);
    // A fresh ring (no cached keys) opens every kept key with the rotated KEK.
    let fresh = keyring(dir.path());
    let store = log.inner.shared.store().unwrap();
    for (scope, key) in scopes.iter().zip(&kept) {
        let read = fresh.read_key(&store.tree, scope).unwrap().unwrap();
        assert_eq!(read.expose(), key.as_slice());
    }
}
