use super::*;
use crate::events::log::fixtures::{acme_support, ada_group};
use crate::events::log::{
    AppendOutcome, EventLog, Idempotency, IdempotencyRecord, LogOptions, IDEMPOTENCY_RECORD_VERSION,
};
use crate::tenancy::fixtures::id;

/// The idempotency key of message `n` on channel `slack` of [`acme_support`].
fn key(n: usize) -> Vec<u8> {
    let ctx = acme_support();
    keys::idempotency_key(
        &ctx.tenant,
        &ctx.env,
        &ctx.team_or_default(),
        &id("slack"),
        &format!("msg-{n}"),
    )
}

fn temporary_tree() -> sled::Tree {
    let db = sled::Config::new().temporary(true).open().unwrap();
    db.open_tree("log").unwrap()
}

/// Steps `seen` until the tenant's filter is complete; returns the steps taken.
fn step_until_complete(seen: &mut Seen, tree: &sled::Tree, tenant: &TenantId) -> usize {
    let mut steps = 0;
    while !seen.is_complete(tenant) {
        assert!(
            seen.scanning(),
            "no scan runs, yet the filter is not complete"
        );
        seen.step(tree);
        steps += 1;
        assert!(steps < 10_000, "the scan does not end");
    }
    steps
}

#[test]
fn a_filter_has_no_false_negatives_and_about_one_percent_false_positives_at_capacity() {
    const KEYS: usize = 100_000;
    let mut bloom = Bloom::with_capacity(KEYS as u64);
    for n in 0..KEYS {
        bloom.insert(&key(n));
    }
    assert!(!bloom.is_over());
    assert!((0..KEYS).all(|n| bloom.may_contain(&key(n))));
    let false_positives = (KEYS..2 * KEYS)
        .filter(|&n| bloom.may_contain(&key(n)))
        .count();
    // 10 bits a key, 7 bits set in one 512-bit block: ~1 % (a standard filter: 0.8 %).
    assert!(
        false_positives * 100 <= KEYS * 2,
        "{false_positives} false positives in {KEYS}"
    );
    // The memory is what BITS_PER_KEY promises (rounded up to whole blocks).
    let bits = KEYS as u64 * BITS_PER_KEY;
    assert_eq!(
        bloom.bytes() as u64,
        bits.div_ceil(BLOCK_BITS) * BLOCK_BITS / 8
    );
    bloom.insert(&key(KEYS));
    assert!(bloom.is_over());
}

#[test]
fn a_filter_answers_only_once_its_scan_has_seen_every_key_in_the_tree() {
    let tree = temporary_tree();
    let acme = id("acme");
    for n in 0..2_000 {
        tree.insert(key(n), b"r").unwrap();
    }
    // Another tenant's records are not the scan's business (nor a reason to stop early).
    let other = keys::idempotency_key(&id("acme2"), &id("prod"), &id("support"), &id("web"), "x");
    tree.insert(other, b"r").unwrap();
    // Small limits: the first filter is too small, so the scan starts again larger.
    let mut seen = Seen::with_limits(16, 300);
    assert!(seen.may_contain(&acme, &key(5_000)), "no filter yet: maybe");
    // The stager stages keys while the scan runs: before and after the scan's position.
    for (i, n) in [2_000, 2_001, 0, 1_999].into_iter().enumerate() {
        seen.step(&tree);
        tree.insert(key(n), b"r").unwrap();
        seen.insert(&acme, &key(n));
        if i < 2 {
            assert!(seen.may_contain(&acme, &key(5_000)), "not complete yet");
        }
    }
    let steps = step_until_complete(&mut seen, &tree, &acme);
    assert!(steps > 1, "the scan took {steps} steps, not several");
    for n in 0..=2_001 {
        assert!(seen.may_contain(&acme, &key(n)), "key {n} missing");
    }
    let absent = (10_000..20_000)
        .filter(|&n| !seen.may_contain(&acme, &key(n)))
        .count();
    assert!(
        absent >= 9_800,
        "only {absent} of 10000 new ids answered absent"
    );
}

#[test]
fn a_full_filter_goes_on_answering_while_it_is_rebuilt_larger() {
    let tree = temporary_tree();
    let acme = id("acme");
    let mut seen = Seen::with_limits(64, 50);
    assert!(seen.may_contain(&acme, &key(0)));
    step_until_complete(&mut seen, &tree, &acme);
    let small = seen.bytes();
    // The stager appends far past the first filter's capacity.
    for n in 0..1_000 {
        assert!(!seen.scanning() || seen.is_complete(&acme));
        tree.insert(key(n), b"r").unwrap();
        seen.insert(&acme, &key(n));
        assert!((0..=n)
            .step_by(37)
            .all(|m| seen.may_contain(&acme, &key(m))));
        if n % 10 == 0 {
            seen.step(&tree);
        }
    }
    while seen.scanning() {
        seen.step(&tree);
    }
    assert!(
        seen.bytes() > small * 8,
        "{} vs {small} bytes",
        seen.bytes()
    );
    assert!((0..1_000).all(|n| seen.may_contain(&acme, &key(n))));
    let absent = (10_000..11_000)
        .filter(|&n| !seen.may_contain(&acme, &key(n)))
        .count();
    assert!(
        absent >= 970,
        "only {absent} of 1000 new ids answered absent"
    );
}

#[test]
fn a_filter_left_far_too_large_by_the_purge_is_rebuilt_smaller() {
    let tree = temporary_tree();
    let acme = id("acme");
    for n in 0..4_000 {
        tree.insert(key(n), b"r").unwrap();
    }
    let mut seen = Seen::with_limits(64, 500);
    assert!(seen.may_contain(&acme, &key(0)));
    step_until_complete(&mut seen, &tree, &acme);
    while seen.scanning() {
        seen.step(&tree);
    }
    let before = seen.bytes();
    // The purge removes most records; the stager appends until the filter counts as full.
    for n in 0..3_800 {
        tree.remove(key(n)).unwrap();
    }
    let mut n = 10_000;
    while !seen.scanning() {
        tree.insert(key(n), b"r").unwrap();
        seen.insert(&acme, &key(n));
        n += 1;
    }
    while seen.scanning() {
        assert!(seen.is_complete(&acme));
        seen.step(&tree);
    }
    // Sized for twice the records left, not for the rebuild's guess (twice all ever put in).
    let left = (200 + n - 10_000) as u64;
    let sized = (2 * left * BITS_PER_KEY).div_ceil(BLOCK_BITS) * BLOCK_BITS / 8;
    assert_eq!(seen.bytes() as u64, sized, "{before} bytes before");
    assert!((3_800..4_000)
        .chain(10_000..n)
        .all(|m| seen.may_contain(&acme, &key(m))));
}

#[test]
fn a_forgotten_tenant_reads_sled_until_a_new_scan_has_seen_what_others_wrote() {
    let tree = temporary_tree();
    let acme = id("acme");
    let mut seen = Seen::with_limits(16, 1_000);
    assert!(seen.may_contain(&acme, &key(1)));
    step_until_complete(&mut seen, &tree, &acme);
    assert!(!seen.may_contain(&acme, &key(1)));
    // Another owner's records arrive (an adoption): the stager did not stage them.
    tree.insert(key(1), b"r").unwrap();
    seen.forget(&acme);
    assert!(seen.may_contain(&acme, &key(1)), "forgotten: maybe");
    step_until_complete(&mut seen, &tree, &acme);
    assert!(seen.may_contain(&acme, &key(1)));
    // A recovery forgets every tenant.
    tree.insert(key(2), b"r").unwrap();
    seen.clear();
    assert!(seen.may_contain(&acme, &key(2)));
    step_until_complete(&mut seen, &tree, &acme);
    assert!(seen.may_contain(&acme, &key(2)));
}

/// Ada's message `n` in session s1 of acme, with message id `msg-{n}` and ack `ack-{n}`.
fn ada_message(expected_seq: u64, n: usize, ack: &str) -> crate::events::log::AppendGroup {
    let mut group = ada_group(expected_seq, format!("msg-{n}"), "hi", 5);
    group.idempotency = Some(Idempotency {
        message_id: format!("msg-{n}"),
        ack: ack.as_bytes().to_vec(),
    });
    group
}

/// Appends new message ids `from..from + count` after `last_seq`, one batch each, so that the
/// filter's scan takes a step after each; returns the session's last seq.
fn append_new(log: &EventLog, mut last_seq: u64, from: usize, count: usize) -> u64 {
    for n in from..from + count {
        let outcome = log
            .append_blocking(ada_message(last_seq, n, "new"))
            .unwrap();
        let AppendOutcome::Appended(appended) = outcome else {
            panic!("message {n} is new, got {outcome:?}");
        };
        last_seq = appended.last_seq;
    }
    last_seq
}

fn assert_duplicate(log: &EventLog, last_seq: u64, n: usize, ack: &str) {
    let outcome = log
        .append_blocking(ada_message(last_seq, n, "retry"))
        .unwrap();
    assert!(
        matches!(&outcome, AppendOutcome::Duplicate(rec) if rec.ack == ack.as_bytes()),
        "a retry of message {n} must get the first ack {ack:?}, got {outcome:?}"
    );
}

#[test]
fn a_retry_after_reopening_the_log_gets_the_first_ack() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
        log.append_blocking(ada_group(0, String::new(), "", 5))
            .unwrap();
        let last = append_new(&log, 1, 0, 3);
        assert_duplicate(&log, last, 1, "new");
        last
    };
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    // New ids first: the filter is built from the tree and answers them by itself.
    let last = append_new(&log, last, 100, 5);
    for n in 0..3 {
        assert_duplicate(&log, last, n, "new");
    }
    assert_duplicate(&log, last, 102, "new");
}

#[test]
fn a_retry_of_an_id_written_before_the_filter_existed_gets_the_first_ack() {
    const RECORDS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
        log.append_blocking(ada_group(0, String::new(), "", 5))
            .unwrap();
        // Records as an earlier build (or an earlier run) left them: more than one scan step
        // holds and more than a first filter is sized for.
        const _: () = assert!(RECORDS > SCAN_KEYS_PER_STEP && RECORDS as u64 > KEYS_MIN);
        let store = log.inner.shared.store().unwrap();
        for n in 0..RECORDS {
            let rec = IdempotencyRecord {
                v: IDEMPOTENCY_RECORD_VERSION,
                session: id("s1"),
                first_seq: 1,
                last_seq: 1,
                ack: format!("ack-{n}").into_bytes(),
                at_ms: 5,
                sealed: false,
            };
            let value = rmp_serde::to_vec_named(&rec).unwrap();
            store.tree.insert(key(n), value).unwrap();
        }
        store.db.flush().unwrap();
    }
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    // Enough batches for the scan to finish, starting over larger on the way.
    let last = append_new(&log, 1, RECORDS, 24);
    for n in [0, 1, RECORDS / 2, RECORDS - 1] {
        assert_duplicate(&log, last, n, &format!("ack-{n}"));
    }
}
