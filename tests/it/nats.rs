//! The NATS edge against a real `nats-server` on a free loopback port and the real `tenantry
//! serve` binary.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::support::{free_port, Nats, Serve, ServeProcess};
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::TenantId;

const PREFIX: &str = "greentic.messaging";

/// `tenantry serve` with the shipped config and NATS ingress from the nats-server on
/// `nats_port` (with `nats_keys` added to the `[nats]` section), logging at `level`.
fn serve(nats_port: u16, level: &str, nats_keys: &str) -> Serve {
    let nats = format!(
        "url = \"nats://127.0.0.1:{nats_port}\"\nsubject_prefix = \"{PREFIX}\"\n{nats_keys}"
    );
    Serve::shipped().section("nats", &nats).log(level)
}

fn start(nats_port: u16) -> ServeProcess {
    serve(nats_port, "info", "").start()
}

/// SIGTERM, wait, and open the log it wrote.
fn stop(mut server: ServeProcess) -> (EventLog, tempfile::TempDir) {
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let dir = server.take_dir();
    let log = EventLog::open(&dir.path().join("data/log"), &LogOptions::default()).unwrap();
    (log, dir)
}

fn ingress(env: &str, tenant: &str, team: &str, channel: &str) -> String {
    format!("{PREFIX}.ingress.{env}.{tenant}.{team}.{channel}")
}

async fn request(
    client: &async_nats::Client,
    subject: String,
    body: serde_json::Value,
    msg_id: Option<&str>,
) -> serde_json::Value {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert("Nats-Msg-Id", id);
    }
    // The edge flushes its subscription before it says it is subscribed, yet under a loaded
    // full test run a first request has once found no responder; such a request reached no
    // server, so asking again (for a few seconds) changes nothing the tests assert.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let request = async_nats::Request::new()
            .payload(body.to_string().into())
            .headers(headers.clone())
            .timeout(Some(Duration::from_secs(5)));
        match client.send_request(subject.clone(), request).await {
            Ok(reply) => return serde_json::from_slice(&reply.payload).unwrap(),
            Err(e)
                if e.kind() == async_nats::RequestErrorKind::NoResponders
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("request on {subject}: {e:?}"),
        }
    }
}

fn received_ids(log: &EventLog, tenant: &str) -> Vec<String> {
    log.tenant(&TenantId::parse(tenant).unwrap())
        .events(1..=u64::MAX)
        .filter_map(|e| match e.unwrap().event.kind {
            EventKind::MessageReceived { message_id, .. } => Some(message_id),
            _ => None,
        })
        .collect()
}

#[test]
fn ingress_acks_after_append_and_egress_stays_per_tenant() {
    let nats = Nats::start(free_port());
    let server = start(nats.port);
    // Started means nats-server lists the ingress subscription, under the process' name.
    let name = format!("tenantry pid {}", server.pid());
    let listed = |prefix| crate::support::has_subscription(nats.port, &name, prefix);
    assert_eq!(listed("greentic.messaging.ingress."), Some(true));
    assert_eq!(listed("greentic.messaging.egress."), Some(false));
    let rt = crate::support::tokio_runtime();
    rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let mut acme_out = client
            .subscribe(format!("{PREFIX}.egress.*.acme.>"))
            .await
            .unwrap();
        let mut big_out = client
            .subscribe(format!("{PREFIX}.egress.*.bigcorp.>"))
            .await
            .unwrap();
        client.flush().await.unwrap();

        let ack = request(
            &client,
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"user": "ada", "text": "hello"}),
            None,
        )
        .await;
        assert!(ack["session"].is_string(), "{ack}");
        assert_eq!(ack["seq"], 2, "{ack}");
        let big = request(
            &client,
            ingress("prod", "bigcorp", "helpdesk", "webchat"),
            serde_json::json!({"user": "bob", "text": "bigcorp-canary", "message_id": "b-1"}),
            None,
        )
        .await;
        assert_eq!(big["seq"], 2, "{big}");

        let out = tokio::time::timeout(Duration::from_secs(5), acme_out.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out.subject.as_str(),
            format!("{PREFIX}.egress.prod.acme.support.slack")
        );
        let body: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(body["text"], "Welcome to ACME Support! How can I help?");
        assert_eq!(body["session"], ack["session"]);
        let out = tokio::time::timeout(Duration::from_secs(5), big_out.next())
            .await
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(body["in_reply_to"], "b-1");
        // acme's egress subscriber never sees bigcorp's reply.
        let nothing = tokio::time::timeout(Duration::from_millis(300), acme_out.next()).await;
        assert!(nothing.is_err(), "unexpected egress on acme: {nothing:?}");

        // Malformed subject and payloads: an error reply, nothing delivered.
        for (subject, body) in [
            (
                ingress("prod", "ACME", "support", "slack"),
                serde_json::json!({"user": "x", "text": "y"}),
            ),
            (
                ingress("prod", "acme", "support", "slack"),
                serde_json::json!({"user": "x"}),
            ),
            (
                ingress("prod", "acme", "support", "slack"),
                serde_json::json!({"user": "x", "text": "y", "extra": 1}),
            ),
            (
                ingress("prod", "acme", "support", "slack"),
                serde_json::json!({"user": "x", "text": "y", "session": "../etc"}),
            ),
        ] {
            let reply = request(&client, subject.clone(), body, None).await;
            assert!(reply["error"]["code"].is_string(), "{subject}: {reply}");
        }
        // A channel the team does not have is refused by the runtime.
        let reply = request(
            &client,
            ingress("prod", "acme", "support", "fax"),
            serde_json::json!({"user": "x", "text": "y"}),
            None,
        )
        .await;
        assert_eq!(reply["error"]["code"], "unknown_channel");

        // Rejections and acks are counted on /metrics.
        let mut conn = std::net::TcpStream::connect(server.metrics.as_deref().unwrap()).unwrap();
        std::io::Write::write_all(
            &mut conn,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut conn, &mut text).unwrap();
        for series in [
            r#"tenantry_nats_events_total{event="rejected_subject"} 1"#,
            r#"tenantry_nats_events_total{event="acked"}"#,
        ] {
            assert!(text.contains(series), "{series} not in\n{text}");
        }

        // Duplicates by Nats-Msg-Id get the first ack and append nothing.
        let first = request(
            &client,
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"user": "eve", "text": "once"}),
            Some("dup-7"),
        )
        .await;
        let again = request(
            &client,
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"user": "eve", "text": "once"}),
            Some("dup-7"),
        )
        .await;
        assert_eq!(first, again);
    });
    let (log, _dir) = stop(server);
    let acme = received_ids(&log, "acme");
    assert_eq!(
        acme.iter().filter(|id| *id == "dup-7").count(),
        1,
        "{acme:?}"
    );
    assert!(
        acme.len() == 2,
        "only the two valid acme messages were appended: {acme:?}"
    );
    assert_eq!(received_ids(&log, "bigcorp"), vec!["b-1"]);
    drop(nats);
}

#[test]
fn a_nats_server_restart_loses_no_acked_message() {
    let port = free_port();
    let mut nats = Nats::start(port);
    let server = start(port);
    let rt = crate::support::tokio_runtime();
    let acked: Vec<String> = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap();
        let mut acked = Vec::new();
        let mut restarted = false;
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut n = 0;
        while acked.len() < 60 && Instant::now() < deadline {
            if n == 20 && !restarted {
                nats.kill();
                nats = Nats::start(port);
                restarted = true;
            }
            let id = format!("m-{n}");
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let req = async_nats::Request::new()
                .payload(
                    serde_json::json!({"user": "ada", "text": format!("n{n}")})
                        .to_string()
                        .into(),
                )
                .headers(headers)
                .timeout(Some(Duration::from_secs(2)));
            match client
                .send_request(ingress("prod", "acme", "support", "slack"), req)
                .await
            {
                Ok(reply) => {
                    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
                    if body["seq"].is_u64() {
                        acked.push(id);
                        n += 1;
                    }
                }
                // Lost in the outage: retry the same id (never acked, so nothing to lose).
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(restarted);
        acked
    });
    assert!(
        acked.len() >= 60,
        "only {} acks within the deadline",
        acked.len()
    );
    let (log, _dir) = stop(server);
    let stored = received_ids(&log, "acme");
    for id in &acked {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "acked {id} stored {} times",
            stored.iter().filter(|s| *s == id).count()
        );
    }
}

#[test]
fn logs_are_tenant_tagged_and_never_carry_message_text() {
    const TEXT_CANARY: &str = "TEXT-CANARY-7f3a";
    let nats = Nats::start(free_port());
    let server = serve(nats.port, "debug", "").start();
    let rt = crate::support::tokio_runtime();
    rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let ack = request(
            &client,
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"user": "ada", "text": format!("my card is {TEXT_CANARY}")}),
            None,
        )
        .await;
        assert!(ack["seq"].is_u64(), "{ack}");
    });
    server.sigterm();
    let mut lines = Vec::new();
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    assert!(
        !lines.iter().any(|l| l.contains(TEXT_CANARY)),
        "message text in the log"
    );
    let acked = lines
        .iter()
        .find(|l| l.contains("message acked"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    for field in [
        "tenant=acme",
        "env=prod",
        "team=support",
        "channel=slack",
        "session=",
    ] {
        assert!(acked.contains(field), "{field} missing in {acked}");
    }
}

/// The shipped nats-server config with per-tenant users (`deploy/nats-server.conf`).
fn deploy_conf() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats-server.conf")
}

/// A client logged in as `user`, with its inbox under `_INBOX_{user}` as the config requires;
/// the server's error reports (permissions violations) arrive on the receiver.
async fn tenant_client(
    port: u16,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, errors) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    (client, errors)
}

async fn next_error(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the server reported no error")
        .unwrap()
}

#[test]
fn with_per_tenant_nats_users_a_tenant_cannot_publish_into_anothers_subjects() {
    const TENANTRY_PASSWORD: &str = "tenantry-pw-canary-51c2";
    let env = [
        ("TENANTRY_NATS_PASSWORD", TENANTRY_PASSWORD),
        ("ACME_NATS_PASSWORD", "acme-pw"),
        ("BIGCORP_NATS_PASSWORD", "bigcorp-pw"),
    ];
    // The README shows this very file.
    let conf = std::fs::read_to_string(deploy_conf()).unwrap();
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    assert!(
        readme.contains(&conf),
        "README.md does not show deploy/nats-server.conf as it is"
    );

    let nats = Nats::start_with_config(free_port(), &deploy_conf(), &env);
    // tenantry logs in as its own user, the password read from its environment.
    let server = serve(
        nats.port,
        "debug",
        "user = \"tenantry\"\npassword = { env = \"TENANTRY_NATS_PASSWORD\" }",
    )
    .env("TENANTRY_NATS_PASSWORD", TENANTRY_PASSWORD)
    .start();
    let started = server.started.clone();
    let rt = crate::support::tokio_runtime();
    rt.block_on(async {
        // Without credentials nobody gets in.
        let anonymous = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port)).await;
        assert!(anonymous.is_err(), "an anonymous client connected");

        let (acme, mut acme_errors) = tenant_client(nats.port, "acme", "acme-pw").await;
        let ack = request(
            &acme,
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"user": "ada", "text": "hello", "message_id": "acme-own"}),
            None,
        )
        .await;
        assert_eq!(ack["seq"], 2, "acme on its own subject: {ack}");

        // acme publishing as bigcorp: the server refuses it, tenantry never sees it.
        let forged = async_nats::Request::new()
            .payload(
                serde_json::json!({"user": "mallory", "text": "x", "message_id": "forged"})
                    .to_string()
                    .into(),
            )
            .timeout(Some(Duration::from_secs(2)));
        let reply = acme
            .send_request(ingress("prod", "bigcorp", "helpdesk", "webchat"), forged)
            .await;
        assert!(
            reply.is_err(),
            "acme got a reply from bigcorp's subject: {reply:?}"
        );
        let error = next_error(&mut acme_errors).await;
        assert!(
            error.contains("Permissions Violation for Publish"),
            "{error}"
        );

        // Nor can acme read bigcorp's replies.
        let _sub = acme
            .subscribe(format!("{PREFIX}.egress.prod.bigcorp.>"))
            .await
            .unwrap();
        let error = next_error(&mut acme_errors).await;
        assert!(
            error.contains("Permissions Violation for Subscription"),
            "{error}"
        );

        // bigcorp, on its own subject, is served as usual.
        let (bigcorp, _) = tenant_client(nats.port, "bigcorp", "bigcorp-pw").await;
        let ack = request(
            &bigcorp,
            ingress("prod", "bigcorp", "helpdesk", "webchat"),
            serde_json::json!({"user": "bob", "text": "hi", "message_id": "big-own"}),
            None,
        )
        .await;
        assert_eq!(ack["seq"], 2, "bigcorp on its own subject: {ack}");
    });
    server.sigterm();
    let mut lines = started;
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    assert!(
        !lines.iter().any(|l| l.contains(TENANTRY_PASSWORD)),
        "tenantry logged its NATS password"
    );
    assert!(
        !lines.iter().any(|l| l.contains("NATS server error")),
        "tenantry's own user was refused something: {lines:#?}"
    );
    let (log, _dir) = stop(server);
    assert_eq!(received_ids(&log, "acme"), vec!["acme-own"]);
    assert_eq!(received_ids(&log, "bigcorp"), vec!["big-own"]);
}

#[test]
fn a_runtime_error_is_answered_alike_on_nats_and_http() {
    let nats = Nats::start(free_port());
    let server = start(nats.port);
    let rt = crate::support::tokio_runtime();
    let cases = [
        // A channel the team does not have.
        (
            ingress("prod", "acme", "support", "fax"),
            serde_json::json!({"team": "support", "channel": "fax", "user": "ada", "text": "x"}),
        ),
        // A message too large for the runtime's limits (the edge passes it on).
        (
            ingress("prod", "acme", "support", "slack"),
            serde_json::json!({"team": "support", "channel": "slack", "user": "u".repeat(300),
                               "text": "x"}),
        ),
    ];
    for (subject, http_body) in cases {
        let mut nats_body = http_body.clone();
        let fields = nats_body.as_object_mut().unwrap();
        fields.remove("team");
        fields.remove("channel");
        let over_nats = rt.block_on(async {
            let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
                .await
                .unwrap();
            request(&client, subject.clone(), nats_body, None).await
        });
        let reply = server.post_as("acme", &http_body);
        let (status, over_http) = (reply.status, reply.json());
        assert_eq!(status, 400, "{over_http}");
        assert!(
            over_nats["error"]["code"].is_string(),
            "{subject}: {over_nats}"
        );
        assert_eq!(over_nats["error"], over_http["error"], "{subject}");
    }
}

/// `nats.url` may list several servers (comma-separated): with the first one dead and the second
/// live, `serve` connects to the live one and its NATS edge acks.
#[test]
fn a_url_list_connects_past_a_dead_server_to_a_live_one() {
    let nats = Nats::start(free_port());
    let dead = free_port();
    let keys = format!(
        "url = \"nats://127.0.0.1:{dead}, nats://127.0.0.1:{}\"\nsubject_prefix = \"{PREFIX}\"\n",
        nats.port
    );
    let server = Serve::shipped().section("nats", &keys).log("info").start();
    let rt = crate::support::tokio_runtime();
    let ack = rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        // Until the edge has connected and subscribed, a request finds no responder.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let request = async_nats::Request::new()
                .payload(
                    serde_json::json!({"user": "ada", "text": "hi", "message_id": "list-1"})
                        .to_string()
                        .into(),
                )
                .timeout(Some(Duration::from_secs(2)));
            match client
                .send_request(ingress("prod", "acme", "support", "slack"), request)
                .await
            {
                Ok(reply) => break serde_json::from_slice::<serde_json::Value>(&reply.payload),
                Err(e) => {
                    assert!(Instant::now() < deadline, "no ack from the edge: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        .unwrap()
    });
    assert_eq!(ack["seq"], 2, "{ack}");
    let (log, _dir) = stop(server);
    assert_eq!(received_ids(&log, "acme"), ["list-1"]);
    drop(nats);
}
