//! The log's own timings, for `/metrics` (the edge registers them: `edge::metrics`):
//! where an ack's time goes inside the log, on a live server, without a profiler.
//!
//! - `append_seconds`: one append group's time in the log, from its arrival at the stager's
//!   queue to its durable answer (queue, staging, `apply_batch`, the wait for the commit before
//!   it, its own commit);
//! - `queue_seconds`: of that, the wait in the queue until the stager takes the group;
//! - `batch_seconds`: the stager's time on one batch (staging its groups, `apply_batch`);
//! - `commit_seconds`: one commit of the syncer: sled's flush and `fdatasync`, or, on the
//!   JetStream backend, publishing and the stream's quorum acks;
//! - `commit_groups`: append groups made durable by one commit (the group commit's size);
//! - `sled_writes`: sled writes (puts and removals) the stager staged; over `commit_groups`'
//!   sum, what an appended group costs in sled keys, the log's main cost.
//!
//! An edge's ack latency minus `append_seconds` is the actors' and the flow's share; a long
//! `queue` with short commits means the stager is the bottleneck, a long `commit` the disk (or
//! the stream). Observed once per group and once per batch or commit, on the stager and syncer
//! threads: a few comparisons under an uncontended lock, never a syscall.

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::oneshot;

use super::{AppendError, AppendOutcome, EventLog};

/// The log's timings. Cheap to clone: clones share the same histograms.
#[derive(Clone, Debug)]
pub struct LogMetrics {
    /// Seconds from an append group's arrival at the log to its durable answer.
    pub append_seconds: Histogram,
    /// Seconds one commit took (flush and `fdatasync`, or the stream's acks).
    pub commit_seconds: Histogram,
    /// Append groups one commit made durable.
    pub commit_groups: Histogram,
    /// Seconds an append group waited in the log's queue before the stager took it.
    pub queue_seconds: Histogram,
    /// Seconds the stager spent on one batch: checking and encoding its groups, then sled's
    /// `apply_batch`.
    pub batch_seconds: Histogram,
    /// sled writes (puts and removals, frames included) the stager staged for its batches.
    pub sled_writes: Counter,
}

/// 0.1 ms .. ~3.3 s: a commit on a local disk is ~1 ms; seconds mean a stalled disk or a
/// stream without quorum.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for LogMetrics {
    fn default() -> LogMetrics {
        LogMetrics {
            append_seconds: seconds(),
            commit_seconds: seconds(),
            // 1 .. 4096 groups (the stager's batch is at most `log.batch_groups_max`).
            commit_groups: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            queue_seconds: seconds(),
            batch_seconds: seconds(),
            sled_writes: Counter::default(),
        }
    }
}

impl EventLog {
    /// The log's timings (see the module's docs); the edge registers them for `/metrics`.
    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.shared.metrics
    }
}

/// Where an append's answer goes, and when the append reached the log.
pub(super) struct Reply {
    tx: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    since: Instant,
}

impl Reply {
    /// A reply for an append arriving now, and where its answer will be read.
    pub(super) fn new() -> (Reply, oneshot::Receiver<Result<AppendOutcome, AppendError>>) {
        let (tx, rx) = oneshot::channel();
        let since = Instant::now();
        (Reply { tx, since }, rx)
    }

    /// Records, as the stager takes the append, how long it waited in the queue.
    pub(super) fn taken(&self, metrics: &LogMetrics) {
        let waited = self.since.elapsed().as_secs_f64();
        metrics.queue_seconds.observe(waited);
    }

    /// Answers the caller and records the append's time in the log. A caller that gave up
    /// waiting is not an error: its group is durable (or failed) anyway.
    pub(super) fn send(self, result: Result<AppendOutcome, AppendError>, metrics: &LogMetrics) {
        metrics
            .append_seconds
            .observe(self.since.elapsed().as_secs_f64());
        let _ = self.tx.send(result);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use crate::events::log::fixtures::ada_group;
    use crate::events::log::{AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions};
    use crate::tenancy::SessionId;

    fn rendered(log: &EventLog) -> String {
        let mut registry = Registry::default();
        let m = log.metrics().clone();
        registry.register("log_append_seconds", "", m.append_seconds);
        registry.register("log_commit_seconds", "", m.commit_seconds);
        registry.register("log_commit_groups", "", m.commit_groups);
        registry.register("log_queue_seconds", "", m.queue_seconds);
        registry.register("log_batch_seconds", "", m.batch_seconds);
        registry.register("log_sled_writes", "", m.sled_writes);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    /// Ada's session start in session `s{i}`, as message `m{i}`.
    fn start(i: usize) -> AppendGroup {
        AppendGroup {
            session: SessionId::parse(&format!("s{i}")).unwrap(),
            idempotency: Some(Idempotency {
                message_id: format!("m{i}"),
                ack: Vec::new(),
            }),
            ..ada_group(0, String::new(), "", 1000)
        }
    }

    /// Every answered append is one observation of its time in the log and of its wait in the
    /// queue, every batch one of the stager's time, and the commits that made them durable
    /// account for every appended group; a retry answered from its stored ack is timed too (it
    /// waited in the log's queue) but commits no group.
    #[test]
    fn each_answered_append_is_timed_and_the_commits_count_its_groups() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
        let before = rendered(&log);
        assert!(before.contains("log_append_seconds_count 0"), "{before}");
        assert!(before.contains("log_commit_groups_count 0"), "{before}");
        for i in 0..3 {
            let outcome = log.append_blocking(start(i)).unwrap();
            assert!(matches!(outcome, AppendOutcome::Appended(_)));
        }
        let retry = log.append_blocking(start(0)).unwrap();
        assert!(matches!(retry, AppendOutcome::Duplicate(_)));
        let after = rendered(&log);
        assert!(after.contains("log_append_seconds_count 4"), "{after}");
        assert!(after.contains("log_queue_seconds_count 4"), "{after}");
        assert!(after.contains("log_batch_seconds_count 4"), "{after}");
        // Each blocking append waited for its own commit: three of one group each, then the
        // retry's, of none.
        assert!(after.contains("log_commit_seconds_count 4"), "{after}");
        assert!(after.contains("log_commit_groups_count 4"), "{after}");
        assert!(after.contains("log_commit_groups_sum 3.0"), "{after}");
    }

    /// The sled writes the stager staged so far.
    fn writes(log: &EventLog) -> u64 {
        log.metrics().sled_writes.get()
    }

    /// A group of an open session costs its frame and its session index entry, plus its
    /// idempotency record when it has a message id; a retry answered from that record, none.
    /// (Each blocking append is a batch of its own, so no frame is shared here.)
    #[test]
    fn sled_writes_count_the_keys_of_each_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
        assert_eq!(writes(&log), 0);
        log.append_blocking(ada_group(0, String::new(), "", 1000))
            .unwrap();
        // A start also writes the session's meta and its open-session entry.
        let started = writes(&log);
        assert!(started >= 4, "{started}");
        let with_id = || AppendGroup {
            idempotency: Some(Idempotency {
                message_id: "m1".into(),
                ack: Vec::new(),
            }),
            ..ada_group(1, "m1".into(), "hi", 1001)
        };
        let outcome = log.append_blocking(with_id()).unwrap();
        assert!(matches!(outcome, AppendOutcome::Appended(_)));
        assert_eq!(writes(&log) - started, 3);
        log.append_blocking(ada_group(2, String::new(), "again", 1002))
            .unwrap();
        assert_eq!(writes(&log) - started, 5);
        let retry = log.append_blocking(with_id()).unwrap();
        assert!(matches!(retry, AppendOutcome::Duplicate(_)));
        assert_eq!(writes(&log) - started, 5);
        let text = rendered(&log);
        assert!(
            text.contains(&format!("log_sled_writes_total {}", started + 5)),
            "{text}"
        );
    }
}
