use std::collections::BTreeMap;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex};

use super::*;
use crate::events::log::LogOptions;
use crate::projections::projector::tests::{append_in, msg};
use crate::tenancy::fixtures::id;

/// A tenant's read-model entries ([`Projector::dump`]).
type Dump = Vec<(Vec<u8>, Vec<u8>)>;

const TENANTS: [&str; 5] = ["acme", "acmex", "bigcorp", "c", "d"];

/// A log where tenant `TENANTS[i]` has `i + 1` sessions of `3 * (i + 1)` messages (acmex shares
/// acme's team, channel and session ids), its read models caught up, then a stale entry put
/// into each tenant's; returns the caught-up read models.
fn caught_up_then_stale(log: &EventLog, p: &Projector) -> BTreeMap<String, Dump> {
    let mut expected = BTreeMap::new();
    for (i, tenant) in TENANTS.iter().enumerate() {
        for s in 0..=i {
            let kinds = (0..3 * (i + 1))
                .map(|m| msg(&format!("{tenant} {m}")))
                .collect();
            append_in(
                log,
                (tenant, "support"),
                "web",
                &format!("s{s}"),
                0,
                1_000,
                kinds,
            );
        }
        p.catch_up(log, &id(tenant), &mut |_| {}).unwrap();
        expected.insert(tenant.to_string(), p.dump(&id(tenant)).unwrap());
        let head = p.checkpoint(&id(tenant)).unwrap();
        let stale: BTreeMap<Vec<u8>, Vec<u8>> =
            [(b"Sprod\0support\0gone".to_vec(), b"stale".to_vec())].into();
        p.tree.commit(&id(tenant), &stale, head).unwrap();
        assert_ne!(p.dump(&id(tenant)).unwrap(), expected[*tenant]);
    }
    expected
}

fn all_tenants() -> Vec<TenantId> {
    TENANTS.iter().map(|t| id(t)).collect()
}

#[test]
fn a_parallel_rebuild_gives_each_tenant_exactly_its_own_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let p = Projector::new(&log).unwrap();
    let expected = caught_up_then_stale(&log, &p);
    let heads: BTreeMap<String, u64> = TENANTS
        .iter()
        .map(|t| {
            (
                t.to_string(),
                log.tenant(&id(t)).head().unwrap().unwrap().tenant_seq,
            )
        })
        .collect();
    let done = Mutex::new(Vec::new());
    // Each hook waits (up to 10 s) until a second worker has run one: a rebuild that took the
    // tenants one after another on one thread would fail the check below.
    let workers = (Mutex::new(HashSet::new()), Condvar::new());
    let folded = p
        .rebuild_tenants(
            &log,
            &longest_logs_first(&log, all_tenants()).unwrap(),
            NonZeroUsize::new(3).unwrap(),
            &|_, _| {},
            &|tenant, n| {
                done.lock().unwrap().push((tenant.to_string(), n));
                let (seen, arrived) = &workers;
                let mut seen = seen.lock().unwrap();
                seen.insert(std::thread::current().id());
                arrived.notify_all();
                let wait = std::time::Duration::from_secs(10);
                drop(
                    arrived
                        .wait_timeout_while(seen, wait, |s| s.len() < 2)
                        .unwrap(),
                );
                Ok::<(), ProjectorError>(())
            },
        )
        .unwrap();
    assert_eq!(folded, heads.values().sum::<u64>());
    let mut done = done.into_inner().unwrap();
    done.sort();
    assert_eq!(
        done,
        heads.into_iter().collect::<Vec<_>>(),
        "each tenant once, all of it"
    );
    for tenant in TENANTS {
        // The stale entry is gone and nothing of another tenant (acmex's ids are acme's) is in.
        assert_eq!(p.dump(&id(tenant)).unwrap(), expected[tenant], "{tenant}");
    }
    assert!(
        workers.0.into_inner().unwrap().len() > 1,
        "the tenants shared the workers"
    );
}

#[test]
fn after_a_failure_no_tenant_starts_and_the_first_failure_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let p = Projector::new(&log).unwrap();
    let expected = caught_up_then_stale(&log, &p);
    let order = all_tenants();
    let started = Mutex::new(Vec::new());
    let result = p.rebuild_tenants(
        &log,
        &order,
        NonZeroUsize::MIN,
        &|tenant, _| {
            let mut started = started.lock().unwrap();
            if started.last() != Some(tenant) {
                started.push(tenant.clone());
            }
        },
        &|tenant, _| match tenant.as_str() {
            "acmex" => Err(format!("{tenant}: no room")),
            _ => Ok(()),
        },
    );
    assert_eq!(result, Err("acmex: no room".to_owned()));
    assert_eq!(started.into_inner().unwrap(), order[..2].to_vec());
    // acme and acmex were rebuilt; the others keep their old (stale) read models.
    assert_eq!(p.dump(&id("acme")).unwrap(), expected["acme"]);
    for tenant in ["bigcorp", "c", "d"] {
        assert_ne!(p.dump(&id(tenant)).unwrap(), expected[tenant], "{tenant}");
    }
}

impl From<ProjectorError> for String {
    fn from(e: ProjectorError) -> String {
        e.to_string()
    }
}

#[test]
fn a_panic_in_one_tenants_rebuild_is_that_tenants_error_not_the_callers_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let p = Projector::new(&log).unwrap();
    caught_up_then_stale(&log, &p);
    for jobs in [1, 2] {
        let result = p.rebuild_tenants(
            &log,
            &all_tenants(),
            NonZeroUsize::new(jobs).unwrap(),
            &|_, _| {},
            &|tenant, _| {
                assert_ne!(tenant.as_str(), "bigcorp", "a bug in the hook");
                Ok::<(), ProjectorError>(())
            },
        );
        match result {
            Err(ProjectorError::Panicked { tenant, detail }) => {
                assert_eq!(tenant.as_str(), "bigcorp", "jobs {jobs}");
                assert!(detail.contains("a bug in the hook"), "{detail}");
            }
            other => panic!("jobs {jobs}: {other:?}"),
        }
    }
}

#[test]
fn the_longest_logs_come_first_and_ties_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    for (tenant, messages) in [("a", 1), ("b", 3), ("c", 1), ("d", 2)] {
        let kinds = (0..messages).map(|m| msg(&format!("{m}"))).collect();
        append_in(&log, (tenant, "support"), "web", "s1", 0, 1_000, kinds);
    }
    let given = ["d", "c", "b", "a", "e"].map(id).to_vec();
    let ordered = longest_logs_first(&log, given).unwrap();
    // "e" has no events: last.
    assert_eq!(ordered, ["b", "d", "a", "c", "e"].map(id).to_vec());
    assert_eq!(rebuild_jobs(0), NonZeroUsize::MIN);
    assert_eq!(rebuild_jobs(1), NonZeroUsize::MIN);
}
