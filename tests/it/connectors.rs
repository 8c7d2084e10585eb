//! Connector tokens (`scope: "connector"` with `team` and `connector` claims) against the real
//! server: they may post messages of their own team and registered channel, and call nothing
//! else but their own heartbeat (docs/http.md#connector-tokens). The registry itself is
//! `registry.rs`.

use serde_json::{json, Value};

use crate::support::{claims, sign, Serve, ServeProcess};

/// Claims of a connector token of acme/prod, team `support`, connector `slack-1`.
fn connector_claims() -> Value {
    let mut c = claims("acme");
    c["scope"] = json!("connector");
    c["team"] = json!("support");
    c["connector"] = json!("slack-1");
    c
}

/// POST `body` to `path` as acme with `token`.
fn post(server: &ServeProcess, token: &str, path: &str, body: &Value) -> crate::support::Reply {
    let bearer = format!("Bearer {token}");
    server.post(
        path,
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
        &body.to_string(),
    )
}

#[track_caller]
fn restricted(reply: &crate::support::Reply) {
    assert_eq!(
        reply.error(403),
        "connector_token_restricted",
        "{}",
        reply.body
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("POST /api/v1/messages"), "{message}");
}

/// Registers acme/prod's connector `slack-1` (team support, channel slack) with an admin token.
fn register_slack_1(server: &ServeProcess) {
    let mut admin = claims("acme");
    admin["scope"] = json!("admin");
    let body = json!({"id": "slack-1", "env": "prod", "team": "support", "channel": "slack",
                      "provider": "messaging-slack"});
    let reply = post(server, &sign(&admin), "/api/v1/connectors", &body);
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn a_connector_token_posts_its_teams_messages_and_nothing_else() {
    let server = Serve::shipped().start();
    register_slack_1(&server);
    let token = sign(&connector_claims());
    let bearer = format!("Bearer {token}");
    let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];

    // Its own team: accepted, with or without the team in the body.
    let ack = post(
        &server,
        &token,
        "/api/v1/messages",
        &json!({"team": "support", "channel": "slack", "user": "alice", "text": "hello"}),
    )
    .ok();
    let session = ack["session"].as_str().unwrap().to_owned();
    post(
        &server,
        &token,
        "/api/v1/messages",
        &json!({"channel": "slack", "user": "bob", "text": "hi"}),
    )
    .ok();

    // Another team: 403, nothing written.
    let other_team = post(
        &server,
        &token,
        "/api/v1/messages",
        &json!({"team": "sales", "channel": "teams", "user": "eve", "text": "x"}),
    );
    assert_eq!(
        other_team.error(403),
        "team_mismatch",
        "{}",
        other_team.body
    );
    let wrong_header = server.post(
        "/api/v1/messages",
        &[
            ("Authorization", bearer.as_str()),
            ("X-Tenant-ID", "acme"),
            ("X-Team-ID", "sales"),
        ],
        &json!({"channel": "teams", "user": "eve", "text": "x"}).to_string(),
    );
    assert_eq!(wrong_header.status, 403, "{}", wrong_header.body);

    // Every other route: 403 connector_token_restricted, reads and writes alike.
    for path in [
        "/api/v1/sessions".to_owned(),
        format!("/api/v1/sessions/{session}"),
        format!("/api/v1/sessions/{session}/events"),
        "/api/v1/usage".to_owned(),
        "/api/v1/audit/export".to_owned(),
        "/api/v1/audit/verify".to_owned(),
    ] {
        restricted(&server.get(&path, &headers));
    }
    restricted(&post(
        &server,
        &token,
        &format!("/api/v1/sessions/{session}/close"),
        &json!({}),
    ));

    // A tenant token still reads: the connector's messages were written to its team only.
    let sessions = server.get_as("acme", "/api/v1/sessions?team=support").ok();
    assert!(sessions.to_string().contains(&session), "{sessions}");
}

#[test]
fn malformed_connector_tokens_are_invalid() {
    let server = Serve::shipped().start();
    let body = json!({"team": "support", "channel": "slack", "user": "alice", "text": "hello"});
    let mut no_connector = connector_claims();
    no_connector.as_object_mut().unwrap().remove("connector");
    let mut no_team = connector_claims();
    no_team.as_object_mut().unwrap().remove("team");
    let mut stray = claims("acme");
    stray["connector"] = json!("slack-1");
    let mut with_admin = connector_claims();
    with_admin["scope"] = json!("connector admin");
    for (what, c) in [
        ("no connector claim", no_connector),
        ("no team claim", no_team),
        ("connector claim without the scope", stray),
        ("connector with another word", with_admin),
    ] {
        let reply = post(&server, &sign(&c), "/api/v1/messages", &body);
        assert_eq!(reply.error(401), "invalid_token", "{what}: {}", reply.body);
    }
    // Another tenant's connector token never reaches acme.
    let mut zeta = connector_claims();
    zeta["tenant"] = json!("bigcorp");
    let reply = post(&server, &sign(&zeta), "/api/v1/messages", &body);
    assert_eq!(reply.status, 403, "{}", reply.body);
}
