//! `tenantry migrate --to jetstream` on a data dir a real server wrote: the sled log goes into a
//! stream on nats-server 2.15; a cluster node started on the stream with an empty cache serves
//! the same sessions and knows their message ids; a second run copies nothing.

use std::process::{Command, Output};

use serde_json::json;

use crate::support::{acme_config, dir_with_flows, JetStream, Serve};

/// `tenantry migrate --to jetstream` with the servers of `--nats url`, run to its exit.
fn migrate(dir: &std::path::Path, url: &str) -> Output {
    migrate_with(dir, &["--nats", url])
}

/// `tenantry migrate --to jetstream [flags] --config {dir}/config.toml`, run to its exit.
fn migrate_with(dir: &std::path::Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["migrate", "--to", "jetstream"])
        .args(flags)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .output()
        .unwrap()
}

#[test]
fn a_sled_data_dir_moves_into_the_stream_and_a_cluster_node_serves_it() {
    let js = JetStream::single();
    let url = js.url(0);
    let dir = dir_with_flows();
    let message = |id: &str| {
        json!({"team": "support", "channel": "slack", "user": "ada", "text": "hello",
               "message_id": id})
    };
    // A sled server takes two messages, unsealed (a sealed tenant is refused: see below).
    let mut sled = Serve::config(&acme_config(std::path::Path::new("./data")))
        .section("log", "seal = false")
        .in_dir(dir.path())
        .start();
    let first = sled.post_as("acme", &message("m1")).ok();
    let session = first["session"].as_str().unwrap().to_owned();
    let second = sled
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "slack", "user": "ada",
                                 "text": "again", "session": session, "message_id": "m2"}),
        )
        .ok();
    let path = format!("/api/v1/sessions/{session}/events");
    let events = sled.get_as("acme", &path).ok();
    assert!(sled.stop().success());

    let copied = migrate(dir.path(), &url);
    let out = String::from_utf8_lossy(&copied.stdout);
    assert!(
        copied.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert!(
        out.contains("1 tenants copied") && out.contains("0 refused"),
        "{out}"
    );
    // Again: everything is there already.
    let again = migrate(dir.path(), &url);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success()
            && out.contains("0 tenants copied")
            && out.contains("1 already there"),
        "{out}"
    );

    // A node on the stream, with a new (empty) data dir: same events, same message ids.
    let node_config = format!(
        "{}[nats]\nurl = \"{url}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        acme_config(std::path::Path::new("./data-node"))
    );
    let node = Serve::config(&node_config).in_dir(dir.path()).start();
    assert_eq!(node.get_as("acme", &path).ok(), events);
    let retried = node.post_as("acme", &message("m1")).ok();
    assert_eq!(retried["seq"], first["seq"], "{retried}");
    assert_eq!(retried["session"], first["session"]);
    let third = node
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "slack", "user": "ada",
                                 "text": "on the stream", "session": session,
                                 "message_id": "m3"}),
        )
        .ok();
    assert!(
        third["seq"].as_u64() > second["seq"].as_u64(),
        "{third} after {second}"
    );
}

/// `tenantry migrate --to jetstream` with the stream named by the config only (no flags), run to
/// its exit.
fn migrate_by_config(dir: &std::path::Path) -> Output {
    migrate_with(dir, &[])
}

#[test]
fn an_older_copy_of_a_migrated_sled_log_is_refused_with_exit_1_and_changes_nothing() {
    let js = JetStream::single();
    let dir = dir_with_flows();
    let data = dir.path().join("data");
    // The stream and the servers come from the config: [nats] url, [log] stream.
    let config = format!(
        "{}[nats]\nurl = \"{}\"\n[log]\nstream = \"MIGRATED\"\n",
        acme_config(std::path::Path::new("./data")),
        js.url(0)
    );
    let message = |id: &str| {
        json!({"team": "support", "channel": "slack", "session": "s-1", "user": "ada",
               "text": "hello", "message_id": id})
    };
    let mut sled = Serve::config(&config)
        .section("log", "seal = false")
        .in_dir(dir.path())
        .start();
    sled.post_as("acme", &message("m1")).ok();
    // A backup of the data dir taken before the last message.
    crate::support::copy_dir(&data.join("log"), &dir.path().join("log-backup"));
    sled.post_as("acme", &message("m2")).ok();
    assert!(sled.stop().success());
    let newer = crate::support::verify_tenant(&dir.path().join("config.toml"), "acme");
    let newer = String::from_utf8_lossy(&newer.stdout).into_owned();
    assert!(newer.starts_with("OK: "), "{newer}");

    let copied = migrate_by_config(dir.path());
    let out = String::from_utf8_lossy(&copied.stdout);
    assert!(
        copied.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert!(
        out.contains("into stream MIGRATED: 1 tenants copied"),
        "{out}"
    );

    // The backup is behind what the stream now holds: refused, named, nothing purged.
    std::fs::remove_dir_all(data.join("log")).unwrap();
    std::fs::rename(dir.path().join("log-backup"), data.join("log")).unwrap();
    let stale = migrate_by_config(dir.path());
    let out = String::from_utf8_lossy(&stale.stdout);
    assert_eq!(stale.status.code(), Some(1), "{out}");
    assert!(
        out.contains("refused: tenant acme: the stream already holds its events up to")
            && out.contains("purge subject MIGRATED.acme")
            && out.contains("0 tenants copied"),
        "{out}"
    );
    // Nothing changed: the stream still holds the newer log, chain and head.
    let node_config = dir.path().join("node.toml");
    let jetstream = config.replace("[log]\n", "[log]\nbackend = \"jetstream\"\n");
    std::fs::write(&node_config, jetstream + "[cluster]\nnode = \"check\"\n").unwrap();
    let in_stream = crate::support::verify_tenant(&node_config, "acme");
    let in_stream = String::from_utf8_lossy(&in_stream.stdout).into_owned();
    assert_eq!(verdict(&in_stream), verdict(&newer), "{in_stream}\n{newer}");
}

/// A `verify --tenant` verdict without its source: from the tenant on (count, seqs, head).
fn verdict(stdout: &str) -> &str {
    let at = stdout.find(": tenant acme").expect("a verdict naming acme");
    &stdout[at..]
}

#[test]
fn migrate_without_a_sled_log_names_the_missing_directory() {
    let dir = dir_with_flows();
    let config = format!(
        "{}[nats]\nurl = \"nats://127.0.0.1:1\"\n",
        acme_config(&dir.path().join("data"))
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let out = migrate_by_config(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no event log at") && stderr.contains("data/log"),
        "{stderr}"
    );
}

#[test]
fn a_stream_or_node_flag_that_is_no_subject_token_is_refused_before_anything_opens() {
    for (flag, value, like) in [
        ("--stream", "LOG.acme", "[log] stream"),
        ("--node", "n 1", "[cluster] node"),
        ("--replicas", "9", "1 to 5"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["migrate", "--to", "jetstream", flag, value])
            .args(["--config", "/nonexistent/config.toml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(like), "{stderr}");
    }
}

/// A sled data dir whose acme session holds `text` sealed (the default: personal fields sealed
/// under data keys kept in this data dir), its server stopped: the dir, its config, the session.
fn sealed_sled_dir(text: &str) -> (tempfile::TempDir, String, String) {
    let dir = dir_with_flows();
    let sled_config = acme_config(std::path::Path::new("./data"));
    let mut sled = Serve::config(&sled_config).in_dir(dir.path()).start();
    let first = sled
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "slack", "user": "ada", "text": text}),
        )
        .ok();
    let session = first["session"].as_str().unwrap().to_owned();
    assert!(sled.stop().success());
    (dir, sled_config, session)
}

#[test]
fn a_sealed_tenant_moves_for_a_single_node_of_the_same_data_dir_and_is_refused_for_a_cluster() {
    let js = JetStream::single();
    let url = js.url(0);
    let (dir, sled_config, session) = sealed_sled_dir("hello sealed");
    let config = dir.path().join("config.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    let all = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // For a cluster (every node with its own secret store): refused, nothing copied.
    std::fs::write(&config, format!("{written}[cluster]\nnode = \"n1\"\n")).unwrap();
    let out = migrate(dir.path(), &url);
    let said = all(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("sealed events")
            && said.contains("[cluster]")
            && said.contains("0 tenants copied")
            && said.contains("1 refused"),
        "{said}"
    );

    // For a single node keeping this data dir (its secrets): copied.
    std::fs::write(&config, &written).unwrap();
    let out = migrate(dir.path(), &url);
    let said = all(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 tenants copied") && said.contains("0 refused"),
        "{said}"
    );
    // The node on the stream, same data dir (the sled log moved aside): the texts open.
    std::fs::rename(
        dir.path().join("data/log"),
        dir.path().join("data/log.sled"),
    )
    .unwrap();
    let node_config =
        format!("{sled_config}[nats]\nurl = \"{url}\"\n[log]\nbackend = \"jetstream\"\n");
    let node = Serve::config(&node_config).in_dir(dir.path()).start();
    let events = node
        .get_as("acme", &format!("/api/v1/sessions/{session}/events"))
        .ok()
        .to_string();
    assert!(
        events.contains("hello sealed") && !events.contains("\"erased\":true"),
        "{events}"
    );
}

/// Into a cluster with a cluster key: the sealed tenant's keys go to the cluster's key stream,
/// so a node of another data dir, given only the cluster key, opens its sealed texts.
#[test]
fn a_sealed_tenant_moves_into_a_cluster_with_its_keys_in_the_key_stream() {
    use std::os::unix::fs::PermissionsExt;
    let cluster_key = "3c".repeat(32);
    let js = JetStream::single();
    let url = js.url(0);
    let (dir, sled_config, session) = sealed_sled_dir("hello sealed cluster");
    let config = dir.path().join("config.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{written}[cluster]\nnode = \"n1\"\n")).unwrap();
    let key_file = dir.path().join("data/cluster.key");
    std::fs::write(&key_file, &cluster_key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = migrate(dir.path(), &url);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 tenants copied") && said.contains("0 refused"),
        "{said}"
    );

    // A node of a fresh data dir: no secret of the sled data dir, only the cluster key.
    let node_config = format!(
        "{sled_config}[nats]\nurl = \"{url}\"\n[log]\nbackend = \"jetstream\"\n\
         [cluster]\nnode = \"n2\"\n"
    );
    let node = Serve::config(&node_config)
        .env("TENANTRY_CLUSTER_KEY", &cluster_key)
        .start();
    let events = node
        .get_as("acme", &format!("/api/v1/sessions/{session}/events"))
        .ok()
        .to_string();
    assert!(
        events.contains("hello sealed cluster") && !events.contains("\"erased\":true"),
        "{events}"
    );
}
