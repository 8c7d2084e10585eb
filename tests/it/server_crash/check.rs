//! The crash test's checker: the stopped server's log against every ack.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use tenantry::audit::verify::verify_log;
use tenantry::events::keyring::Keyring;
use tenantry::events::log::{EventLog, LogOptions, Replica, ReplicaOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::projector::Projector;
use tenantry::tenancy::TenantId;

use super::{text, Ack, Backend, STREAM, TENANTS};

/// Where the log to check is: the sled files of a data dir, or a JetStream stream (read into
/// the cache under the data dir, which opening brings to what the stream holds).
pub(crate) enum LogSpec {
    Sled,
    JetStream {
        url: String,
        stream: &'static str,
        replicas: usize,
    },
}

impl LogSpec {
    /// The log of the crash test's single server on `backend`.
    pub(crate) fn single(backend: Backend, nats_port: u16) -> LogSpec {
        match backend {
            Backend::Sled => LogSpec::Sled,
            Backend::JetStream => LogSpec::JetStream {
                url: format!("nats://127.0.0.1:{nats_port}"),
                stream: STREAM,
                replicas: 1,
            },
        }
    }
}

fn open_log(data: &Path, spec: &LogSpec) -> EventLog {
    let dir = data.join("log");
    match spec {
        LogSpec::Sled => {
            let opts = LogOptions {
                keyring: Keyring::for_data_dir(data, false).unwrap(),
                ..LogOptions::default()
            };
            EventLog::open(&dir, &opts).unwrap()
        }
        LogSpec::JetStream {
            url,
            stream,
            replicas,
        } => {
            let opts = ReplicaOptions {
                stream: (*stream).into(),
                replicas: *replicas,
                node: "check".into(),
                cluster: false,
            };
            let url = url.clone();
            let replica = Replica::connect(&opts, || async move {
                let urls: Vec<async_nats::ServerAddr> =
                    url.split(',').map(|u| u.parse().unwrap()).collect();
                async_nats::connect(urls).await.map_err(|e| e.to_string())
            })
            .unwrap();
            EventLog::open_replicated(&dir, &LogOptions::default(), replica).unwrap()
        }
    }
}

#[derive(Default)]
pub(crate) struct Report {
    /// Acked messages that are not in the log.
    pub(crate) lost: Vec<String>,
    /// Every other broken promise: duplicates, gaps, chain, isolation, projections.
    pub(crate) problems: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} acked messages lost, {} other problems",
            self.lost.len(),
            self.problems.len()
        )?;
        for line in self.lost.iter().chain(&self.problems).take(20) {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Checks the (stopped) server's data dir against every ack recorded so far.
pub(crate) fn check(data: &Path, acks: &[Ack], spec: &LogSpec) -> Report {
    let mut report = Report::default();
    let log = open_log(data, spec);
    for d in log.damaged() {
        report.problems.push(format!(
            "tenant {} damaged at {}: {}",
            d.tenant, d.position, d.detail
        ));
    }
    let projector = Projector::new(&log).unwrap();
    for tenant in TENANTS {
        let t = TenantId::parse(tenant).unwrap();
        let verdict = verify_log(&log, &t).unwrap();
        if !verdict.is_intact() {
            report
                .problems
                .push(format!("tenant {tenant}: verify: {verdict}"));
        }
        // message id -> (session, seq) of its MessageReceived.
        let mut stored: HashMap<String, (String, u64)> = HashMap::new();
        let mut session_last: BTreeMap<String, u64> = BTreeMap::new();
        let mut tenant_seq = 0;
        for e in log.tenant(&t).events(1..=u64::MAX) {
            let e = match e {
                Ok(e) => e.event,
                Err(err) => {
                    report.problems.push(format!(
                        "tenant {tenant}: unreadable after {tenant_seq}: {err}"
                    ));
                    break;
                }
            };
            let at = format!(
                "tenant {tenant} session {} seq {} tenant_seq {}",
                e.session, e.seq, e.tenant_seq
            );
            if e.tenant != t {
                report
                    .problems
                    .push(format!("{at}: holds an event of tenant {}", e.tenant));
            }
            if e.tenant_seq != tenant_seq + 1 {
                report
                    .problems
                    .push(format!("{at}: tenant_seq gap after {tenant_seq}"));
            }
            tenant_seq = e.tenant_seq;
            let key = format!("{}/{}/{}", e.env, e.team, e.session);
            let last = session_last.entry(key).or_insert(0);
            if e.seq != *last + 1 {
                report
                    .problems
                    .push(format!("{at}: session seq gap after {last}"));
            }
            *last = e.seq;
            if let EventKind::MessageReceived {
                message_id,
                text: body,
                ..
            } = &e.kind
            {
                if body != &text(tenant, message_id) {
                    report.problems.push(format!(
                        "{at}: message {message_id} carries another tenant's text {body:?}"
                    ));
                }
                let here = (e.session.to_string(), e.seq);
                if let Some(first) = stored.insert(message_id.clone(), here) {
                    report.problems.push(format!(
                        "{at}: message {message_id} stored twice (first at session {} seq {})",
                        first.0, first.1
                    ));
                }
            }
        }
        for ack in acks.iter().filter(|a| a.tenant == tenant) {
            match stored.get(&ack.message_id) {
                None => report.lost.push(format!("acked, not in the log: {ack}")),
                Some((session, seq)) if (session, *seq) != (&ack.session, ack.seq) => {
                    report.problems.push(format!(
                        "acked {ack}, stored at session {session} seq {seq}"
                    ));
                }
                Some(_) => {}
            }
        }
        // The read models the server folded (and what it left at the kill) must equal a rebuild.
        // A fold that finds the log inconsistent (e.g. a session's events twice) is a problem
        // to report beside what the reads above found, not a panic that hides them.
        if let Err(e) = projector.catch_up(&log, &t, &mut |_| {}) {
            report
                .problems
                .push(format!("tenant {tenant}: folding the read models: {e}"));
            continue;
        }
        let folded = projector.dump(&t).unwrap();
        projector.rebuild(&log, &t, &mut |_| {}).unwrap();
        let rebuilt = projector.dump(&t).unwrap();
        if folded != rebuilt {
            let first = folded
                .iter()
                .zip(&rebuilt)
                .find(|(a, b)| a != b)
                .map(|(a, _)| String::from_utf8_lossy(&a.0).into_owned());
            report.problems.push(format!(
                "tenant {tenant}: read models ({} entries) differ from a rebuild ({} entries), \
                 first at key {first:?}",
                folded.len(),
                rebuilt.len()
            ));
        }
    }
    report
}
