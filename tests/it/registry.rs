//! The connector registry against the real server (docs/connectors.md#connectors): registration and
//! its token, env and team rules, heartbeats and the live/stale/dead decay, self-healing after
//! the registry lost a connector, the events in the audit export, and every cross-tenant, env,
//! team, channel and connector use of a connector token refused.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::{claims, copy_dir, dir_with_flows, sign, Reply, Serve, ServeProcess};

/// acme (envs `default` and `prod`; support: slack, telegram; sales: teams) and bigcorp, with a
/// 1 s heartbeat interval.
pub(crate) const CONFIG: &str = r#"[server]
data_dir = "./data"
[auth]
issuer = "tenantry"
audience = "tenantry-api"
[connectors]
heartbeat_interval = "1s"
[tenants.acme]
name = "ACME"
environments = ["default", "prod"]
[tenants.acme.teams.support]
flow = "flows/acme_support.yaml"
[tenants.acme.teams.support.channels.slack]
provider = "messaging-slack"
[tenants.acme.teams.support.channels.telegram]
provider = "messaging-telegram"
[tenants.acme.teams.sales]
flow = "flows/acme_support.yaml"
[tenants.acme.teams.sales.channels.teams]
provider = "messaging-teams"
[tenants.bigcorp]
name = "BigCorp"
environments = ["prod"]
[tenants.bigcorp.teams.helpdesk]
flow = "flows/bigcorp_helpdesk.yaml"
[tenants.bigcorp.teams.helpdesk.channels.webchat]
provider = "messaging-webchat"
"#;

/// A token of `tenant` in `env` with `scope` (and `team`, when given).
pub(crate) fn token(tenant: &str, env: &str, scope: Option<&str>, team: Option<&str>) -> String {
    let mut c = claims(tenant);
    c["env"] = json!(env);
    if let Some(scope) = scope {
        c["scope"] = json!(scope);
    }
    if let Some(team) = team {
        c["team"] = json!(team);
    }
    sign(&c)
}

/// acme's prod token with the registry's word and the rights of a token without `scope` (a
/// scoped token has exactly its words' rights, docs/http.md#scopes).
fn admin() -> String {
    token("acme", "prod", Some("connectors messages read audit"), None)
}

fn headers<'a>(bearer: &'a str, tenant: &'a str) -> [(&'a str, &'a str); 2] {
    [("Authorization", bearer), ("X-Tenant-ID", tenant)]
}

fn post(server: &ServeProcess, token: &str, path: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {token}");
    server.post(path, &headers(&bearer, "acme"), &body.to_string())
}

fn get(server: &ServeProcess, token: &str, path: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    server.get(path, &headers(&bearer, "acme"))
}

/// The slack connector `slack-1` of acme/prod/support.
fn slack_1() -> Value {
    json!({"id": "slack-1", "env": "prod", "team": "support", "channel": "slack",
           "provider": "messaging-slack", "version": "1.2.0", "capabilities": ["text"]})
}

/// Registers `body` as acme's prod admin; asserts `status`; the answer.
#[track_caller]
fn register(server: &ServeProcess, body: &Value, status: u16) -> Value {
    let reply = post(server, &admin(), "/api/v1/connectors", body);
    assert_eq!(reply.status, status, "{}", reply.body);
    reply.json()
}

fn heartbeat(server: &ServeProcess, token: &str, id: &str, body: &Value) -> Reply {
    post(
        server,
        token,
        &format!("/api/v1/connectors/{id}/heartbeat"),
        body,
    )
}

/// The state of `id` in acme/prod's list.
fn state_of(server: &ServeProcess, id: &str) -> String {
    let list = get(server, &admin(), "/api/v1/connectors").ok();
    let found = list["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
        .clone();
    found["state"].as_str().unwrap().to_owned()
}

/// The claims of a JWT (its payload, unchecked).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The registry events of acme's audit export (JSONL), as (kind, data).
fn registry_events(server: &ServeProcess) -> Vec<(String, Value)> {
    let export = get(server, &admin(), "/api/v1/audit/export?format=jsonl");
    assert_eq!(export.status, 200, "{}", export.body);
    export
        .body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("Connector"))
        })
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

/// Asserts that acme's whole chain verifies over HTTP.
#[track_caller]
fn assert_verifies(server: &ServeProcess) {
    let reply = get(server, &admin(), "/api/v1/audit/verify");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let last: Value = serde_json::from_str(reply.body.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"]["ok"], true, "{}", reply.body);
}

/// Polls `check` every 100 ms for at most `limit`.
#[track_caller]
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_registration_mints_a_connector_token_held_to_its_team_and_channel() {
    let server = Serve::config(CONFIG).start();
    // The env defaults to "default", which is not the prod token's: 403.
    let mut no_env = slack_1();
    no_env.as_object_mut().unwrap().remove("env");
    let reply = post(&server, &admin(), "/api/v1/connectors", &no_env);
    assert_eq!(reply.error(403), "env_mismatch", "{}", reply.body);
    // With a token of env default it is that env.
    let default_admin = token("acme", "default", Some("admin"), None);
    let reply = post(&server, &default_admin, "/api/v1/connectors", &no_env);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["env"], "default");

    let answer = register(&server, &slack_1(), 201);
    assert_eq!(answer["id"], "slack-1");
    assert_eq!(answer["env"], "prod");
    assert_eq!(answer["heartbeat_interval_s"], 1);
    let connector = answer["token"].as_str().unwrap().to_owned();
    let c = claims_of(&connector);
    for (claim, want) in [
        ("tenant", "acme"),
        ("env", "prod"),
        ("team", "support"),
        ("connector", "slack-1"),
        ("scope", "connector"),
    ] {
        assert_eq!(c[claim], want, "{claim}: {c}");
    }
    // The same registration again: 200, idempotent; another channel or team: 409.
    let again = register(&server, &slack_1(), 200);
    assert_eq!(again["created"], false);
    let mut moved = slack_1();
    moved["channel"] = json!("telegram");
    let reply = post(&server, &admin(), "/api/v1/connectors", &moved);
    assert_eq!(reply.error(409), "connector_conflict");
    assert!(reply.body.contains("channel"), "{}", reply.body);
    // Bad input names its field.
    for (field, value, code) in [
        ("id", json!("Not An Id"), "invalid_parameter"),
        ("channel", json!("teams"), "invalid_channel"),
        ("team", json!("nope"), "invalid_team"),
        ("provider", json!(""), "invalid_parameter"),
    ] {
        let mut bad = slack_1();
        bad[field] = value;
        let reply = post(&server, &admin(), "/api/v1/connectors", &bad);
        assert_eq!(reply.error(400), code, "{field}: {}", reply.body);
        assert!(reply.body.contains(field), "{field}: {}", reply.body);
    }

    // The token heartbeats (fields the registry does not keep are ignored) and posts its own
    // team and channel's messages.
    let body = json!({"env": "prod", "uptime_s": 12});
    let beat = heartbeat(&server, &connector, "slack-1", &body).ok();
    assert_eq!(beat["state"], "live");
    assert_eq!(beat["healed"], false);
    // The metrics listener counts it and shows the states at the scrape.
    let metrics = server.get_metrics();
    assert_eq!(metrics.status, 200);
    for series in [
        r#"tenantry_connector_heartbeats_total{tenant="acme",env="prod",connector="slack-1"} 1"#,
        r#"tenantry_connectors{tenant="acme",env="prod",state="live"} 1"#,
        r#"tenantry_connectors{tenant="acme",env="default",state="live"} 1"#,
        r#"tenantry_connector_heartbeat_age_seconds{tenant="acme",env="prod",connector="slack-1"}"#,
    ] {
        assert!(
            metrics.body.contains(series),
            "{series} in {}",
            metrics.body
        );
    }
    let message = json!({"team": "support", "channel": "slack", "user": "alice", "text": "hi"});
    post(&server, &connector, "/api/v1/messages", &message).ok();

    // ... and nothing else: another channel, team, env, connector id, or route.
    let mut other_channel = message.clone();
    other_channel["channel"] = json!("telegram");
    let reply = post(&server, &connector, "/api/v1/messages", &other_channel);
    assert_eq!(reply.error(403), "connector_channel_mismatch");
    let other_team = json!({"team": "sales", "channel": "teams", "user": "eve", "text": "x"});
    let reply = post(&server, &connector, "/api/v1/messages", &other_team);
    assert_eq!(reply.error(403), "team_mismatch");
    let reply = heartbeat(&server, &connector, "slack-1", &json!({"env": "default"}));
    assert_eq!(reply.error(403), "env_mismatch");
    let reply = heartbeat(&server, &connector, "telegram-1", &json!({"env": "prod"}));
    assert_eq!(reply.error(403), "connector_token_restricted");
    let reply = get(&server, &connector, "/api/v1/connectors");
    assert_eq!(reply.error(403), "connector_token_restricted");
    let reply = post(&server, &connector, "/api/v1/connectors", &slack_1());
    assert_eq!(reply.error(403), "connector_token_restricted");
    // A connector token minted for an id that was never registered posts nothing.
    let mut stray = claims("acme");
    stray["scope"] = json!("connector");
    stray["team"] = json!("support");
    stray["connector"] = json!("ghost");
    let reply = post(&server, &sign(&stray), "/api/v1/messages", &message);
    assert_eq!(reply.error(403), "connector_not_registered");

    // Listing: the caller's env (and team) only, with the connectors or admin scope.
    let prod = get(&server, &admin(), "/api/v1/connectors").ok();
    let ids: Vec<&str> = prod["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["slack-1"], "{prod}");
    assert_eq!(prod["connectors"][0]["state"], "live");
    let default = get(&server, &default_admin, "/api/v1/connectors").ok();
    assert_eq!(default["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(default["connectors"][0]["env"], "default", "{default}");
    let plain = token("acme", "prod", None, None);
    for reply in [
        get(&server, &plain, "/api/v1/connectors"),
        post(&server, &plain, "/api/v1/connectors", &slack_1()),
        get(
            &server,
            &token("acme", "prod", Some("read messages"), None),
            "/api/v1/connectors",
        ),
    ] {
        assert_eq!(reply.error(403), "scope_required", "{}", reply.body);
    }
    // Another team's token neither sees nor registers support's connectors.
    let sales = token("acme", "prod", Some("connectors"), Some("sales"));
    let listed = get(&server, &sales, "/api/v1/connectors").ok();
    assert_eq!(listed["connectors"], json!([]), "{listed}");
    let mut sales_slack = slack_1();
    sales_slack["id"] = json!("slack-2");
    let reply = post(&server, &sales, "/api/v1/connectors", &sales_slack);
    assert_eq!(reply.error(403), "team_mismatch");
    // Another tenant's token: refused on acme, and its own list does not show acme's.
    let bigcorp = token("bigcorp", "prod", Some("admin"), None);
    assert_eq!(
        get(&server, &bigcorp, "/api/v1/connectors").error(403),
        "tenant_mismatch"
    );
    assert_eq!(
        post(&server, &bigcorp, "/api/v1/connectors", &slack_1()).error(403),
        "tenant_mismatch"
    );
    let bearer = format!("Bearer {bigcorp}");
    let theirs = server
        .get("/api/v1/connectors", &headers(&bearer, "bigcorp"))
        .ok();
    assert_eq!(theirs["connectors"], json!([]), "{theirs}");

    // The system session is not a conversation: not listed, not usage, not writable.
    let sessions = get(&server, &admin(), "/api/v1/sessions").ok();
    assert!(
        !sessions.to_string().contains("sys-connector-"),
        "{sessions}"
    );
    let usage = get(&server, &admin(), "/api/v1/usage").ok();
    assert!(
        !usage.to_string().contains("\"sessions_started\":2"),
        "{usage}"
    );
    let mut into_system = message.clone();
    into_system["session"] = json!("sys-connector-slack-1");
    let admin_token = admin();
    let reply = post(&server, &admin_token, "/api/v1/messages", &into_system);
    assert_eq!(reply.error(400), "invalid_message", "{}", reply.body);
    // Closing is an operator action: a scoped token needs `admin` for it.
    let operator = token("acme", "prod", Some("admin"), None);
    let reply = post(
        &server,
        &operator,
        "/api/v1/sessions/sys-connector-slack-1/close",
        &json!({}),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);

    // The registration is an event of acme's log (the export is prod's: the default env's
    // registration is not in it), and the chain verifies.
    let events = registry_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events
        .iter()
        .all(|(kind, data)| kind == "ConnectorRegistered" && data["healed"] == false));
    assert_verifies(&server);
}

#[test]
fn a_connector_goes_stale_then_dead_without_heartbeats_and_live_again_with_one() {
    let server = Serve::config(CONFIG).start();
    let connector = register(&server, &slack_1(), 201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Heartbeats every half interval keep it live past 5 intervals.
    let start = Instant::now();
    let mut silent = start;
    while start.elapsed() < Duration::from_millis(5500) {
        std::thread::sleep(Duration::from_millis(500));
        // Taken before the request: the server's last heartbeat is at or after it.
        silent = Instant::now();
        heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"})).ok();
        assert_eq!(state_of(&server, "slack-1"), "live");
    }
    // Silence: stale after 2 intervals, dead after 5.
    eventually(Duration::from_secs(4), "stale", || {
        state_of(&server, "slack-1") == "stale"
    });
    assert!(silent.elapsed() >= Duration::from_secs(2));
    eventually(Duration::from_secs(6), "dead", || {
        state_of(&server, "slack-1") == "dead"
    });
    assert!(silent.elapsed() >= Duration::from_secs(5));
    // The sweep records both changes.
    eventually(Duration::from_secs(3), "recorded dead", || {
        registry_events(&server).len() == 3
    });
    let beat = heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"})).ok();
    assert_eq!(beat["state"], "live");
    assert_eq!(state_of(&server, "slack-1"), "live");
    let events = registry_events(&server);
    let changes: Vec<(String, String)> = events
        .iter()
        .filter(|(kind, _)| kind == "ConnectorStateChanged")
        .map(|(_, d)| {
            (
                d["from"].as_str().unwrap().to_owned(),
                d["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("live", "stale"), ("stale", "dead"), ("dead", "live")]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(changes, want, "{events:?}");
    assert_verifies(&server);
}

#[test]
fn a_heartbeat_heals_a_connector_the_registry_lost_in_a_restore() {
    let dir = dir_with_flows();
    let serve = || Serve::config(CONFIG).in_dir(dir.path()).start();
    // A log with a conversation in it, backed up before the connector registers.
    let mut server = serve();
    let tenant_token = token("acme", "prod", None, None);
    post(
        &server,
        &tenant_token,
        "/api/v1/messages",
        &json!({"team": "support", "channel": "slack", "user": "ada", "text": "hello"}),
    )
    .ok();
    server.stop();
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), backup.path());

    let mut server = serve();
    let connector = register(&server, &slack_1(), 201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    server.stop();
    // A restart keeps it (rebuilt from the log).
    let mut server = serve();
    assert_eq!(state_of(&server, "slack-1"), "live");
    server.stop();
    // Restored from the backup: the registry has never heard of it.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    let server = serve();
    let listed = get(&server, &admin(), "/api/v1/connectors").ok();
    assert_eq!(listed["connectors"], json!([]), "{listed}");
    // Posting waits for the heal; a heartbeat without what a registration needs names it.
    let message = json!({"channel": "slack", "user": "alice", "text": "hi"});
    let reply = post(&server, &connector, "/api/v1/messages", &message);
    assert_eq!(reply.error(403), "connector_not_registered");
    let reply = heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("channel"), "{}", reply.body);
    let reply = heartbeat(
        &server,
        &connector,
        "slack-1",
        &json!({"env": "prod", "channel": "telegram-x", "provider": "messaging-slack"}),
    );
    assert_eq!(reply.error(400), "invalid_channel", "{}", reply.body);
    let healed = heartbeat(
        &server,
        &connector,
        "slack-1",
        &json!({"env": "prod", "channel": "slack", "provider": "messaging-slack",
                "version": "1.2.0"}),
    )
    .ok();
    assert_eq!(healed["healed"], true, "{healed}");
    assert_eq!(healed["state"], "live");
    let listed = get(&server, &admin(), "/api/v1/connectors").ok();
    assert_eq!(listed["connectors"][0]["id"], "slack-1", "{listed}");
    assert_eq!(listed["connectors"][0]["team"], "support");
    assert_eq!(listed["connectors"][0]["channel"], "slack");
    post(&server, &connector, "/api/v1/messages", &message).ok();
    let events = registry_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "ConnectorRegistered");
    assert_eq!(events[0].1["healed"], true);
    // The next heartbeat is an ordinary one.
    let beat = heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"})).ok();
    assert_eq!(beat["healed"], false);
    assert_verifies(&server);
}

/// The registry on the JetStream log: registration, heartbeat and a restart that rebuilds it
/// from the stream; its events are in the export and the chain verifies.
#[test]
fn the_registry_works_on_a_jetstream_log() {
    let js = crate::support::JetStream::single();
    let config = format!(
        "{CONFIG}[nats]\nurl = \"{}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        js.url(0)
    );
    let dir = dir_with_flows();
    let mut server = Serve::config(&config).in_dir(dir.path()).start();
    let connector = register(&server, &slack_1(), 201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let beat = heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"})).ok();
    assert_eq!(beat["healed"], false);
    let message = json!({"channel": "slack", "user": "alice", "text": "hi"});
    post(&server, &connector, "/api/v1/messages", &message).ok();
    server.stop();
    let server = Serve::config(&config).in_dir(dir.path()).start();
    assert_eq!(state_of(&server, "slack-1"), "live");
    let events = registry_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "ConnectorRegistered");
    assert_verifies(&server);
}

/// Deleting a tenant's data (offboarding) forgets its connectors and their metric series; its
/// connector token then posts nothing until a heartbeat heals it into the empty log.
#[test]
fn deleting_a_tenant_forgets_its_connectors() {
    let server = Serve::config(CONFIG).start();
    let connector = register(&server, &slack_1(), 201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    heartbeat(&server, &connector, "slack-1", &json!({"env": "prod"})).ok();
    let series =
        r#"tenantry_connector_heartbeats_total{tenant="acme",env="prod",connector="slack-1"}"#;
    assert!(server.get_metrics().body.contains(series));
    let bearer = format!("Bearer {}", token("acme", "prod", Some("admin"), None));
    let deleted = crate::support::read(
        server
            .agent()
            .delete(&server.url("/api/v1/tenants/acme"))
            .header("Authorization", &bearer)
            .header("X-Tenant-ID", "acme")
            .call(),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let listed = get(&server, &admin(), "/api/v1/connectors").ok();
    assert_eq!(listed["connectors"], json!([]), "{listed}");
    let metrics = server.get_metrics().body;
    assert!(!metrics.contains(r#"connector="slack-1""#), "{metrics}");
    let message = json!({"channel": "slack", "user": "alice", "text": "hi"});
    let reply = post(&server, &connector, "/api/v1/messages", &message);
    assert_eq!(reply.error(403), "connector_not_registered");
}
