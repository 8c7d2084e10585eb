//! The table's rows of each scenario's report: the figure, the measured value, the target of
//! the issue that asked for it, and whether it was met.

use super::{Row, Verdict};
use crate::{cluster, edge, history, log, overload, runtime};

/// The session count the idle-memory target is stated at; smaller runs are shown, not judged.
pub(super) const IDLE_TARGET_SESSIONS: usize = 100_000;

pub(super) fn row(
    scenario: &'static str,
    figure: impl Into<String>,
    measured: impl Into<String>,
    target: impl Into<String>,
    met: Option<bool>,
) -> Row {
    Row {
        scenario,
        figure: figure.into(),
        measured: measured.into(),
        target: target.into(),
        verdict: match met {
            Some(true) => Verdict::Hit,
            Some(false) => Verdict::Missed,
            None => Verdict::Info,
        },
    }
}

/// `12,345` style: figures are read by people.
pub(super) fn count(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU seconds spent over `seconds` of wall time, as cores kept busy (0 when no time passed).
pub(super) fn cores(cpu_s: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        cpu_s / seconds
    } else {
        0.0
    }
}

pub(super) fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Issue #13's targets for the log: durable appends per second at 512 appenders, the best pass
/// against raw sled of the same run, and the log's disk bytes per encoded event byte.
const LOG_EVENTS_PER_S_TARGET: f64 = 200_000.0;
const LOG_RATIO_TO_SLED_TARGET: f64 = 2.0;
const DISK_BYTES_RATIO_TARGET: f64 = 2.0;

pub(super) fn log_rows(r: &log::LogBenchReport) -> Vec<Row> {
    let mut rows = vec![row(
        "log",
        format!(
            "raw sled baseline ({} events/batch)",
            r.baseline.batch_events
        ),
        format!("{} events/s", count(r.baseline.events_per_s)),
        "",
        None,
    )];
    rows.push(row(
        "log",
        format!(
            "fdatasync floor ({} events/batch, plain file)",
            r.floor.batch_events
        ),
        format!("{} events/s", count(r.floor.events_per_s)),
        "",
        None,
    ));
    let closed = r.runs.iter().filter(|x| x.paced_groups_per_s.is_none());
    if let Some(best) = closed
        .clone()
        .max_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s))
    {
        rows.push(row(
            "log",
            format!("best durable append ({} appenders)", best.appenders),
            format!(
                "{} events/s, ack p99 {}",
                count(best.events_per_s),
                ms(best.ack_p99_us)
            ),
            "",
            None,
        ));
    }
    if let Some(at512) = closed.clone().find(|x| x.appenders == 512) {
        rows.push(row(
            "log",
            "durable append, 512 appenders",
            format!("{} events/s", count(at512.events_per_s)),
            format!("≥ {} events/s", count(LOG_EVENTS_PER_S_TARGET)),
            Some(at512.events_per_s >= LOG_EVENTS_PER_S_TARGET),
        ));
    }
    rows.push(row(
        "log",
        "best / raw sled (same run)",
        format!("{:.2}×", r.ratio_to_baseline),
        format!("≥ {LOG_RATIO_TO_SLED_TARGET}×"),
        Some(r.ratio_to_baseline >= LOG_RATIO_TO_SLED_TARGET),
    ));
    if let Some(best) = closed.max_by(|a, b| a.events.cmp(&b.events)) {
        let ratio = best.disk_bytes_per_event / r.event_bytes_avg.max(1.0);
        rows.push(row(
            "log",
            format!("disk bytes per event ({} appenders)", best.appenders),
            format!(
                "{} bytes = {ratio:.2}× the encoded event ({} bytes)",
                count(best.disk_bytes_per_event),
                count(r.event_bytes_avg)
            ),
            format!("≤ {DISK_BYTES_RATIO_TARGET}×"),
            Some(ratio <= DISK_BYTES_RATIO_TARGET),
        ));
        rows.push(row(
            "log",
            format!(
                "sled writes per append group ({} appenders)",
                best.appenders
            ),
            format!("{:.2}", best.sled_writes_per_group),
            "",
            None,
        ));
    }
    rows.push(row(
        "log",
        "best / fdatasync floor (same run)",
        format!("{:.2}×", r.ratio_to_floor),
        "",
        None,
    ));
    if let Some(paced) = r.runs.iter().find(|x| x.paced_groups_per_s.is_some()) {
        rows.push(row(
            "log",
            "ack p99 at half of peak",
            format!("{} (p50 {})", ms(paced.ack_p99_us), ms(paced.ack_p50_us)),
            "≤ 2 ms",
            Some(paced.ack_p99_us <= 2_000),
        ));
    }
    rows
}

/// Failover target of issue #12: a killed node's tenants ack again within this.
const FAILOVER_TARGET_MS: f64 = 10_000.0;

pub(super) fn cluster_rows(r: &cluster::ClusterBenchReport) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in &r.backends {
        let (what, anchor) = match b.servers {
            0 => ("sled backend".to_owned(), None),
            1 => (
                "JetStream, 1 node".to_owned(),
                Some(cluster::ANCHOR_ONE_NODE),
            ),
            n => (
                format!("JetStream, {n} nodes R{}", b.replicas),
                Some(cluster::ANCHOR_R3),
            ),
        };
        let figure = match anchor {
            None => format!("{what}, best ({} appenders)", b.best_appenders),
            Some(anchor) => format!(
                "{what}, best ({} appenders; peers {anchor})",
                b.best_appenders
            ),
        };
        let events = format!(
            "{} events/s, ack p99 {}",
            count(b.best_events_per_s),
            ms(b.best_ack_p99_us)
        );
        let (measured, target, met) = match anchor {
            None => (events, String::new(), None),
            Some(_) => (
                format!("{:.2}× sled: {events}", b.ratio_to_sled),
                "≥ 1.00× sled".to_owned(),
                Some(b.ratio_to_sled >= 1.0),
            ),
        };
        rows.push(row("cluster", figure, measured, target, met));
    }
    if let Some(first) = r.failover.first() {
        // A trial with no ack in time counts as the worst.
        let worst = r
            .failover
            .iter()
            .map(|f| f.kill_to_ack_ms.unwrap_or(f64::INFINITY))
            .fold(0.0, f64::max);
        let trials: Vec<String> = r
            .failover
            .iter()
            .map(|f| match f.kill_to_ack_ms {
                Some(ms) => format!(
                    "{:.2} s {}→{}",
                    ms / 1000.0,
                    f.killed,
                    f.new_leader.as_deref().unwrap_or("?")
                ),
                None => format!(
                    "none in {} s after {}",
                    cluster::FAILOVER_WAIT_MAX.as_secs(),
                    f.killed
                ),
            })
            .collect();
        let measured = if worst.is_finite() {
            format!("worst {:.2} s: {}", worst / 1000.0, trials.join(", "))
        } else {
            format!("no ack: {}", trials.join(", "))
        };
        rows.push(row(
            "cluster",
            format!(
                "failover: R3 leader killed → next ack ({} appenders, {} trials)",
                first.appenders,
                r.failover.len()
            ),
            measured,
            "≤ 10 s",
            Some(worst <= FAILOVER_TARGET_MS),
        ));
    }
    rows
}

pub(super) fn runtime_rows(r: &runtime::RuntimeBenchReport, baseline: Option<f64>) -> Vec<Row> {
    let mut rows = Vec::new();
    let closed = r.runs.iter().filter(|x| x.paced_msgs_per_s.is_none());
    if let Some(best) = closed.max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s)) {
        rows.push(row(
            "runtime",
            format!("in-process end to end ({} clients)", best.clients),
            format!(
                "{} msgs/s ({} events/s)",
                count(best.msgs_per_s),
                count(best.events_per_s)
            ),
            "≥ 50,000 msgs/s",
            Some(best.msgs_per_s >= 50_000.0),
        ));
        if let Some(base) = baseline.filter(|b| *b > 0.0) {
            let ratio = best.events_per_s / base;
            rows.push(row(
                "runtime",
                "events/s / raw sled (same run)",
                format!("{ratio:.2}×"),
                "≥ 0.5×",
                Some(ratio >= 0.5),
            ));
        }
    }
    if let Some(paced) = r.runs.iter().find(|x| x.paced_msgs_per_s.is_some()) {
        rows.push(row(
            "runtime",
            "ack p99 at half of peak",
            format!("{} (p50 {})", ms(paced.ack_p99_us), ms(paced.ack_p50_us)),
            "≤ 2 ms",
            Some(paced.ack_p99_us <= 2_000),
        ));
        rows.push(row(
            "runtime",
            "thread switches per message at half of peak (all threads)",
            format!("{:.1}", paced.switches_per_msg),
            "",
            None,
        ));
        if let Some(delay) = paced.client_wake_delay_p99_us {
            rows.push(wake_delay_row("runtime", delay));
        }
    }
    if let Some(idle) = &r.idle_memory {
        rows.push(row(
            "runtime",
            format!(
                "memory per live idle session ({})",
                count(idle.sessions as f64)
            ),
            // The figure judged first; the halves tell the sessions' own cost (second) from
            // the step's one-off costs.
            format!(
                "{} bytes (whole step {}; first half {}, second {})",
                count(idle.judged_bytes_per_session()),
                count(idle.bytes_per_session),
                count(idle.first_half_bytes_per_session),
                count(idle.second_half_bytes_per_session)
            ),
            "≤ 1,536 bytes at 100,000",
            // The target is stated at 100k sessions: at a few thousand the figure is mostly the
            // allocator reusing what the warm-up freed, not what a session costs.
            // Judged on the dearer of the whole and its second half (see the method).
            (idle.sessions >= IDLE_TARGET_SESSIONS)
                .then_some(idle.judged_bytes_per_session() <= 1536.0),
        ));
    }
    rows
}

/// The load generator's own wake-up delay at half load (p99): part of that pass's latency
/// that is the client's, not the server's (`harness::wake_delay_us`).
fn wake_delay_row(scenario: &'static str, delay_us: u64) -> Row {
    row(
        scenario,
        "load generator's own wake-up delay at half load (p99; inside the p99 above)",
        ms(delay_us),
        "",
        None,
    )
}

pub(super) fn edge_rows(scenario: &'static str, r: &edge::EdgeBenchReport) -> Vec<Row> {
    let unit = if scenario == "http" {
        "req/s"
    } else {
        "msgs/s"
    };
    let mut rows = vec![row(
        scenario,
        format!("{} acks, closed loop", scenario.to_uppercase()),
        format!("{} {unit}", count(r.verdict.peak_ok_per_s)),
        format!("≥ {} {unit}", count(r.targets.ok_per_s_min)),
        Some(r.verdict.throughput_met),
    )];
    if let Some(outside) = &r.outside {
        rows.push(outside_row(scenario, outside, r.verdict.peak_ok_per_s));
    }
    if let Some(p99) = r.verdict.paced_p99_us {
        rows.push(row(
            scenario,
            format!("{} p99 at half load", scenario.to_uppercase()),
            ms(p99),
            r.targets
                .paced_p99_us_max
                .map_or(String::new(), |max| format!("≤ {}", ms(max))),
            r.verdict.paced_p99_met,
        ));
    }
    if let Some(paced) = r.runs.iter().find(|x| x.paced_per_s.is_some()) {
        rows.push(row(
            scenario,
            "server thread switches per ack at half load",
            format!("{:.1}", paced.server_switches_per_ok),
            "",
            None,
        ));
        if let Some(delay) = paced.client_wake_delay_p99_us {
            rows.push(wake_delay_row(scenario, delay));
        }
    }
    rows
}

/// The outside tool's closed loop on the same server, beside the bench's own peak.
fn outside_row(scenario: &'static str, outside: &edge::wrk::Outside, ours_per_s: f64) -> Row {
    let measured = match outside {
        edge::wrk::Outside::Measured(w) => {
            let errors = w.non_2xx + w.socket_errors;
            format!(
                "{} req/s = {:.2}× the bench's client ({}, {} connections, {} thread; p99 {}{})",
                count(w.ok_per_s),
                w.ok_per_s / ours_per_s.max(f64::MIN_POSITIVE),
                w.version,
                w.connections,
                w.threads,
                ms(w.latency_p99_us),
                if errors > 0 {
                    format!("; {} non-2xx, {} socket errors", w.non_2xx, w.socket_errors)
                } else {
                    String::new()
                }
            )
        }
        edge::wrk::Outside::Missing { reason } => format!("not measured: {reason}"),
    };
    row(
        scenario,
        "HTTP acks, closed loop, by wrk (outside anchor, same server)",
        measured,
        "",
        None,
    )
}

pub(super) fn history_rows(r: &history::HistoryBenchReport) -> Vec<Row> {
    let mut rows = vec![
        row(
            "history",
            format!(
                "read-model rebuild ({} events, {} tenants at once)",
                count(r.rebuild.events as f64),
                r.rebuild_jobs
            ),
            format!("{} events/s", count(r.rebuild.events_per_s)),
            "≥ 2,000,000 events/s",
            Some(r.rebuild.events_per_s >= 2_000_000.0),
        ),
        row(
            "history",
            "read-model rebuild, one tenant at a time (same run)",
            format!(
                "{} events/s ({} tenants at once: {:.2}×)",
                count(r.rebuild_one_job.events_per_s),
                r.rebuild_jobs,
                r.rebuild.events_per_s / r.rebuild_one_job.events_per_s.max(f64::MIN_POSITIVE)
            ),
            "",
            None,
        ),
        row(
            "history",
            "audit export (JSONL + chain), largest tenant",
            format!("{:.1} MB/s", r.export_largest_tenant.mb_per_s),
            "≥ 150 MB/s",
            Some(r.export_largest_tenant.mb_per_s >= 150.0),
        ),
        row(
            "history",
            format!(
                "replay of a {}-event session",
                count(r.replay_long_session.events as f64)
            ),
            format!("{} events/s", count(r.replay_long_session.events_per_s)),
            "",
            None,
        ),
        row(
            "history",
            "replay of the largest tenant's other sessions, one after another",
            format!(
                "{} events/s ({} events)",
                count(r.replay_sessions.events_per_s),
                count(r.replay_sessions.events as f64)
            ),
            "",
            None,
        ),
    ];
    if let Some(s) = &r.sealed {
        rows.push(row(
            "history",
            format!(
                "sealed log (the server's default) / plain: {} events of the same sessions, same run",
                count(s.plain_rebuild.events as f64)
            ),
            format!(
                "rebuild {:.2}× ({} vs {} events/s), export {:.2}× ({} vs {} events/s; {:.1} vs {:.1} MB/s); one sealed part opens in {:.0} ns",
                s.rebuild_ratio(),
                count(s.sealed_rebuild.events_per_s),
                count(s.plain_rebuild.events_per_s),
                s.export_ratio(),
                count(s.sealed_export.events_per_s),
                count(s.plain_export.events_per_s),
                s.sealed_export.mb_per_s,
                s.plain_export.mb_per_s,
                s.open_ns
            ),
            "",
            None,
        ));
    }
    if let Some(cold) = &r.cold_start {
        rows.push(row(
            "history",
            "`serve` cold start to /healthz (median)",
            format!("{:.0} ms", cold.healthz_ms),
            "< 2 s",
            Some(cold.healthz_ms < 2_000.0),
        ));
    }
    rows
}

pub(super) fn overload_rows(r: &overload::OverloadBenchReport) -> Vec<Row> {
    let o = &r.overload;
    let n = &r.neighbour;
    let others_errors = n.others_failed();
    let mut rows = vec![
        row(
            "overload",
            format!(
                "goodput at {:.0}× capacity ({} offered/s)",
                o.run.offered_per_s / o.peak_ok_per_s.max(1.0),
                count(o.run.offered_per_s)
            ),
            format!(
                "{} acks/s = {:.0}% of peak {}",
                count(o.run.ok_per_s),
                o.goodput_ratio * 100.0,
                count(o.peak_ok_per_s)
            ),
            "≥ 90% of peak",
            Some(o.goodput_ratio >= 0.9),
        ),
        row(
            "overload",
            "refusals (429/503): p99 time to answer",
            format!(
                "{} ({} refused/s)",
                ms(o.run.refused_p99_us),
                count(o.run.refused_per_s)
            ),
            "≤ 50 ms",
            Some(o.run.refused > 0 && o.run.refused_p99_us <= 50_000),
        ),
        row(
            "overload",
            "load generator's own send delay at 3× (p99; inside the p99 above)",
            format!(
                "{} (generator {:.2} cores, server {:.2})",
                ms(o.run.send_delay_p99_us),
                cores(o.load_cpu_s, o.run.seconds),
                cores(o.server_cpu_s, o.run.seconds),
            ),
            "",
            None,
        ),
        row(
            "overload",
            "server RSS over the overload (2nd half max / 1st half max)",
            format!(
                "{:.2} ({} → {} MiB)",
                o.rss.plateau_ratio,
                o.rss.start_bytes >> 20,
                o.rss.end_bytes >> 20
            ),
            "plateaus (≤ 1.10)",
            Some(o.rss.plateau_ratio > 0.0 && o.rss.plateau_ratio <= 1.10),
        ),
    ];
    if let Some(m) = n.median() {
        let ratios: Vec<String> = n
            .rounds
            .iter()
            .map(|r| format!("{:.2}", r.others_p99_ratio))
            .collect();
        rows.push(neighbour_row(m, &ratios));
        rows.push(row(
            "overload",
            "neighbours' load generator's own send delay (p99; inside their p99s above)",
            format!(
                "{} alone, {} beside the noisy tenant's (its own thread; the median pair)",
                ms(m.others_alone.send_delay_p99_us),
                ms(m.others_with_noisy.send_delay_p99_us),
            ),
            "",
            None,
        ));
    }
    rows.push(row(
        "overload",
        "neighbours' errors while one tenant floods",
        format!(
            "{others_errors} (noisy tenant refused {})",
            count(n.rounds.iter().map(|r| r.noisy.refused).sum::<u64>() as f64)
        ),
        "0",
        Some(others_errors == 0),
    ));
    rows
}

/// The median pair's ratio, p99s and CPU, and every pair's ratio in the order run.
fn neighbour_row(m: &overload::NeighbourRound, ratios: &[String]) -> Row {
    row(
        "overload",
        "neighbours' p99 with one tenant at 10× quota / alone",
        format!(
            "{:.2}× (median of {} alternated pairs: {}; that pair {} vs {}; server CPU {:.2} → \
             {:.2} cores, load {:.2} → {:.2})",
            m.others_p99_ratio,
            ratios.len(),
            ratios.join(", "),
            ms(m.others_with_noisy.ok_p99_us),
            ms(m.others_alone.ok_p99_us),
            cores(m.cpu_alone.server_s, m.others_alone.seconds),
            cores(m.cpu_with_noisy.server_s, m.others_with_noisy.seconds),
            cores(m.cpu_alone.load_s, m.others_alone.seconds),
            cores(m.cpu_with_noisy.load_s, m.others_with_noisy.seconds),
        ),
        "≤ 1.20×",
        Some(m.others_p99_ratio <= 1.2),
    )
}
