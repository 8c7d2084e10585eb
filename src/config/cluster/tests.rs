use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::nats::nats_config;
use crate::config::raw::ConfigFile;

const PATH: &str = "/etc/tenantry/config.toml";

/// The `[nats]` of the contract: two servers.
const NATS: &str = "[nats]\nurl = \"nats://127.0.0.1:4222,nats://127.0.0.1:4223\"\n";

/// `[log]` and `[cluster]` of `text` (a whole `config.toml`), checked as loading does.
fn load(text: &str) -> Result<(LogConfig, Option<ClusterConfig>), ConfigError> {
    let path = Path::new(PATH);
    let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Toml {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let nats = file.nats.map(|nats| nats_config(path, nats)).transpose()?;
    log_and_cluster(path, file.log, file.cluster, nats.as_ref())
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(loaded) => panic!("expected an error for\n{text}\ngot {loaded:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn without_the_sections_the_log_is_sled_with_the_stream_defaults_and_no_cluster() {
    let (log, cluster) = load("").unwrap();
    assert_eq!(log.backend, LogBackend::Sled);
    assert_eq!(log.stream, "TENANTRY_LOG");
    assert_eq!(log.replicas, 1);
    assert_eq!(log, LogConfig::default());
    assert_eq!(cluster, None);
    let (log, _) = load("[log]\n").unwrap();
    assert_eq!(log, LogConfig::default());
}

#[test]
fn the_contract_example_loads_as_written() {
    let text = format!(
        "{NATS}[log]\nbackend = \"jetstream\"\nstream = \"TENANTRY_LOG\"\nreplicas = 3\n\
         [cluster]\nnode = \"n1\"\nlease_ttl = \"5s\"\n"
    );
    let (log, cluster) = load(&text).unwrap();
    assert_eq!(
        log,
        LogConfig {
            backend: LogBackend::JetStream,
            stream: "TENANTRY_LOG".into(),
            replicas: 3,
            seal: true,
        }
    );
    assert_eq!(
        cluster,
        Some(ClusterConfig {
            node: "n1".into(),
            lease_ttl: Duration::from_secs(5),
        })
    );
    // Defaults within the sections: stream, replicas and lease_ttl.
    let text = format!("{NATS}[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n-2_b\"\n");
    let (log, cluster) = load(&text).unwrap();
    assert_eq!((log.stream.as_str(), log.replicas), ("TENANTRY_LOG", 1));
    let cluster = cluster.unwrap();
    assert_eq!(cluster.node, "n-2_b");
    assert_eq!(cluster.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(DEFAULT_LEASE_TTL, Duration::from_secs(5));
}

#[test]
fn values_at_their_bounds_are_accepted() {
    let stream = "S".repeat(LOG_STREAM_CHARS_MAX);
    let node = "n".repeat(CLUSTER_NODE_CHARS_MAX);
    for (log, cluster, replicas, ttl) in [
        (
            "replicas = 1",
            "lease_ttl = \"1s\"",
            1,
            Duration::from_secs(1),
        ),
        (
            "replicas = 5",
            "lease_ttl = \"5min\"",
            5,
            Duration::from_secs(300),
        ),
    ] {
        let text = format!(
            "{NATS}[log]\nbackend = \"jetstream\"\nstream = \"{stream}\"\n{log}\n\
             [cluster]\nnode = \"{node}\"\n{cluster}\n"
        );
        let (log, cluster) = load(&text).unwrap();
        let cluster = cluster.unwrap();
        assert_eq!(
            (log.stream.as_str(), log.replicas),
            (stream.as_str(), replicas)
        );
        assert_eq!(
            (cluster.node.as_str(), cluster.lease_ttl),
            (node.as_str(), ttl)
        );
    }
}

#[test]
fn sled_keeps_a_cluster_section_and_checks_the_stream_keys_too() {
    let (log, cluster) =
        load("[log]\nbackend = \"sled\"\nreplicas = 3\n[cluster]\nnode = \"n1\"\n").unwrap();
    assert_eq!(log.backend, LogBackend::Sled);
    assert_eq!(log.replicas, 3);
    assert_eq!(cluster.unwrap().node, "n1");
    // Sled needs no [nats]; a stream key is still checked, so switching backends is one line.
    let e = error("[log]\nbackend = \"sled\"\nreplicas = 9\n");
    assert!(e.contains("log.replicas"), "{e}");
}

#[test]
fn jetstream_needs_nats_and_a_cluster_node_when_it_has_a_cluster_section() {
    let e = error("[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n");
    assert!(
        e.contains("log.backend")
            && e.contains("log.backend = \"jetstream\" needs a [nats] section with url"),
        "{e}"
    );
    // Without [cluster]: the stream's single writer node.
    let (log, cluster) = load(&format!("{NATS}[log]\nbackend = \"jetstream\"\n")).unwrap();
    assert_eq!(log.backend, LogBackend::JetStream);
    assert_eq!(cluster, None);
    let e = error(&format!(
        "{NATS}[log]\nbackend = \"jetstream\"\n[cluster]\nlease_ttl = \"5s\"\n"
    ));
    assert!(
        e.contains("cluster.node") && e.contains("is required"),
        "{e}"
    );
}

#[test]
fn each_bad_value_is_refused_naming_its_field_and_the_rule() {
    let long_stream = "S".repeat(LOG_STREAM_CHARS_MAX + 1);
    let long_node = "n".repeat(CLUSTER_NODE_CHARS_MAX + 1);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[log]\nbackend = \"rocksdb\"".into(),
            "log.backend",
            "give \"sled\" (the default) or \"jetstream\"",
        ),
        (
            "[log]\nbackend = \"JetStream\"".into(),
            "log.backend",
            "unknown backend \"JetStream\"",
        ),
        (
            "[log]\nbackend = \"\"".into(),
            "log.backend",
            "unknown backend",
        ),
        (
            "[log]\nstream = \"\"".into(),
            "log.stream",
            "1..=32 characters of A-Z, a-z, 0-9, _ and -",
        ),
        (
            "[log]\nstream = \"TENANTRY.LOG\"".into(),
            "log.stream",
            "no dots, spaces or wildcards",
        ),
        (
            "[log]\nstream = \"TENANTRY LOG\"".into(),
            "log.stream",
            "1..=32",
        ),
        ("[log]\nstream = \"LOG*\"".into(), "log.stream", "1..=32"),
        ("[log]\nstream = \"LOG>\"".into(), "log.stream", "1..=32"),
        ("[log]\nstream = \"LOG/1\"".into(), "log.stream", "1..=32"),
        ("[log]\nstream = \"LÖG\"".into(), "log.stream", "1..=32"),
        (
            format!("[log]\nstream = \"{long_stream}\""),
            "log.stream",
            "1..=32",
        ),
        ("[log]\nreplicas = 0".into(), "log.replicas", "1..=5"),
        ("[log]\nreplicas = 6".into(), "log.replicas", "1..=5"),
        ("[log]\nreplicas = -1".into(), "log.replicas", "1..=5"),
        (
            "[cluster]\nnode = \"\"".into(),
            "cluster.node",
            "1..=64 characters of A-Z, a-z, 0-9, _ and -",
        ),
        (
            "[cluster]\nnode = \"n.1\"".into(),
            "cluster.node",
            "no dots, spaces or wildcards",
        ),
        ("[cluster]\nnode = \"n 1\"".into(), "cluster.node", "1..=64"),
        ("[cluster]\nnode = \"n*\"".into(), "cluster.node", "1..=64"),
        ("[cluster]\nnode = \">\"".into(), "cluster.node", "1..=64"),
        (
            format!("[cluster]\nnode = \"{long_node}\""),
            "cluster.node",
            "1..=64",
        ),
        (
            "[cluster]\nnode = \"n1\"\nlease_ttl = \"500ms\"".into(),
            "cluster.lease_ttl",
            "1s..=5m",
        ),
        (
            "[cluster]\nnode = \"n1\"\nlease_ttl = \"0s\"".into(),
            "cluster.lease_ttl",
            "1s..=5m",
        ),
        (
            "[cluster]\nnode = \"n1\"\nlease_ttl = \"301s\"".into(),
            "cluster.lease_ttl",
            "1s..=5m",
        ),
        (
            "[cluster]\nnode = \"n1\"\nlease_ttl = \"soon\"".into(),
            "cluster.lease_ttl",
            "\"5s\"",
        ),
    ];
    for (text, field, rule) in cases {
        let e = error(&format!("{NATS}{text}\n"));
        assert!(
            e.contains(PATH) && e.contains(&format!(": {field}: ")) && e.contains(rule),
            "{text}: {e}"
        );
    }
}

#[test]
fn a_long_bad_value_is_quoted_cut_short() {
    let node = "n.".repeat(5000);
    let e = error(&format!("[cluster]\nnode = \"{node}\"\n"));
    assert!(
        e.contains("cluster.node") && e.contains("(10000 bytes)"),
        "{e}"
    );
    assert!(e.len() < 400, "{} bytes: {e}", e.len());
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_by_the_parser_naming_the_key() {
    for (text, key) in [
        ("[log]\nbackend = \"sled\"\nreplica = 3\n", "replica"),
        ("[log]\nstreams = \"S\"\n", "streams"),
        ("[cluster]\nnode = \"n1\"\nlease = \"5s\"\n", "lease"),
        ("[cluster]\nnodes = [\"n1\"]\n", "nodes"),
        ("[log]\nreplicas = \"3\"\n", "replicas"),
        ("[cluster]\nlease_ttl = 5\nnode = \"n1\"\n", "lease_ttl"),
        ("[log]\nbackend = 1\n", "backend"),
    ] {
        let e = error(text);
        assert!(
            e.contains(PATH) && e.contains(key) && e.contains("line"),
            "{text}: {e}"
        );
    }
}
