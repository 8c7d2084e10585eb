use super::rows::{count, row};
use super::*;

fn sample_rows() -> Vec<Row> {
    vec![
        row(
            "log",
            "best / raw sled (same run)",
            "0.89×",
            "≥ 0.5×",
            Some(true),
        ),
        row(
            "http",
            "HTTP acks",
            "9,442 req/s",
            "≥ 20,000 req/s",
            Some(false),
        ),
        row("history", "replay", "236,000 events/s", "", None),
    ]
}

#[test]
fn counts_are_grouped_by_thousands() {
    assert_eq!(count(0.0), "0");
    assert_eq!(count(999.4), "999");
    assert_eq!(count(1_000.0), "1,000");
    assert_eq!(count(104_099.2), "104,099");
    assert_eq!(count(10_100_065.0), "10,100,065");
    assert_eq!(count(-5.0), "0");
}

#[test]
fn the_table_marks_hits_misses_and_plain_figures() {
    let table = markdown_table(&sample_rows());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[2].ends_with("| ≥ 0.5× | hit |"), "{}", lines[2]);
    assert!(lines[3].ends_with("| **missed** |"), "{}", lines[3]);
    assert!(lines[4].ends_with("| – |  |"), "{}", lines[4]);
}

#[test]
fn only_the_text_between_the_markers_is_replaced() {
    let doc =
        format!("# Benchmarks\nintro\n{TABLE_BEGIN}\nold table\n{TABLE_END}\n## Details\nkept\n");
    let new = replace_section(&doc, "NEW\n").unwrap();
    assert_eq!(
        new,
        format!("# Benchmarks\nintro\n{TABLE_BEGIN}\nNEW\n{TABLE_END}\n## Details\nkept\n")
    );
    // Idempotent: regenerating gives the same document.
    assert_eq!(replace_section(&new, "NEW\n").unwrap(), new);
}

#[test]
fn missing_markers_are_an_error_that_names_them() {
    let err = replace_section("# no markers\n", "x").unwrap_err();
    assert!(err.contains("bench-table:begin"), "{err}");
    let err = replace_section(&format!("{TABLE_BEGIN}\nno end\n"), "x").unwrap_err();
    assert!(err.contains("bench-table:end"), "{err}");
}

#[test]
fn update_markdown_rewrites_the_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BENCHMARKS.md");
    std::fs::write(
        &path,
        format!("top\n{TABLE_BEGIN}\nold\n{TABLE_END}\nbottom\n"),
    )
    .unwrap();
    let report = SuiteReport {
        tenantry_version: "0.0.0",
        size: Size::Quick,
        started_unix_s: 0,
        seconds: 12.0,
        machine: Machine {
            cpu: "Test CPU".to_owned(),
            cores: 2,
            memory_gib: 24.0,
            kernel: "6.1".to_owned(),
        },
        rows: sample_rows(),
        scenarios: BTreeMap::new(),
    };
    update_markdown(&path, &report).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("top\n"));
    assert!(text.ends_with(&format!("{TABLE_END}\nbottom\n")));
    assert!(!text.contains("\nold\n"));
    assert!(text.contains("`tenantry-bench --quick` (12 s)"), "{text}");
    assert!(text.contains("| http | HTTP acks | 9,442 req/s | ≥ 20,000 req/s | **missed** |"));
    // A file without markers is left alone.
    let bare = dir.path().join("bare.md");
    std::fs::write(&bare, "nothing here\n").unwrap();
    assert!(update_markdown(&bare, &report).is_err());
    assert_eq!(std::fs::read_to_string(&bare).unwrap(), "nothing here\n");
}

#[test]
fn the_log_scenario_reports_the_fdatasync_floor_beside_raw_sled() {
    let dir = tempfile::tempdir().unwrap();
    let opts = log::LogBenchOptions {
        appenders: vec![1],
        log: tenantry::events::log::LogOptions::default(),
        duration: std::time::Duration::from_millis(100),
        paced_fraction: 0.0,
    };
    let report = log::run(dir.path(), &opts, &mut |_| {}).unwrap();
    // The floor wrote every event's bytes (and a length each) to its file, fdatasynced.
    assert!(report.floor.events > 0, "{:?}", report.floor);
    assert!(
        report.floor.disk_bytes_per_event >= report.event_bytes_avg,
        "{:?} vs {} bytes/event",
        report.floor,
        report.event_bytes_avg
    );
    assert!(report.ratio_to_floor > 0.0);
    let rows = log_rows(&report);
    let figures: Vec<&str> = rows.iter().map(|r| r.figure.as_str()).collect();
    assert!(
        figures
            .iter()
            .any(|f| f.starts_with("fdatasync floor (") && f.ends_with("events/batch, plain file)")),
        "{figures:?}"
    );
    assert!(
        figures.contains(&"best / fdatasync floor (same run)"),
        "{figures:?}"
    );
    // Issue #13's log targets, and the disk bytes per event against the encoded event.
    let disk = rows
        .iter()
        .find(|r| r.figure.starts_with("disk bytes per event ("))
        .expect("a disk bytes row");
    assert_eq!(disk.target, "≤ 2×");
    assert!(
        disk.measured.contains("× the encoded event ("),
        "{}",
        disk.measured
    );
    let ratio = rows
        .iter()
        .find(|r| r.figure == "best / raw sled (same run)")
        .expect("a ratio row");
    assert_eq!(ratio.target, "≥ 2×");
}

fn backend_runs(
    backend: &'static str,
    servers: usize,
    events_per_s: f64,
    ratio: f64,
) -> cluster::BackendRuns {
    cluster::BackendRuns {
        backend,
        servers,
        replicas: servers,
        runs: Vec::new(),
        best_appenders: 512,
        best_events_per_s: events_per_s,
        best_ack_p99_us: 4_000,
        ratio_to_sled: ratio,
    }
}

fn failover(killed: &str, kill_to_ack_ms: Option<f64>) -> cluster::FailoverRun {
    cluster::FailoverRun {
        appenders: 64,
        killed: killed.to_owned(),
        killed_at_unix_ms: 1_796_000_000_000,
        new_leader: Some("n1".to_owned()),
        kill_to_ack_ms,
        retries: 3,
        groups: 100,
        seconds: 5.0,
        ack_p99_us: 1_000,
        ack_max_us: 4_000_000,
    }
}

/// `--failover-only`: no backend was measured, so the failover row is the only one.
#[test]
fn a_failover_only_report_has_only_the_failover_row() {
    let report = cluster::ClusterBenchReport {
        scenario: "cluster_log_append",
        nats_server: "nats-server: v2.15.1".to_owned(),
        group_events: 4,
        tenants: 8,
        backends: Vec::new(),
        failover: vec![
            failover("n2", Some(12_000.0)),
            failover("n3", Some(6_000.0)),
        ],
    };
    let rows = cluster_rows(&report);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].figure.contains("2 trials"), "{}", rows[0].figure);
    assert_eq!(rows[0].verdict, Verdict::Missed);
}

#[test]
fn cluster_rows_judge_jetstream_against_sled_of_the_same_run_and_the_failover_time() {
    let report = cluster::ClusterBenchReport {
        scenario: "cluster_log_append",
        nats_server: "nats-server: v2.15.1".to_owned(),
        group_events: 4,
        tenants: 8,
        backends: vec![
            backend_runs("sled", 0, 50_000.0, 1.0),
            backend_runs("jetstream-1", 1, 40_000.0, 0.8),
            backend_runs("jetstream-r3", 3, 55_000.0, 1.1),
        ],
        failover: vec![failover("n2", Some(4_160.0)), failover("n3", Some(2_500.0))],
    };
    let rows = cluster_rows(&report);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.scenario == "cluster"));
    // The sled row is the reference: a figure, no target.
    assert_eq!(rows[0].verdict, Verdict::Info);
    assert!(
        rows[0].figure.starts_with("sled backend"),
        "{}",
        rows[0].figure
    );
    assert_eq!(rows[0].measured, "50,000 events/s, ack p99 4.00 ms");
    // Each JetStream row: its ratio to sled, the target, the peers' figures as anchor.
    assert_eq!(rows[1].verdict, Verdict::Missed);
    assert!(rows[1].measured.starts_with("0.80× sled: 40,000 events/s"));
    assert!(
        rows[1].figure.contains(cluster::ANCHOR_ONE_NODE),
        "{}",
        rows[1].figure
    );
    assert_eq!(rows[2].verdict, Verdict::Hit);
    assert!(rows[2].figure.starts_with("JetStream, 3 nodes R3"));
    assert!(
        rows[2].figure.contains(cluster::ANCHOR_R3),
        "{}",
        rows[2].figure
    );
    assert_eq!(rows[2].target, "≥ 1.00× sled");
    // The failover row judges the worst trial and lists them all.
    assert_eq!(rows[3].verdict, Verdict::Hit);
    assert!(rows[3].figure.contains("2 trials"), "{}", rows[3].figure);
    assert_eq!(rows[3].measured, "worst 4.16 s: 4.16 s n2→n1, 2.50 s n3→n1");

    // One trial slower than 10 s, or one with no ack at all: missed.
    for (ms, text) in [
        (Some(10_500.0), "worst 10.50 s: 4.16 s n2→n1, 10.50 s n3→n1"),
        (None, "no ack: 4.16 s n2→n1, none in 30 s after n3"),
    ] {
        let rows = cluster_rows(&cluster::ClusterBenchReport {
            failover: vec![failover("n2", Some(4_160.0)), failover("n3", ms)],
            ..report.clone()
        });
        assert_eq!(rows[3].verdict, Verdict::Missed);
        assert_eq!(rows[3].measured, text);
    }
    // No trials, no row.
    let rows = cluster_rows(&cluster::ClusterBenchReport {
        failover: Vec::new(),
        ..report.clone()
    });
    assert_eq!(rows.len(), 3);
}

/// Against real nats-server 2.15 children: every backend is measured, the R3 stream's leader
/// is killed and another server leads it, and appends are acked again.
#[test]
fn the_cluster_scenario_measures_three_backends_and_survives_a_killed_leader() {
    let dir = tempfile::tempdir().unwrap();
    let opts = cluster::ClusterBenchOptions {
        appenders: vec![8],
        log: tenantry::events::log::LogOptions::default(),
        duration: std::time::Duration::from_millis(300),
        failover_appenders: 8,
        failover_trials: 2,
        failover_only: false,
    };
    let report = cluster::run(dir.path(), &opts, &mut |_| {}).unwrap();
    assert!(report.nats_server.contains("v2."), "{}", report.nats_server);
    let shape: Vec<_> = report
        .backends
        .iter()
        .map(|b| (b.backend, b.servers, b.replicas))
        .collect();
    assert_eq!(
        shape,
        [
            ("sled", 0, 0),
            ("jetstream-1", 1, 1),
            ("jetstream-r3", 3, 3)
        ]
    );
    for b in &report.backends {
        assert_eq!(b.runs.len(), 1);
        assert!(b.runs[0].events > 0, "{b:?}");
        assert!(b.ratio_to_sled > 0.0, "{b:?}");
    }
    assert!((report.backends[0].ratio_to_sled - 1.0).abs() < 1e-9);
    // Two trials: the second ran after the first's killed server was restarted (an R3 stream
    // needs three servers).
    assert_eq!(report.failover.len(), 2);
    for f in &report.failover {
        assert!(["n1", "n2", "n3"].contains(&f.killed.as_str()), "{f:?}");
        let new_leader = f.new_leader.as_deref().expect("a new leader");
        assert_ne!(new_leader, f.killed);
        let ms = f.kill_to_ack_ms.expect("an ack after the kill");
        assert!(ms > 0.0 && ms < cluster::FAILOVER_WAIT_MAX.as_secs_f64() * 1000.0);
        assert!(f.groups > 0);
    }
    // Each JetStream server kept its store under the bench's directory.
    for node in [
        "jetstream-1/n1/js",
        "jetstream-r3/n1/js",
        "jetstream-r3/n3/js",
    ] {
        assert!(dir.path().join(node).is_dir(), "{node}");
    }
}

#[test]
fn the_runtime_scenario_counts_thread_switches_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let opts = runtime::RuntimeBenchOptions {
        clients: vec![2],
        duration: std::time::Duration::from_millis(300),
        paced_fraction: 0.5,
        idle_sessions: 0,
    };
    let report = runtime::run(dir.path(), &opts, &mut |_| {}).unwrap();
    let paced = report
        .runs
        .iter()
        .find(|r| r.paced_msgs_per_s.is_some())
        .expect("a paced pass");
    assert!(paced.messages > 0, "{paced:?}");
    // Every acked message woke at least the client thread waiting for it.
    assert!(paced.switches_per_msg >= 1.0, "{paced:?}");
    let rows = runtime_rows(&report, None);
    assert!(
        rows.iter().any(|r| r
            .figure
            .starts_with("thread switches per message at half of peak")),
        "{rows:?}"
    );
}

#[test]
fn the_idle_memory_row_is_judged_only_at_the_targets_session_count() {
    let idle = |sessions: usize, bytes: f64| runtime::IdleMemory {
        sessions,
        rss_before_bytes: 0,
        rss_after_bytes: 0,
        bytes_per_session: bytes,
        first_half_bytes_per_session: bytes,
        second_half_bytes_per_session: bytes,
        log_cache_bytes: 0,
        warm_up_events: 0,
        warm_up_log_bytes: 0,
    };
    let idle_row = |memory: runtime::IdleMemory| {
        let report = runtime::RuntimeBenchReport {
            scenario: "runtime",
            tenants: 1,
            events_per_message: 3,
            events_in_log: 0,
            runs: Vec::new(),
            idle_memory: Some(memory),
        };
        let rows = runtime_rows(&report, None);
        let row = rows
            .iter()
            .find(|r| r.figure.starts_with("memory per live idle session"))
            .cloned()
            .expect("an idle row");
        row
    };
    let verdict = |memory: runtime::IdleMemory| idle_row(memory).verdict;
    assert_eq!(verdict(idle(5_000, 39.0)), Verdict::Info);
    assert_eq!(verdict(idle(100_000, 1_400.0)), Verdict::Hit);
    assert_eq!(verdict(idle(100_000, 2_233.0)), Verdict::Missed);
    // A whole step that reused the warm-up's freed memory is judged on its second half.
    let reused = |second: f64| runtime::IdleMemory {
        bytes_per_session: 237.0,
        first_half_bytes_per_session: 0.0,
        second_half_bytes_per_session: second,
        ..idle(100_000, 0.0)
    };
    assert_eq!(verdict(reused(1_151.0)), Verdict::Hit);
    assert_eq!(verdict(reused(1_700.0)), Verdict::Missed);
    // The cell leads with the figure judged, not the whole step's.
    assert_eq!(
        idle_row(reused(1_151.0)).measured,
        "1,151 bytes (whole step 237; first half 0, second 1,151)"
    );
}

#[test]
fn the_overload_rows_give_the_generators_delay_and_the_median_neighbour_pair() {
    let run = |ok_p99_us: u64, seconds: f64| overload::OpenRun {
        ok_p99_us,
        seconds,
        ..overload::OpenRun::default()
    };
    let cpu = |server_s, load_s| crate::harness::CpuSpent { server_s, load_s };
    let pair = |alone_us: u64, noisy_us: u64, errors: u64| overload::NeighbourRound {
        others_alone: overload::OpenRun {
            send_delay_p99_us: 1_500,
            ..run(alone_us, 10.0)
        },
        others_with_noisy: overload::OpenRun {
            refused: errors,
            send_delay_p99_us: 2_500,
            ..run(noisy_us, 8.0)
        },
        noisy: overload::OpenRun {
            refused: 1_000,
            ..run(0, 8.0)
        },
        others_p99_ratio: noisy_us as f64 / alone_us as f64,
        cpu_alone: cpu(6.0, 2.0),
        cpu_with_noisy: cpu(12.0, 4.0),
    };
    let mut report = overload::OverloadBenchReport {
        scenario: "overload",
        tenants: 8,
        overload: overload::OverloadFigure {
            peak_ok_per_s: 10_000.0,
            run: overload::OpenRun {
                send_delay_p99_us: 95_000,
                ..run(0, 10.0)
            },
            goodput_ratio: 0.5,
            rss: overload::RssFigure {
                samples: 0,
                start_bytes: 0,
                first_half_max_bytes: 0,
                second_half_max_bytes: 0,
                end_bytes: 0,
                plateau_ratio: 1.0,
            },
            server_cpu_s: 15.0,
            load_cpu_s: 4.0,
        },
        neighbour: overload::NeighbourFigure {
            noisy_quota_per_s: 500,
            noisy_offered_per_s: 5_000.0,
            others_offered_per_s: 3_000.0,
            // Ratios 3.0, 1.1 and 2.0 in the order run: the median is the third pair.
            rounds: vec![
                pair(10_000, 30_000, 0),
                pair(20_000, 22_000, 0),
                pair(15_000, 30_000, 0),
            ],
        },
    };
    let rows = overload_rows(&report);
    let find = |rows: &[Row], prefix: &str| {
        rows.iter()
            .find(|r| r.figure.starts_with(prefix))
            .cloned()
            .expect("the row")
    };
    let row = find(&rows, "neighbours' p99");
    assert_eq!(
        row.measured,
        "2.00× (median of 3 alternated pairs: 3.00, 1.10, 2.00; that pair 30.00 ms vs 15.00 ms; \
         server CPU 0.60 → 1.50 cores, load 0.20 → 0.50)"
    );
    assert_eq!(row.verdict, Verdict::Missed);
    assert_eq!(
        find(&rows, "neighbours' load generator").measured,
        "1.50 ms alone, 2.50 ms beside the noisy tenant's (its own thread; the median pair)"
    );
    assert_eq!(find(&rows, "neighbours' errors").verdict, Verdict::Hit);
    assert_eq!(
        find(&rows, "load generator's own send delay at 3×").measured,
        "95.00 ms (generator 0.40 cores, server 1.50)"
    );

    // Errors beside the noisy tenant in any pair, not only the median one, are a miss.
    report.neighbour.rounds[1] = pair(20_000, 22_000, 3);
    let rows = overload_rows(&report);
    let errors = find(&rows, "neighbours' errors");
    assert_eq!(errors.measured, "3 (noisy tenant refused 3,000)");
    assert_eq!(errors.verdict, Verdict::Missed);
}

#[test]
fn a_scenario_works_in_its_own_directory_removed_once_it_has_measured() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |keep_data| SuiteOptions {
        size: Size::Quick,
        scenarios: vec![Scenario::Log],
        dir: dir.path().to_path_buf(),
        appenders: Some(vec![1]),
        clients: None,
        idle_sessions: None,
        batch_groups: None,
        events: None,
        failover_trials: None,
        failover_only: false,
        keep_data,
        serve_exe: None,
    };
    let mut lines = Vec::new();
    let report = run(&opts(false), &mut |l| lines.push(l.to_owned()), &mut |_| {}).unwrap();
    assert!(report.rows.iter().any(|r| r.scenario == "log"));
    // Nothing of the scenario's databases is left behind, and the run says what it removed.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("removed ") && l.contains("log")),
        "{lines:?}"
    );

    run(&opts(true), &mut |_| {}, &mut |_| {}).unwrap();
    assert!(dir.path().join("log").join("raw-sled").is_dir());
    assert!(dir.path().join("log").join("log-1").is_dir());
}

#[test]
fn the_http_rows_give_wrks_figure_beside_the_bench_clients_or_why_it_is_missing() {
    let report = |outside| edge::EdgeBenchReport {
        scenario: "http_edge",
        unit: "HTTP 200 ack",
        tenants: 8,
        load_generator: "",
        load_generator_threads: 1,
        cores: 2,
        targets: edge::Targets {
            ok_per_s_min: 20_000.0,
            paced_p99_us_max: Some(5_000),
        },
        verdict: edge::Verdict {
            peak_ok_per_s: 10_000.0,
            throughput_met: false,
            paced_p99_us: None,
            paced_p99_met: None,
        },
        runs: Vec::new(),
        outside,
    };
    let anchor = |r: &edge::EdgeBenchReport| {
        edge_rows("http", r)
            .into_iter()
            .find(|row| row.figure.contains("by wrk"))
            .map(|row| (row.measured, row.verdict))
    };
    let measured = edge::wrk::Outside::Measured(edge::wrk::WrkRun {
        version: "wrk 4.1.0".to_owned(),
        connections: 64,
        threads: 1,
        seconds: 10.0,
        ok: 95_000,
        ok_per_s: 9_500.0,
        non_2xx: 12,
        socket_errors: 0,
        latency_p50_us: 5_000,
        latency_p99_us: 14_200,
    });
    assert_eq!(
        anchor(&report(Some(measured))),
        Some((
            "9,500 req/s = 0.95× the bench's client (wrk 4.1.0, 64 connections, 1 thread; \
             p99 14.20 ms; 12 non-2xx, 0 socket errors)"
                .to_owned(),
            Verdict::Info
        ))
    );
    let missing = edge::wrk::Outside::Missing {
        reason: "wrk is not on PATH".to_owned(),
    };
    assert_eq!(
        anchor(&report(Some(missing))).map(|(m, _)| m),
        Some("not measured: wrk is not on PATH".to_owned())
    );
    // NATS has no outside anchor row.
    assert_eq!(anchor(&report(None)), None);
}
