//! `GET /api/v1/sessions` filters (`q`, `status`, `since`), its order (latest activity first)
//! and its opaque cursor, against the real `tenantry serve`: only the caller's tenant, env and
//! team are ever listed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{bearer, dir_with_flows, Serve, ServeProcess};

/// `bye` ends the session; anything else is answered (`hello` is last: the run ends there).
const FLOW: &str = r#"name: list_flow
version: "1"
nodes:
  - id: start
    type: route
    config:
      routes:
        - keyword: bye
          next: done
      default: hello
  - id: done
    type: end
  - id: hello
    type: reply
    config:
      message: "hi"
"#;

fn config() -> String {
    let team = |tenant: &str, team: &str| {
        format!(
            "[tenants.{tenant}.teams.{team}]\nflow = \"flows/list.yaml\"\n\
             [tenants.{tenant}.teams.{team}.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        )
    };
    format!(
        "[server]\ndata_dir = \"./data\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nname = \"ACME\"\nenvironments = [\"prod\", \"staging\"]\n{}{}\
         [tenants.bigcorp]\nname = \"BigCorp\"\nenvironments = [\"prod\"]\n{}",
        team("acme", "support"),
        team("acme", "sales"),
        team("bigcorp", "support"),
    )
}

fn post(server: &ServeProcess, tenant: &str, env: &str, body: Value) -> String {
    let mut claims = crate::support::claims(tenant);
    claims["env"] = json!(env);
    let bearer = format!("Bearer {}", crate::support::sign(&claims));
    let reply = server.post(
        "/api/v1/messages",
        &[("Authorization", &bearer), ("X-Tenant-ID", tenant)],
        &body.to_string(),
    );
    // Distinct activity times, so the order does not rest on the tie-break.
    std::thread::sleep(Duration::from_millis(5));
    reply.ok()["session"].as_str().unwrap().to_owned()
}

fn list(server: &ServeProcess, query: &str, team: Option<&str>) -> Value {
    let bearer = bearer("acme");
    let mut headers = vec![("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
    if let Some(team) = team {
        headers.push(("X-Team-ID", team));
    }
    server
        .get(&format!("/api/v1/sessions{query}"), &headers)
        .ok()
}

fn ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_sessions_list_filters_pages_and_shows_latest_activity_first() {
    let dir = dir_with_flows();
    std::fs::write(dir.path().join("flows/list.yaml"), FLOW).unwrap();
    let server = Serve::config(&config()).in_dir(dir.path()).start();
    let msg = |team: &str, user: &str, text: &str| json!({"team": team, "channel": "webchat", "user": user, "text": text});
    let a = post(
        &server,
        "acme",
        "prod",
        msg("support", "ada", "Hello World"),
    );
    let b = post(
        &server,
        "acme",
        "prod",
        msg("support", "bob", "refund please"),
    );
    let c = post(&server, "acme", "prod", msg("sales", "cy", "REFUND now"));
    let d = post(&server, "acme", "prod", msg("support", "dee", "bye"));
    let again = json!({"team": "support", "channel": "webchat", "session": a, "user": "ada",
                       "text": "again"});
    assert_eq!(post(&server, "acme", "prod", again), a);
    // Other tenants and envs match the same filters and must never be listed.
    post(
        &server,
        "bigcorp",
        "prod",
        msg("support", "ada", "refund BIGCORP"),
    );
    post(
        &server,
        "acme",
        "staging",
        msg("support", "ada", "refund staging"),
    );

    let all = list(&server, "", None);
    assert_eq!(
        ids(&all),
        [a.as_str(), d.as_str(), c.as_str(), b.as_str()],
        "{all:#}"
    );
    let first = &all["sessions"][0];
    assert_eq!(first["status"], "open");
    assert_eq!(first["last_message"], "again");
    assert_eq!(first["user"], "ada");
    assert_eq!(first["state_key"], format!("state:acme:prod:support:{a}"));
    assert!(first["last_activity"].as_u64().unwrap() >= first["started_at"].as_u64().unwrap());
    assert_eq!(all["sessions"][1]["status"], "ended");
    assert_eq!(all["sessions"][1]["last_message"], "bye");
    assert!(all.get("next_after").is_none());

    // q: the user or the last message, case-insensitive.
    assert_eq!(
        ids(&list(&server, "?q=Refund", None)),
        [c.as_str(), b.as_str()]
    );
    assert_eq!(ids(&list(&server, "?q=ADA", None)), [a.as_str()]);
    assert_eq!(
        ids(&list(&server, "?q=hello", None)),
        Vec::<String>::new(),
        "only the last message"
    );
    // status.
    assert_eq!(ids(&list(&server, "?status=ended", None)), [d.as_str()]);
    assert_eq!(
        ids(&list(&server, "?status=open", None)),
        [a.as_str(), c.as_str(), b.as_str()]
    );
    assert_eq!(
        ids(&list(&server, "?status=quarantined", None)),
        Vec::<String>::new()
    );
    // since: unix ms or a date.
    let c_at = all["sessions"][2]["last_activity"].as_u64().unwrap();
    assert_eq!(
        ids(&list(&server, &format!("?since={c_at}"), None)),
        [a.as_str(), d.as_str(), c.as_str()]
    );
    assert_eq!(ids(&list(&server, "?since=2000-01-01", None)).len(), 4);
    assert_eq!(
        ids(&list(&server, "?since=2999-01-01&q=a", None)),
        Vec::<String>::new()
    );
    // Team scope.
    assert_eq!(
        ids(&list(&server, "?q=refund", Some("sales"))),
        [c.as_str()]
    );
    assert_eq!(
        ids(&list(&server, "", Some("support"))),
        [a.as_str(), d.as_str(), b.as_str()]
    );

    // Pages of one follow the same order, with an opaque cursor.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let page = list(&server, &query, None);
        seen.extend(ids(&page));
        match page["next_after"].as_str() {
            Some(next) => {
                assert!(!next.contains(&a) && !next.contains('/'), "opaque: {next}");
                query = format!("?limit=1&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(seen, [a.as_str(), d.as_str(), c.as_str(), b.as_str()]);
    let filtered = list(&server, "?limit=1&status=open", None);
    let next = filtered["next_after"].as_str().unwrap();
    assert_eq!(
        ids(&list(
            &server,
            &format!("?limit=5&status=open&after={next}"),
            None
        )),
        [c.as_str(), b.as_str()]
    );

    // Bad parameters name their field and change nothing.
    for (query, field) in [
        ("?status=closed", "status"),
        ("?since=yesterday", "since"),
        ("?after=support%2Fx", "after"),
        ("?limit=0", "limit"),
    ] {
        let reply = server.get_as("acme", &format!("/api/v1/sessions{query}"));
        assert_eq!(reply.error(400), "invalid_parameter", "{query}");
        assert!(reply.body.contains(field), "{query}: {}", reply.body);
    }
}
