//! Connectors' outboxes against the real server (docs/connectors.md#outbox): replies of a connector's
//! env, team and channel are read with a cursor and acknowledged; unacked replies and the
//! cursor survive restarts; a long poll wakes when a reply is appended; replies older than
//! `connectors.outbox_ttl` become a dead letter; every cross-tenant, env, team, channel and
//! connector use of the routes is refused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::registry::{token, CONFIG};
use crate::support::{agent, claims, dir_with_flows, read, sign, Reply, Serve, ServeProcess};

/// A connector token as `POST /connectors` mints it, for any tenant, env, team and id.
fn connector_token(tenant: &str, env: &str, team: &str, id: &str) -> String {
    let mut c = claims(tenant);
    c["env"] = json!(env);
    c["team"] = json!(team);
    c["scope"] = json!("connector");
    c["connector"] = json!(id);
    sign(&c)
}

/// A token with the registry's word and the rights of a token without `scope` (a scoped token
/// has exactly its words' rights, docs/http.md#scopes).
fn admin(tenant: &str) -> String {
    token(tenant, "prod", Some("connectors messages read audit"), None)
}

fn get(server: &ServeProcess, tenant: &str, token: &str, path: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    server.get(path, &[("Authorization", &bearer), ("X-Tenant-ID", tenant)])
}

fn post(server: &ServeProcess, tenant: &str, token: &str, path: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {token}");
    let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", tenant)];
    server.post(path, &headers, &body.to_string())
}

/// Registers `id` of acme/prod/support on `channel`; its token.
fn register(server: &ServeProcess, tenant: &str, team: &str, channel: &str, id: &str) -> String {
    let body = json!({"id": id, "env": "prod", "team": team, "channel": channel,
                      "provider": "test"});
    let reply = post(server, tenant, &admin(tenant), "/api/v1/connectors", &body);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["token"].as_str().unwrap().to_owned()
}

/// Posts a message (tenant token) and returns its replies' texts.
fn message(
    server: &ServeProcess,
    tenant: &str,
    team: &str,
    channel: &str,
    id: &str,
) -> Vec<String> {
    let body = json!({"team": team, "channel": channel, "user": "ada", "text": "hello",
                      "message_id": id});
    let ack = post(
        server,
        tenant,
        &token(tenant, "prod", None, None),
        "/api/v1/messages",
        &body,
    )
    .ok();
    ack["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn outbox(server: &ServeProcess, tenant: &str, token: &str, id: &str) -> Value {
    get(
        server,
        tenant,
        token,
        &format!("/api/v1/connectors/{id}/outbox"),
    )
    .ok()
}

fn texts(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_owned())
        .collect()
}

fn ack(server: &ServeProcess, tenant: &str, token: &str, id: &str, up_to: u64) -> Reply {
    let path = format!("/api/v1/connectors/{id}/outbox/ack");
    post(server, tenant, token, &path, &json!({ "up_to": up_to }))
}

/// The outbox events of `tenant`'s audit export, as (kind, data).
fn outbox_events(server: &ServeProcess, tenant: &str) -> Vec<(String, Value)> {
    let export = get(
        server,
        tenant,
        &admin(tenant),
        "/api/v1/audit/export?format=jsonl",
    );
    assert_eq!(export.status, 200, "{}", export.body);
    export
        .body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("Outbox")))
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

#[test]
fn an_outbox_serves_its_channels_replies_and_its_cursor_survives_restarts() {
    let dir = dir_with_flows();
    let serve = || Serve::config(CONFIG).in_dir(dir.path()).start();
    let mut server = serve();
    // A reply from before the registration is not the connector's.
    message(&server, "acme", "support", "slack", "m0");
    let slack = register(&server, "acme", "support", "slack", "slack-1");
    let telegram = register(&server, "acme", "support", "telegram", "tg-1");
    let first = message(&server, "acme", "support", "slack", "m1");
    let second = message(&server, "acme", "support", "slack", "m2");
    let on_telegram = message(&server, "acme", "support", "telegram", "t1");
    assert!(!first.is_empty() && !on_telegram.is_empty());

    let page = outbox(&server, "acme", &slack, "slack-1");
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(texts(&page), all, "{page}");
    let items = page["items"].as_array().unwrap().clone();
    assert_eq!(items[0]["reply_to"], "m1", "{page}");
    assert_eq!(items.last().unwrap()["reply_to"], "m2", "{page}");
    let seqs: Vec<u64> = items
        .iter()
        .map(|i| i["tenant_seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let cursor = page["cursor"].as_u64().unwrap();
    assert!(cursor >= *seqs.last().unwrap(), "{page}");
    // The telegram connector sees only its channel's replies; limit pages them.
    let page_tg = outbox(&server, "acme", &telegram, "tg-1");
    assert_eq!(texts(&page_tg), on_telegram, "{page_tg}");
    let one = get(
        &server,
        "acme",
        &slack,
        "/api/v1/connectors/slack-1/outbox?limit=1",
    )
    .ok();
    assert_eq!(texts(&one), all[..1].to_vec(), "{one}");

    // Acks: past what was handed out, or malformed, change nothing.
    assert_eq!(
        ack(&server, "acme", &slack, "slack-1", cursor + 1000).error(409),
        "outbox_ack_ahead"
    );
    let path = "/api/v1/connectors/slack-1/outbox/ack";
    let bad = post(&server, "acme", &slack, path, &json!({"up_to": "soon"}));
    assert_eq!(bad.status, 400, "{}", bad.body);
    let last_of_first = seqs[first.len() - 1];
    let acked = ack(&server, "acme", &slack, "slack-1", last_of_first).ok();
    assert_eq!(acked["acked"], last_of_first);
    // Again is a no-op; behind it is refused.
    ack(&server, "acme", &slack, "slack-1", last_of_first).ok();
    assert_eq!(
        ack(&server, "acme", &slack, "slack-1", seqs[0] - 1).error(409),
        "outbox_ack_behind"
    );
    assert_eq!(texts(&outbox(&server, "acme", &slack, "slack-1")), second);
    server.stop();

    // Unacked replies survive a restart, and so does the cursor.
    let mut server = serve();
    let page = outbox(&server, "acme", &slack, "slack-1");
    assert_eq!(texts(&page), second, "{page}");
    assert_eq!(page["acked"], last_of_first);
    // Before any read after a restart, nothing was handed out past the cursor.
    let cursor = page["cursor"].as_u64().unwrap();
    ack(&server, "acme", &slack, "slack-1", cursor).ok();
    server.stop();
    let server = serve();
    let page = outbox(&server, "acme", &slack, "slack-1");
    assert_eq!(page["items"], json!([]), "{page}");
    assert_eq!(page["acked"], cursor);
    assert_eq!(
        texts(&outbox(&server, "acme", &telegram, "tg-1")),
        on_telegram
    );
    let events = outbox_events(&server, "acme");
    let acks: Vec<u64> = events
        .iter()
        .filter(|(k, d)| k == "OutboxAcked" && d["connector"] == "slack-1")
        .map(|(_, d)| d["up_to"].as_u64().unwrap())
        .collect();
    assert_eq!(acks, vec![last_of_first, cursor], "{events:?}");
    let metrics = server.get_metrics().body;
    for family in ["tenantry_outbox_served_total", "tenantry_outbox_lag_events"] {
        let series = format!(r#"{family}{{tenant="acme",env="prod",connector="slack-1"}}"#);
        assert!(metrics.contains(&series), "{series}: {metrics}");
    }
}

#[test]
fn a_long_poll_wakes_when_a_reply_is_appended_and_its_limits_are_checked() {
    let server = Serve::config(CONFIG).start();
    let slack = register(&server, "acme", "support", "slack", "slack-1");
    for (query, field) in [
        ("wait=61", "wait"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("after=3", "query"),
    ] {
        let reply = get(
            &server,
            "acme",
            &slack,
            &format!("/api/v1/connectors/slack-1/outbox?{query}"),
        );
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.body.contains(field), "{query}: {}", reply.body);
    }
    // Nothing pending: a long poll waits its time, then answers empty.
    let started = Instant::now();
    let empty = get(
        &server,
        "acme",
        &slack,
        "/api/v1/connectors/slack-1/outbox?wait=1",
    )
    .ok();
    assert_eq!(empty["items"], json!([]));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    let url = server.url("/api/v1/connectors/slack-1/outbox?wait=30");
    let bearer = format!("Bearer {slack}");
    let polled = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = read(
            agent(Duration::from_secs(40))
                .get(url)
                .header("Authorization", &bearer)
                .header("X-Tenant-ID", "acme")
                .call(),
        );
        (reply, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(700));
    let replies = message(&server, "acme", "support", "slack", "m1");
    let (reply, waited) = polled.join().unwrap();
    assert_eq!(texts(&reply.ok()), replies);
    assert!(
        waited >= Duration::from_millis(600),
        "did not wait: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "not woken by the append: {waited:?}"
    );
}

#[test]
fn replies_older_than_the_outbox_ttl_become_a_dead_letter() {
    let dir = dir_with_flows();
    let config = CONFIG.replace(
        "heartbeat_interval = \"1s\"",
        "heartbeat_interval = \"1s\"\noutbox_ttl = \"2s\"",
    );
    let mut server = Serve::config(&config).in_dir(dir.path()).start();
    let slack = register(&server, "acme", "support", "slack", "slack-1");
    let replies = message(&server, "acme", "support", "slack", "m1");
    assert_eq!(texts(&outbox(&server, "acme", &slack, "slack-1")), replies);
    let started = Instant::now();
    let dead = loop {
        let events = outbox_events(&server, "acme");
        if let Some((_, d)) = events.iter().find(|(k, _)| k == "OutboxDeadLettered") {
            break d.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no dead letter: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(started.elapsed() >= Duration::from_secs(1), "dead too soon");
    assert_eq!(dead["connector"], "slack-1");
    assert_eq!(dead["count"], replies.len() as u64, "{dead}");
    let page = outbox(&server, "acme", &slack, "slack-1");
    assert_eq!(page["items"], json!([]), "{page}");
    assert_eq!(page["acked"], dead["up_to"]);
    let metrics = server.get_metrics().body;
    let series = format!(
        "tenantry_outbox_dead_lettered_total{{tenant=\"acme\",env=\"prod\",connector=\"slack-1\"}} {}",
        replies.len()
    );
    assert!(metrics.contains(&series), "{metrics}");
    server.stop();
    // The cursor past the dead letter survives a restart.
    let server = Serve::config(&config).in_dir(dir.path()).start();
    let page = outbox(&server, "acme", &slack, "slack-1");
    assert_eq!(page["items"], json!([]), "{page}");
    assert_eq!(page["acked"], dead["up_to"]);
}

#[test]
fn the_outbox_routes_refuse_every_cross_tenant_env_team_channel_and_connector_use() {
    let server = Serve::config(CONFIG).start();
    let slack = register(&server, "acme", "support", "slack", "slack-1");
    let telegram = register(&server, "acme", "support", "telegram", "tg-1");
    register(&server, "acme", "sales", "teams", "teams-1");
    // The built-in webhook channels' ids are reserved.
    let body = json!({"id": "webhook-0123", "env": "prod", "team": "support",
                      "channel": "slack", "provider": "test"});
    let reply = post(&server, "acme", &admin("acme"), "/api/v1/connectors", &body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("webhook"), "{}", reply.body);
    // bigcorp's connector of the same id sees only bigcorp's replies.
    let big = register(&server, "bigcorp", "helpdesk", "webchat", "slack-1");
    let acme_replies = message(&server, "acme", "support", "slack", "m1");
    let big_replies = message(&server, "bigcorp", "helpdesk", "webchat", "b1");
    assert_eq!(
        texts(&outbox(&server, "acme", &slack, "slack-1")),
        acme_replies
    );
    assert_eq!(
        texts(&outbox(&server, "bigcorp", &big, "slack-1")),
        big_replies
    );

    let read = |tenant: &str, token: &str, id: &str| {
        get(
            &server,
            tenant,
            token,
            &format!("/api/v1/connectors/{id}/outbox"),
        )
    };
    // Another connector's outbox (another channel, another team): 403 before anything.
    for (token, id) in [
        (&slack, "tg-1"),
        (&telegram, "slack-1"),
        (&slack, "teams-1"),
    ] {
        assert_eq!(
            read("acme", token, id).error(403),
            "connector_token_restricted",
            "{id}"
        );
        assert_eq!(
            ack(&server, "acme", token, id, 1).error(403),
            "connector_token_restricted"
        );
    }
    // Another tenant: bigcorp's connector token for acme.
    assert_eq!(read("acme", &big, "slack-1").status, 403);
    assert_eq!(ack(&server, "acme", &big, "slack-1", 1).status, 403);
    // Another env: the same connector id in acme's default env is not registered there.
    let default_env = connector_token("acme", "default", "support", "slack-1");
    assert_eq!(
        read("acme", &default_env, "slack-1").error(404),
        "connector_not_found"
    );
    assert_eq!(
        ack(&server, "acme", &default_env, "slack-1", 1).error(404),
        "connector_not_found"
    );
    // Another team in the token than the registration's.
    let other_team = connector_token("acme", "prod", "sales", "slack-1");
    assert_eq!(
        read("acme", &other_team, "slack-1").error(403),
        "connector_team_mismatch"
    );
    assert_eq!(
        ack(&server, "acme", &other_team, "slack-1", 1).error(403),
        "connector_team_mismatch"
    );
    // Tenant tokens: the connectors scope is needed; a team-scoped one sees its team only;
    // another env's does not find it.
    let plain = token("acme", "prod", None, None);
    assert_eq!(read("acme", &plain, "slack-1").error(403), "scope_required");
    let sales = token("acme", "prod", Some("connectors"), Some("sales"));
    assert_eq!(
        read("acme", &sales, "slack-1").error(404),
        "connector_not_found"
    );
    assert_eq!(
        ack(&server, "acme", &sales, "slack-1", 1).error(404),
        "connector_not_found"
    );
    let default_admin = token("acme", "default", Some("connectors"), None);
    assert_eq!(
        read("acme", &default_admin, "slack-1").error(404),
        "connector_not_found"
    );
    assert_eq!(
        read("acme", &admin("acme"), "nobody").error(404),
        "connector_not_found"
    );
    // An admin of the env reads it; nothing above moved a cursor.
    let page = read("acme", &admin("acme"), "slack-1").ok();
    assert_eq!(texts(&page), acme_replies);
    assert_eq!(
        texts(&outbox(&server, "bigcorp", &big, "slack-1")),
        big_replies
    );
    assert!(outbox_events(&server, "acme").is_empty());
    assert!(outbox_events(&server, "bigcorp").is_empty());
}

/// The outbox on the JetStream log: replies served, an ack and the unacked rest surviving a
/// restart that rebuilds from the stream, and a long poll woken by an append.
#[test]
fn the_outbox_works_on_a_jetstream_log() {
    let js = crate::support::JetStream::single();
    let config = format!(
        "{CONFIG}[nats]\nurl = \"{}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        js.url(0)
    );
    let dir = dir_with_flows();
    let serve = || Serve::config(&config).in_dir(dir.path()).start();
    let mut server = serve();
    let slack = register(&server, "acme", "support", "slack", "slack-1");
    let first = message(&server, "acme", "support", "slack", "m1");
    let second = message(&server, "acme", "support", "slack", "m2");
    let page = outbox(&server, "acme", &slack, "slack-1");
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(texts(&page), all, "{page}");
    let up_to = page["items"][first.len() - 1]["tenant_seq"]
        .as_u64()
        .unwrap();
    ack(&server, "acme", &slack, "slack-1", up_to).ok();
    server.stop();
    let server = serve();
    let page = outbox(&server, "acme", &slack, "slack-1");
    assert_eq!(texts(&page), second, "{page}");
    assert_eq!(page["acked"], up_to);
    let cursor = page["cursor"].as_u64().unwrap();
    ack(&server, "acme", &slack, "slack-1", cursor).ok();
    let url = server.url("/api/v1/connectors/slack-1/outbox?wait=30");
    let bearer = format!("Bearer {slack}");
    let polled = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = read(
            agent(Duration::from_secs(40))
                .get(url)
                .header("Authorization", &bearer)
                .header("X-Tenant-ID", "acme")
                .call(),
        );
        (reply, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let third = message(&server, "acme", "support", "slack", "m3");
    let (reply, waited) = polled.join().unwrap();
    assert_eq!(texts(&reply.ok()), third);
    assert!(waited < Duration::from_secs(10), "not woken: {waited:?}");
}
