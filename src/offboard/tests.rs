use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::events::log::fixtures::ada_group;
use crate::events::log::LogOptions;
use crate::tenancy::TenantCtx;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// Two messages of Ada in `tenant` (its session start and one message).
fn two_groups(log: &EventLog, tenant: &str) {
    for (seq, text) in [(0, ""), (1, "canary")] {
        let mut group = ada_group(seq, format!("m{seq}"), text, 1_000);
        group.ctx = TenantCtx::new(id(tenant), id("prod"), Some(id("support")));
        log.append_blocking(group).unwrap();
    }
}

/// A file under the data dir, with its directories.
fn put(data: &Path, rel: &str) {
    let path = data.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"0123456789").unwrap();
}

#[test]
fn deleting_a_tenant_frees_its_parts_only_and_again_frees_nothing() {
    let data = tempfile::tempdir().unwrap();
    let log = EventLog::open(&data.path().join("log"), &LogOptions::default()).unwrap();
    let projector = Projector::new(&log).unwrap();
    let (acme, zeta): (TenantId, TenantId) = (id("acme"), id("zeta"));
    for t in [&acme, &zeta] {
        two_groups(&log, t.as_str());
        log.put_signed_head(t, 2, b"head").unwrap();
        projector.catch_up(&log, t, &mut |_| {}).unwrap();
        put(data.path(), &format!("sessions/{t}/prod/support/s1.cbor"));
        put(data.path(), &format!("secrets/tenants/{t}/api_key.sec"));
        put(
            data.path(),
            &format!("secrets/tenants/{t}/teams/support/hook.sec"),
        );
    }
    put(data.path(), "secrets/global/signing_key.sec");
    let zeta_before = (log.census(&zeta).unwrap(), projector.dump(&zeta).unwrap());

    let freed = offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
    assert_eq!(
        (freed.events, freed.sessions, freed.signed_heads),
        (2, 1, 1),
        "{freed:?}"
    );
    assert!(freed.log_keys >= 5 && freed.log_bytes > 0, "{freed:?}");
    assert!(freed.read_model_rows >= 2, "{freed:?}");
    assert_eq!((freed.snapshot_files, freed.snapshot_bytes), (1, 10));
    assert_eq!((freed.secrets, freed.secret_bytes), (2, 20));
    assert!(!freed.resumed);

    assert_eq!(
        log.census(&acme).unwrap(),
        crate::events::log::LogCensus::default()
    );
    assert!(projector.dump(&acme).unwrap().is_empty());
    assert!(!data.path().join("sessions/acme").exists());
    assert!(!data.path().join("secrets/tenants/acme").exists());
    assert!(interrupted(data.path()).is_empty());
    // The other tenant and the global secrets are untouched.
    assert_eq!(
        (log.census(&zeta).unwrap(), projector.dump(&zeta).unwrap()),
        zeta_before
    );
    assert!(data
        .path()
        .join("sessions/zeta/prod/support/s1.cbor")
        .is_file());
    assert!(data
        .path()
        .join("secrets/tenants/zeta/teams/support/hook.sec")
        .is_file());
    assert!(data.path().join("secrets/global/signing_key.sec").is_file());
    // A head signed from before the deletion cannot come back.
    assert!(log.put_signed_head(&acme, 2, b"late").is_err());

    let again = offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn an_interrupted_deletion_is_listed_and_finished_by_the_next_run() {
    let data = tempfile::tempdir().unwrap();
    let log = EventLog::open(&data.path().join("log"), &LogOptions::default()).unwrap();
    let projector = Projector::new(&log).unwrap();
    let acme: TenantId = id("acme");
    two_groups(&log, "acme");
    put(data.path(), "offboarding/acme");
    assert_eq!(interrupted(data.path()), vec![acme.clone()]);
    let freed = offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
    assert!(freed.resumed && freed.events == 2, "{freed:?}");
    assert!(interrupted(data.path()).is_empty());
}

#[test]
fn a_damaged_tenant_is_deleted_and_then_writable_again() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("log");
    {
        let log = EventLog::open(&dir, &LogOptions::default()).unwrap();
        two_groups(&log, "acme");
        two_groups(&log, "zeta");
    }
    {
        // Damage acme's last frame (tenant_seq 2) behind the log's back.
        let db = sled::open(&dir).unwrap();
        let tree = db.open_tree(b"log").unwrap();
        let key = crate::events::keys::frame_key(&id("acme"), 2);
        let mut value = tree.get(&key).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x40;
        tree.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let log = EventLog::open(&dir, &LogOptions::default()).unwrap();
    let projector = Projector::new(&log).unwrap();
    assert_eq!(log.damaged().len(), 1);
    let acme: TenantId = id("acme");
    let freed = offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
    assert_eq!(
        freed.events, 2,
        "the damaged frame's first tenant_seq: {freed:?}"
    );
    assert!(
        log.damaged().is_empty(),
        "nothing of acme is left to be damaged"
    );
    two_groups(&log, "acme");
    assert_eq!(log.census(&acme).unwrap().events, 2);
    assert_eq!(log.census(&id("zeta")).unwrap().events, 2);
}

#[test]
fn a_tenant_deleted_while_served_and_written_again_keeps_its_new_sealed_data_after_a_restart() {
    use crate::events::keyring::Keyring;
    use crate::secrets::key::KeySources;
    use crate::secrets::store::SecretStore;
    use crate::secrets::value::SecretValue;
    let data = tempfile::tempdir().unwrap();
    let ring = || {
        let sources = KeySources {
            master_key_hex: Some(SecretValue::new(b"cd".repeat(32))),
            signing_key: None,
        };
        let store = SecretStore::open_with(data.path(), sources).unwrap();
        Some(std::sync::Arc::new(Keyring::new(store)))
    };
    let opts = LogOptions {
        keyring: ring(),
        ..LogOptions::default()
    };
    let log_dir = data.path().join("log");
    let log = EventLog::open(&log_dir, &opts).unwrap();
    let projector = Projector::new(&log).unwrap();
    let acme: TenantId = id("acme");
    two_groups(&log, "acme");
    offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
    // The same running log takes the tenant's new messages: their keys must be kept on disk.
    two_groups(&log, "acme");
    drop(projector);
    drop(log);
    let opts = LogOptions {
        keyring: ring(),
        ..LogOptions::default()
    };
    let log = EventLog::open(&log_dir, &opts).unwrap();
    let events: Vec<_> = log
        .tenant(&acme)
        .events(1..=u64::MAX)
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| !e.erased), "read as erased");
    let ctx = TenantCtx::new(id("acme"), id("prod"), Some(id("support")));
    let channel = crate::tenancy::ChannelId::parse("slack").unwrap();
    let open = log.scope(&ctx).open_session(&channel, "ada").unwrap();
    assert_eq!(open.map(|s| s.to_string()).as_deref(), Some("s1"));
}

/// The server's background fold drops the read models and snapshots of a tenant whose log was
/// deleted (`Projector::forget_if_deleted`). Racing a deletion, it must not take them between
/// the log's deletion and the read models': the report would say nothing of them was freed.
#[test]
fn a_background_fold_racing_a_deletion_leaves_the_report_whole() {
    let data = tempfile::tempdir().unwrap();
    let log = EventLog::open(&data.path().join("log"), &LogOptions::default()).unwrap();
    let projector = Projector::new(&log).unwrap();
    let snapshots = SnapshotStore::new(data.path().join(SESSIONS_DIR));
    let acme: TenantId = id("acme");
    let stop = AtomicBool::new(false);
    /// Stops the racing thread however the rounds end (a failed one unwinds past it).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                projector
                    .forget_if_deleted(&log, &snapshots, &acme)
                    .unwrap();
            }
        });
        let _stop = StopOnDrop(&stop);
        for round in 0..50 {
            two_groups(&log, "acme");
            projector.catch_up(&log, &acme, &mut |_| {}).unwrap();
            put(data.path(), "sessions/acme/prod/support/s1.cbor");
            let freed = offboard_tenant(&log, &projector, data.path(), &acme).unwrap();
            assert!(freed.read_model_rows >= 2, "round {round}: {freed:?}");
            assert_eq!(freed.snapshot_files, 1, "round {round}: {freed:?}");
        }
    });
}
