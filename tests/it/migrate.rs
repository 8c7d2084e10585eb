//! `tenantry migrate --to jetstream` on a data dir a real server wrote: the sled log goes into a
//! stream on nats-server 2.15; a cluster node started on the stream with an empty cache serves
//! the same sessions and knows their message ids; a second run copies nothing.

use std::process::{Command, Output};

use serde_json::json;

use crate::support::{acme_config, dir_with_flows, JetStream, Serve};

fn migrate(dir: &std::path::Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["migrate", "--to", "jetstream", "--nats", url, "--config"])
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
    // A sled server takes two messages.
    let mut sled = Serve::config(&acme_config(std::path::Path::new("./data")))
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
