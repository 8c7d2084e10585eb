//! `[log]` and `[cluster]`.

use super::*;

#[test]
fn a_jetstream_node_config_loads_and_its_summary_shows_log_cluster_and_every_server() {
    let config = "[nats]\nurl = \"nats://ops:pw-canary@127.0.0.1:4222,nats://127.0.0.1:4223\"\n\
                  [log]\nbackend = \"jetstream\"\nstream = \"TENANTRY_LOG\"\nreplicas = 3\n\
                  [cluster]\nnode = \"n1\"\nlease_ttl = \"5s\"\n\
                  [tenants.acme.teams.s]\nflow = \"f.yaml\"\n";
    let fixture = Fixture::new(&[("config.toml", config), ("f.yaml", REPLY_FLOW)]);
    let loaded = fixture.load().unwrap();
    let log = loaded.log();
    assert_eq!(log.backend, crate::config::LogBackend::JetStream);
    assert_eq!((log.stream.as_str(), log.replicas), ("TENANTRY_LOG", 3));
    let cluster = loaded.cluster().unwrap();
    assert_eq!(cluster.node, "n1");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
    assert_eq!(
        loaded.nats().unwrap().urls(),
        [
            "nats://ops:pw-canary@127.0.0.1:4222",
            "nats://127.0.0.1:4223"
        ]
    );
    let summary = loaded.summary();
    assert_mentions(
        &summary,
        &[
            "nats: on (nats://***@127.0.0.1:4222,nats://127.0.0.1:4223,",
            "log: jetstream (stream TENANTRY_LOG, 3 replicas), cluster node n1, lease ttl 5s\n",
        ],
    );
    assert!(!summary.contains("pw-canary"), "{summary}");

    // The same node without [nats]: refused at load, naming the file and the field.
    let without_nats = config
        .lines()
        .filter(|l| !l.starts_with("[nats]") && !l.starts_with("url"))
        .collect::<Vec<_>>()
        .join("\n");
    let fixture = Fixture::new(&[("config.toml", &without_nats), ("f.yaml", REPLY_FLOW)]);
    assert_mentions(
        &fixture.error(),
        &["config.toml: log.backend: ", "needs a [nats] section"],
    );
}

#[test]
fn log_replicas_out_of_range_are_refused_naming_the_field_the_bounds_and_the_default() {
    let node = |replicas: &str| {
        format!(
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\n\
             [log]\nbackend = \"jetstream\"\nreplicas = {replicas}\n\
             [cluster]\nnode = \"n1\"\n\
             [tenants.acme.teams.s]\nflow = \"f.yaml\"\n"
        )
    };
    let five = Fixture::new(&[("config.toml", &node("5")), ("f.yaml", REPLY_FLOW)]);
    assert_eq!(five.load().unwrap().log().replicas, 5);
    for bad in ["0", "-3", "6"] {
        let fixture = Fixture::new(&[("config.toml", &node(bad)), ("f.yaml", REPLY_FLOW)]);
        assert_mentions(
            &fixture.error(),
            &[
                "config.toml",
                "log.replicas",
                &format!("{bad} is out of range"),
                "1..=5 copies of the stream",
                "leave it out for 1",
            ],
        );
    }
}

#[test]
fn a_webhook_channels_url_is_optional_and_must_be_plain_http() {
    let channel = "[tenants.acme.teams.s]\nflow = \"f.yaml\"\n[tenants.acme.teams.s.channels.hook]\nprovider = \"webhook\"\n";
    let field = "tenants.acme.teams.s.channels.hook.config.url";
    for (config, fix) in [
        ("config = { url = \"https://example.com/x\" }\n", "TLS"),
        ("config = { url = \"http:///x\" }\n", "with a host"),
        ("config = { url = \"ftp://h/x\" }\n", "http://"),
    ] {
        let text = format!("{channel}{config}");
        let err = Fixture::new(&[("config.toml", &text), ("f.yaml", REPLY_FLOW)]).error();
        assert_mentions(&err, &["config.toml", field, fix]);
    }
    let text = format!("{channel}config = {{ url = \"http://127.0.0.1:9000/replies\" }}\n");
    let fixture = Fixture::new(&[("config.toml", &text), ("f.yaml", REPLY_FLOW)]);
    fixture.load().unwrap();
    // Without a url the channel is inbound only.
    let fixture = Fixture::new(&[("config.toml", channel), ("f.yaml", REPLY_FLOW)]);
    fixture.load().unwrap();
}
