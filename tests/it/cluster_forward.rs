//! Cluster forwarding between two real `tenantry serve` nodes on one nats-server (Debian's 2.9
//! is enough: plain request/reply). Node b's static placement (`TENANTRY_STATIC_PLACEMENT`,
//! honoured by debug builds) says node a owns acme and nobody owns bigcorp; a's says it owns
//! everything.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{free_port, Nats, Serve, ServeProcess};
use tenantry::cluster::forward::{subject, OWNER_WAIT, STATIC_PLACEMENT_VAR};
use tenantry::events::keyring::Keyring;
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::TenantId;

const PREFIX: &str = "greentic.messaging";
const STREAM: &str = "TENANTRY_LOG";

/// Node `name` with the shipped config, NATS on `nats_port`, and `placement` if given.
fn node(nats_port: u16, name: &str, placement: Option<&str>) -> ServeProcess {
    let nats = format!("url = \"nats://127.0.0.1:{nats_port}\"\nsubject_prefix = \"{PREFIX}\"\n");
    let mut serve = Serve::shipped()
        .section("nats", &nats)
        .section("cluster", &format!("node = \"{name}\""));
    if let Some(placement) = placement {
        serve = serve.env(STATIC_PLACEMENT_VAR, placement);
    }
    serve.start()
}

/// Waits until node `name`'s forwarding listener answers (anything).
fn wait_for_listener(nats_port: u16, name: &str) {
    let rt = crate::support::tokio_runtime();
    rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{nats_port}"))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let asked = client.request(subject(STREAM, name), "{}".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), asked).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "listener of {name} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// SIGTERM, wait, and the texts of `tenant`'s `MessageReceived` events in the node's log.
fn stop_and_read(mut server: ServeProcess, tenant: &str) -> Vec<String> {
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let dir = server.take_dir();
    // The node seals personal fields: open the log with its data dir's key ring.
    let data = dir.path().join("data");
    let opts = LogOptions {
        keyring: Keyring::for_data_dir(&data, false).unwrap(),
        ..LogOptions::default()
    };
    let log = EventLog::open(&data.join("log"), &opts).unwrap();
    log.tenant(&TenantId::parse(tenant).unwrap())
        .events(1..=u64::MAX)
        .filter_map(|e| match e.unwrap().event.kind {
            EventKind::MessageReceived { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

fn message(text: &str, extra: &Value) -> Value {
    let mut body = json!({"team": "support", "channel": "slack", "user": "alice", "text": text});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn http_to_a_non_owner_is_handled_by_the_owner_and_answered_with_its_ack() {
    let nats = Nats::start(free_port());
    let a = node(nats.port, "a", None);
    let b = node(nats.port, "b", Some("acme=a,bigcorp=unowned"));
    wait_for_listener(nats.port, "a");

    let first = b
        .post_as("acme", &message("hello", &json!({"message_id": "m-1"})))
        .ok();
    assert_eq!(
        first["replies"],
        json!(["Welcome to ACME Support! How can I help?"])
    );
    let session = first["session"].as_str().unwrap().to_owned();

    // A retry through b, and the same message sent to a itself, get the first answer.
    let retry = b
        .post_as("acme", &message("hello", &json!({"message_id": "m-1"})))
        .ok();
    assert_eq!(retry, first);
    let direct = a
        .post_as("acme", &message("hello", &json!({"message_id": "m-1"})))
        .ok();
    assert_eq!(direct, first);

    // The owner's refusal reaches b's client as the owner's edge would give it: the session
    // was opened on slack, so naming it on telegram is a 409 from a's session actor.
    let elsewhere = json!({"session": session, "channel": "telegram"});
    let conflict = b.post_as("acme", &message("hi", &elsewhere));
    assert_eq!(conflict.error(409), "session_channel");
    let on_a = a.post_as("acme", &message("hi", &elsewhere));
    assert_eq!((conflict.status, &conflict.body), (on_a.status, &on_a.body));

    // Bad input is refused by b itself, the same way a refuses it.
    let fax = b.post_as("acme", &message("hi", &json!({"channel": "fax"})));
    assert_eq!(fax.error(400), "unknown_channel");

    // bigcorp has no owner: after waiting for one, a retryable 503 with Retry-After.
    let started = Instant::now();
    let orphan = b.post_as(
        "bigcorp",
        &json!({"team": "helpdesk", "channel": "webchat", "user": "bob", "text": "hi",
                "message_id": "o-1"}),
    );
    assert_eq!(orphan.error(503), "interrupted");
    assert_eq!(orphan.retry_after.as_deref(), Some("1"));
    assert!(started.elapsed() >= OWNER_WAIT, "{:?}", started.elapsed());

    // Everything was appended by a; b appended nothing.
    let on_b = stop_and_read(b, "acme");
    let on_a = stop_and_read(a, "acme");
    assert_eq!(on_a, vec!["hello".to_owned()], "one message appended, on a");
    assert!(on_b.is_empty(), "b appended {on_b:?}");
}

#[test]
fn nats_ingress_is_answered_by_the_owner_alone() {
    let nats = Nats::start(free_port());
    let a = node(nats.port, "a", None);
    let b = node(nats.port, "b", Some("acme=a"));
    wait_for_listener(nats.port, "a");
    let rt = crate::support::tokio_runtime();
    rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        // Both nodes receive these; without message ids, a second handler would append twice.
        for i in 0..5 {
            let body = json!({"session": "s1", "user": "alice", "text": format!("n{i}")});
            let reply = client
                .request(
                    format!("{PREFIX}.ingress.prod.acme.support.slack"),
                    body.to_string().into(),
                )
                .await
                .unwrap();
            let ack: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(ack["session"], "s1", "{ack}");
        }
    });
    let on_b = stop_and_read(b, "acme");
    let on_a = stop_and_read(a, "acme");
    let sent: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    assert_eq!(on_a, sent, "each message once, in order, on the owner");
    assert!(on_b.is_empty(), "b appended {on_b:?}");
}
