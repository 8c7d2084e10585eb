//! HTTP limits, exposure and in-flight shares.

use super::*;

#[test]
fn rate_limits_default_from_server_and_tenants_override() {
    let defaults = two_tenants("").load().unwrap();
    assert_eq!(defaults.server().rate_limit_per_s.get(), 1000);
    assert_eq!(defaults.server().http_body_bytes_max, 64 * 1024);
    for tenant in defaults.tenants().values() {
        assert_eq!(tenant.rate_limit_per_s.get(), 1000);
    }

    let fixture = two_tenants("rate_limit_per_s = 50\nhttp_body_bytes_max = 2048\n");
    let mut config = fs::read_to_string(fixture.config()).unwrap();
    config.push_str("[tenants.acme]\nrate_limit_per_s = 5\n");
    fixture.write("config.toml", &config);
    let config = fixture.load().unwrap();
    assert_eq!(config.server().http_body_bytes_max, 2048);
    assert_eq!(
        config
            .tenant(&tenant("acme"))
            .unwrap()
            .rate_limit_per_s
            .get(),
        5
    );
    assert_eq!(
        config
            .tenant(&tenant("bigcorp"))
            .unwrap()
            .rate_limit_per_s
            .get(),
        50
    );
}

#[test]
fn a_quota_burst_is_the_rate_unless_the_server_or_the_tenant_sets_one() {
    let burst = |config: &Config, id: &str| config.tenant(&tenant(id)).unwrap().rate_limit_burst;
    let defaults = two_tenants("rate_limit_per_s = 40\n").load().unwrap();
    assert_eq!(defaults.server().rate_limit_burst, None);
    assert_eq!(burst(&defaults, "acme").get(), 40);

    let fixture = two_tenants("rate_limit_per_s = 40\nrate_limit_burst = 4\n");
    let mut config = fs::read_to_string(fixture.config()).unwrap();
    config.push_str("[tenants.acme]\nrate_limit_per_s = 500\nrate_limit_burst = 20\n");
    fixture.write("config.toml", &config);
    let config = fixture.load().unwrap();
    assert_eq!(burst(&config, "acme").get(), 20);
    assert_eq!(burst(&config, "bigcorp").get(), 4);

    assert_mentions(
        &two_tenants("rate_limit_burst = 0\n").error(),
        &["config.toml", "server.rate_limit_burst", "at least 1"],
    );
    let fixture = Fixture::new(&[
        (
            "config.toml",
            "[tenants.acme]\nrate_limit_burst = 0\n[tenants.acme.teams.s]\nflow = \"f.yaml\"\n",
        ),
        ("f.yaml", REPLY_FLOW),
    ]);
    assert_mentions(
        &fixture.error(),
        &["tenants.acme.rate_limit_burst", "leave it out"],
    );
}

#[test]
fn http_limit_errors_name_the_field() {
    let cases = [
        ("rate_limit_per_s = 0\n", "server.rate_limit_per_s"),
        ("rate_limit_per_s = -1\n", "rate_limit_per_s"),
        ("http_body_bytes_max = 10\n", "server.http_body_bytes_max"),
        (
            "http_body_bytes_max = 99999999999\n",
            "server.http_body_bytes_max",
        ),
        ("rate_limit = 5\n", "rate_limit"),
    ];
    for (server, field) in cases {
        assert_mentions(&two_tenants(server).error(), &["config.toml", field]);
    }
    assert_mentions(
        &two_tenants("http_body_bytes_max = 10\n").error(),
        &[
            "10 is out of range: give 1024..=",
            " bytes, or leave it out for 65536",
        ],
    );
    let fixture = Fixture::new(&[
        (
            "config.toml",
            "[tenants.acme]\nrate_limit_per_s = 0\n[tenants.acme.teams.s]\nflow = \"f.yaml\"\n",
        ),
        ("f.yaml", REPLY_FLOW),
    ]);
    assert_mentions(
        &fixture.error(),
        &["config.toml", "tenants.acme.rate_limit_per_s", "at least 1"],
    );
}

#[test]
fn http_workers_default_to_one_per_core_and_can_be_set_within_bounds() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    assert_eq!(two_tenants("").load().unwrap().server().http_workers, cores);
    let set = two_tenants("http_workers = 5\n").load().unwrap();
    assert_eq!(set.server().http_workers, 5);
    for bad in ["0", "-1", "257"] {
        let error = two_tenants(&format!("http_workers = {bad}\n")).error();
        assert_mentions(
            &error,
            &["config.toml", "server.http_workers", bad, "1..=256"],
        );
    }
}

// ---- Exposure: the metrics listener and token lifetimes ------------------------------------

#[test]
fn metrics_listen_defaults_to_loopback_9464_and_can_be_moved_or_turned_off() {
    let defaults = two_tenants("").load().unwrap();
    assert_eq!(
        defaults.server().metrics_listen.map(|a| a.to_string()),
        Some("127.0.0.1:9464".to_owned())
    );
    let shipped = Config::load(&repo("config.toml"), &LoadOptions::default()).unwrap();
    assert_eq!(
        shipped.server().metrics_listen,
        defaults.server().metrics_listen
    );
    let moved = two_tenants("metrics_listen = \"127.0.0.1:0\"\n")
        .load()
        .unwrap();
    assert_eq!(
        moved.server().metrics_listen.map(|a| a.to_string()),
        Some("127.0.0.1:0".to_owned())
    );
    let off = two_tenants("metrics_listen = \"off\"\n").load().unwrap();
    assert_eq!(off.server().metrics_listen, None);
    assert_mentions(
        &two_tenants("metrics_listen = \"9464\"\n").error(),
        &["config.toml", "server.metrics_listen", "\"off\""],
    );
}

#[test]
fn token_lifetime_max_defaults_to_30_days_and_is_bounded() {
    let defaults = two_tenants("").load().unwrap();
    assert_eq!(
        defaults.auth().token_lifetime_max,
        Duration::from_secs(30 * 24 * 60 * 60)
    );
    let set = two_tenants("[auth]\ntoken_lifetime_max = \"12h\"\n")
        .load()
        .unwrap();
    assert_eq!(
        set.auth().token_lifetime_max,
        Duration::from_secs(12 * 3600)
    );
    for bad in ["\"0s\"", "\"500ms\"", "\"400days\"", "\"soon\"", "30"] {
        let fixture = two_tenants(&format!("[auth]\ntoken_lifetime_max = {bad}\n"));
        assert_mentions(&fixture.error(), &["config.toml", "token_lifetime_max"]);
    }
}

// ---- In-flight shares ---------------------------------------------------------------------

/// The config of one tenant with `runtime` as its `[runtime]` section.
fn with_runtime(runtime: &str) -> Config {
    let text = format!("[runtime]\n{runtime}[tenants.acme.teams.support]\nflow = \"f.yaml\"\n");
    let fixture = Fixture::new(&[("config.toml", text.as_str()), ("f.yaml", REPLY_FLOW)]);
    fixture.load().unwrap()
}

/// The load error of a config whose `[runtime]` section is `runtime`.
fn runtime_error(runtime: &str) -> String {
    let text = format!("[runtime]\n{runtime}");
    crate::config::load::check_config_text(Path::new("config.toml"), &text)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_tenants_inflight_share_defaults_to_half_or_all_when_alone_and_is_checked() {
    let shared = two_tenants("").load().unwrap();
    assert_eq!(shared.inflight_per_tenant_max(), 512);
    let dedicated = two_tenants("tenant = \"acme\"").load().unwrap();
    assert_eq!(dedicated.inflight_per_tenant_max(), 1024);
    let config = with_runtime("inflight_max = 9\ninflight_per_tenant_max = 3\n");
    assert_eq!(config.inflight_per_tenant_max(), 3);
    for share in [0, 10] {
        let e = runtime_error(&format!(
            "inflight_max = 9\ninflight_per_tenant_max = {share}\n"
        ));
        assert_mentions(&e, &["runtime.inflight_per_tenant_max", "1..=9"]);
    }
}

#[test]
fn the_running_budget_defaults_to_a_quarter_of_inflight_and_is_checked() {
    assert_eq!(two_tenants("").load().unwrap().running_max(), 256);
    let config = with_runtime("inflight_max = 9\nrunning_max = 9\n");
    assert_eq!(config.running_max(), 9);
    assert_eq!(with_runtime("inflight_max = 9\n").running_max(), 3);
    for running in [0, 10] {
        let e = runtime_error(&format!("inflight_max = 9\nrunning_max = {running}\n"));
        assert_mentions(
            &e,
            &["runtime.running_max", "1..=9", "a quarter of inflight_max"],
        );
    }
}

#[test]
fn session_limits_and_idempotency_window_are_checked_and_default() {
    let tenant = "[tenants.acme.teams.s]\nflow = \"f.yaml\"\n";
    let cases = [
        ("sessions_max = 0\n", "runtime.sessions_max", "at least 1"),
        (
            "tenant_sessions_max = 0\n",
            "runtime.tenant_sessions_max",
            "1..=",
        ),
        (
            "sessions_max = 10\ntenant_sessions_max = 11\n",
            "runtime.tenant_sessions_max",
            "1..=10",
        ),
        (
            "idempotency_window = \"soon\"\n",
            "runtime.idempotency_window",
            "7days",
        ),
        (
            "idempotency_window = \"1m\"\n",
            "runtime.idempotency_window",
            "between",
        ),
        (
            "idempotency_window = \"400days\"\n",
            "runtime.idempotency_window",
            "between",
        ),
    ];
    for (runtime, field, fix) in cases {
        let text = format!("[runtime]\n{runtime}{tenant}");
        let err = Fixture::new(&[("config.toml", &text), ("f.yaml", REPLY_FLOW)]).error();
        assert_mentions(&err, &["config.toml", field, fix]);
    }
    let defaults = Fixture::new(&[("config.toml", tenant), ("f.yaml", REPLY_FLOW)])
        .load()
        .unwrap();
    let rt = defaults.runtime();
    assert_eq!(
        rt.sessions_max,
        crate::config::runtime::DEFAULT_SESSIONS_MAX
    );
    assert_eq!(
        rt.tenant_sessions_max,
        crate::config::runtime::DEFAULT_SESSIONS_MAX / 2
    );
    assert_eq!(rt.idempotency_window, Duration::from_secs(7 * 24 * 60 * 60));
    let text = format!(
        "[runtime]\nsessions_max = 10\ntenant_sessions_max = 10\nidempotency_window = \"48h\"\n{tenant}"
    );
    let set = Fixture::new(&[("config.toml", &text), ("f.yaml", REPLY_FLOW)])
        .load()
        .unwrap();
    let rt = set.runtime();
    assert_eq!((rt.sessions_max, rt.tenant_sessions_max), (10, 10));
    assert_eq!(rt.idempotency_window, Duration::from_secs(48 * 3600));
}
