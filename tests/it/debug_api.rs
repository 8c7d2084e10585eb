//! The online debugging API (issue #14) against the real `tenantry serve` over real HTTP: a
//! session's state at a seq, close and reset, what-if, usage between dates and the streamed
//! verification of the tenant's chain; each with its authz matrix (another tenant's session,
//! another env's or team's token: 404/403 and never data; no or a bad token: 401) and its bad
//! parameters (400 naming the field).

use serde_json::{json, Value};

use crate::support::{claims, sign, Reply, Serve, ServeProcess};

/// A header list as the support helpers take it.
type Owned = Vec<(&'static str, String)>;

/// Headers of a request as `tenant` in `env`, with a `team` claim and `X-Team-ID` when given.
fn headers(tenant: &str, env: &str, claim: Option<&str>, header: Option<&str>) -> Owned {
    let mut claims = claims(tenant);
    claims["env"] = json!(env);
    if let Some(team) = claim {
        claims["team"] = json!(team);
    }
    let mut headers = vec![
        ("Authorization", format!("Bearer {}", sign(&claims))),
        ("X-Tenant-ID", tenant.to_owned()),
    ];
    if let Some(team) = header {
        headers.push(("X-Team-ID", team.to_owned()));
    }
    headers
}

/// acme in prod, all teams.
fn acme() -> Owned {
    headers("acme", "prod", None, None)
}

/// Sends `method` `path` with `headers` (and `body` for a POST).
fn call(server: &ServeProcess, method: &str, path: &str, headers: &Owned, body: &str) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    match method {
        "GET" => server.get(path, &headers),
        "POST" => server.post(path, &headers, body),
        other => panic!("no helper for {other}"),
    }
}

/// Posts a message to acme's `session` in `team` on `channel`; the ack.
fn say(server: &ServeProcess, team: &str, channel: &str, session: &str, text: &str) -> Value {
    let body = json!({"team": team, "channel": channel, "session": session, "user": "ada",
                      "text": text});
    call(
        server,
        "POST",
        "/api/v1/messages",
        &acme(),
        &body.to_string(),
    )
    .ok()
}

/// The shipped config (acme: envs prod and staging, teams support and sales; bigcorp), served.
fn start() -> ServeProcess {
    Serve::shipped().start()
}

/// Asserts the status and the error code of `reply`, and that it carries none of `secrets`.
#[track_caller]
fn refused(reply: &Reply, status: u16, code: &str, secrets: &[&str]) {
    assert_eq!(reply.error(status), code, "{}", reply.body);
    for secret in secrets {
        assert!(
            !reply.body.contains(secret),
            "leaked {secret}: {}",
            reply.body
        );
    }
}

/// The authz matrix of a route on acme's session `path` (in team support, env prod): a
/// missing or bad token is 401; bigcorp's token, a staging token, a sales team claim or
/// `X-Team-ID: sales` answer like a missing session (404), a team header against the claim is
/// 403; none carries the session's data (`secrets`).
fn session_matrix(server: &ServeProcess, method: &str, path: &str, body: &str, secrets: &[&str]) {
    let cases: Vec<(&str, Owned, u16, &str)> = vec![
        (
            "no token",
            vec![("X-Tenant-ID", "acme".to_owned())],
            401,
            "missing_token",
        ),
        (
            "bad token",
            vec![
                ("Authorization", "Bearer not.a.token".to_owned()),
                ("X-Tenant-ID", "acme".to_owned()),
            ],
            401,
            "invalid_token",
        ),
        (
            "another tenant",
            headers("bigcorp", "prod", None, None),
            404,
            "session_not_found",
        ),
        (
            "another env",
            headers("acme", "staging", None, None),
            404,
            "session_not_found",
        ),
        (
            "another team (claim)",
            headers("acme", "prod", Some("sales"), None),
            404,
            "session_not_found",
        ),
        (
            "another team (X-Team-ID)",
            headers("acme", "prod", None, Some("sales")),
            404,
            "session_not_found",
        ),
        (
            "X-Team-ID against the claim",
            headers("acme", "prod", Some("sales"), Some("support")),
            403,
            "team_mismatch",
        ),
    ];
    for (what, headers, status, code) in cases {
        let reply = call(server, method, path, &headers, body);
        assert_eq!(
            reply.status, status,
            "{method} {path} as {what}: {}",
            reply.body
        );
        refused(&reply, status, code, secrets);
    }
}

#[test]
fn debug_api_state_at_a_seq_folds_the_events_up_to_it() {
    let server = start();
    let first = say(&server, "support", "slack", "dbg-state", "first words");
    assert_eq!(first["seq"], 2);
    let second = say(&server, "support", "slack", "dbg-state", "second words");
    let path = "/api/v1/sessions/dbg-state/state";

    // Without at_seq: the latest state, exactly GET /sessions/{id}'s body plus the two seqs.
    let latest = call(&server, "GET", path, &acme(), "").ok();
    let mut plain = call(&server, "GET", "/api/v1/sessions/dbg-state", &acme(), "").ok();
    let last = plain["last_seq"].as_u64().unwrap();
    assert!(last > second["seq"].as_u64().unwrap(), "{plain}");
    plain["at_seq"] = json!(last);
    plain["session_last_seq"] = json!(last);
    assert_eq!(latest, plain);

    // At seq 2 (the first message): one message in, none of the second's effects.
    let early = call(&server, "GET", &format!("{path}?at_seq=2"), &acme(), "").ok();
    assert_eq!(early["at_seq"], 2);
    assert_eq!(early["session_last_seq"], last);
    assert_eq!(early["last_seq"], 2);
    assert_eq!(early["messages_in"], 1);
    assert_eq!(early["replies_out"], 0);
    assert_eq!(early["status"], "open");
    let at_second = call(
        &server,
        "GET",
        &format!("{path}?at_seq={}", second["seq"]),
        &acme(),
        "",
    )
    .ok();
    assert_eq!(at_second["messages_in"], 2);
    assert_eq!(at_second["replies_out"], 1);

    // Out of range or not a number: 400 naming at_seq and the range.
    for bad in ["0", &(last + 1).to_string(), "-1", "two"] {
        let reply = call(&server, "GET", &format!("{path}?at_seq={bad}"), &acme(), "");
        refused(&reply, 400, "invalid_parameter", &[]);
        assert!(reply.body.contains("at_seq"), "{}", reply.body);
    }
    let reply = call(&server, "GET", &format!("{path}?at_seq=0"), &acme(), "");
    assert!(
        reply.body.contains(&format!("1..={last}")),
        "{}",
        reply.body
    );

    // Missing session, then the matrix (never the session's words).
    let missing = call(&server, "GET", "/api/v1/sessions/nope/state", &acme(), "");
    refused(&missing, 404, "session_not_found", &[]);
    session_matrix(
        &server,
        "GET",
        &format!("{path}?at_seq=2"),
        "",
        &["first words"],
    );
}

#[test]
fn debug_api_close_ends_a_session_durably_and_reset_answers_not_quarantined() {
    let server = start();
    say(&server, "support", "slack", "dbg-close", "secret words");
    let close = "/api/v1/sessions/dbg-close/close";
    let reset = "/api/v1/sessions/dbg-close/reset";
    let get = "/api/v1/sessions/dbg-close";

    // Nobody else can close or reset it; it stays open and untouched.
    let before = call(&server, "GET", get, &acme(), "").ok();
    session_matrix(&server, "POST", close, "", &["secret words"]);
    session_matrix(&server, "POST", reset, "", &["secret words"]);
    assert_eq!(call(&server, "GET", get, &acme(), "").ok(), before);

    // Reset of a session that is not quarantined: the same answer as a lifted quarantine.
    let reply = call(&server, "POST", reset, &acme(), "").ok();
    assert_eq!(reply, json!({"session": "dbg-close", "quarantined": false}));

    // Close: SessionEnded "closed by operator" is the last event, at the seq answered.
    let last = before["last_seq"].as_u64().unwrap();
    let closed = call(&server, "POST", close, &acme(), "").ok();
    assert_eq!(
        closed,
        json!({"session": "dbg-close", "seq": last + 1, "status": "ended"})
    );
    let after = call(&server, "GET", get, &acme(), "").ok();
    assert_eq!(after["status"], "ended");
    assert_eq!(after["ended_reason"], "closed by operator");
    assert_eq!(after["last_seq"], last + 1);
    let events = call(
        &server,
        "GET",
        &format!("{get}/events?from_seq={}", last + 1),
        &acme(),
        "",
    )
    .ok();
    assert_eq!(events["events"][0]["kind"], "SessionEnded");
    assert_eq!(events["events"][0]["data"]["reason"], "closed by operator");

    // Closing again, or writing to it, is refused and appends nothing.
    refused(
        &call(&server, "POST", close, &acme(), ""),
        409,
        "session_ended",
        &[],
    );
    let body = json!({"team": "support", "channel": "slack", "session": "dbg-close",
                      "user": "ada", "text": "still there?"});
    let reply = call(
        &server,
        "POST",
        "/api/v1/messages",
        &acme(),
        &body.to_string(),
    );
    refused(&reply, 409, "session_ended", &[]);
    assert_eq!(
        call(&server, "GET", get, &acme(), "").ok()["last_seq"],
        last + 1
    );

    // Bad ids are 400 naming the session; unknown sessions 404.
    let reply = call(&server, "POST", "/api/v1/sessions/a%20b/close", &acme(), "");
    refused(&reply, 400, "invalid_session", &[]);
    let reply = call(&server, "POST", "/api/v1/sessions/nope/reset", &acme(), "");
    refused(&reply, 404, "session_not_found", &[]);
}

/// acme's support flow as shipped.
fn shipped_flow() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/flows/acme_support.yaml"
    ))
    .unwrap()
}

#[test]
fn debug_api_what_if_compares_each_message_and_appends_nothing() {
    let server = start();
    say(&server, "support", "slack", "dbg-what", "secret one");
    say(&server, "support", "slack", "dbg-what", "secret two");
    let path = "/api/v1/sessions/dbg-what/what-if";
    let get = "/api/v1/sessions/dbg-what";
    // The only session of acme: its last tenant_seq is the tenant's head.
    let before = call(&server, "GET", get, &acme(), "").ok();

    // The flow it ran: identical, message by message.
    let same = call(&server, "POST", path, &acme(), &shipped_flow()).ok();
    assert_eq!(same["session"], "dbg-what");
    assert_eq!(same["flow"], "acme_support_flow");
    assert_eq!(same["flow_version"], "1.0");
    assert_eq!(
        (same["messages"].as_u64(), same["diverged"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(same["identical"], true);
    let results = same["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["seq"], 2);
    assert_eq!(results[0]["text"], "secret one");
    assert_eq!(results[0]["diverged"], false);
    assert_eq!(results[0]["recorded"], results[0]["what_if"]);
    assert_eq!(
        results[0]["recorded"],
        json!({"replies": ["Welcome to ACME Support! How can I help?"], "vars": {},
               "ended": null, "failed": null})
    );

    // Another reply and a var: every message diverges, both sides shown.
    let edited = shipped_flow().replace("Welcome to ACME Support!", "Hi from the new flow!")
        + "  - id: mark\n    type: set\n    config:\n      key: seen\n      value: \"yes\"\n";
    let diff = call(&server, "POST", path, &acme(), &edited).ok();
    assert_eq!(
        (diff["messages"].as_u64(), diff["diverged"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(diff["identical"], false);
    let second = &diff["results"][1];
    assert_eq!(second["diverged"], true);
    assert_eq!(
        second["what_if"]["replies"],
        json!(["Hi from the new flow! How can I help?"])
    );
    assert_eq!(second["what_if"]["vars"], json!({"seen": "yes"}));
    assert_eq!(second["recorded"]["vars"], json!({}));

    // Flows that do not load: 400 invalid_flow with the loader's message.
    let reply = call(&server, "POST", path, &acme(), "name: [unclosed");
    refused(&reply, 400, "invalid_flow", &[]);
    assert!(reply.body.contains("line"), "{}", reply.body);
    let dangling = shipped_flow() + "    next: nowhere\n";
    let reply = call(&server, "POST", path, &acme(), &dangling);
    refused(&reply, 400, "invalid_flow", &[]);
    assert!(reply.body.contains("nowhere"), "{}", reply.body);
    let huge = format!("{}# {}\n", shipped_flow(), "x".repeat(256 * 1024));
    refused(
        &call(&server, "POST", path, &acme(), &huge),
        413,
        "payload_too_large",
        &[],
    );

    // Nobody else sees it; and nothing was appended by any of this.
    session_matrix(
        &server,
        "POST",
        path,
        &shipped_flow(),
        &["secret one", "secret two"],
    );
    assert_eq!(call(&server, "GET", get, &acme(), "").ok(), before);
}

/// The UTC date `days` after today, `YYYY-MM-DD`.
fn utc_date(days: i64) -> String {
    let now = std::time::SystemTime::now();
    let shift = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
    let at = if days < 0 { now - shift } else { now + shift };
    humantime::format_rfc3339(at).to_string()[..10].to_owned()
}

#[test]
fn debug_api_usage_between_dates_counts_those_days_only() {
    let server = start();
    say(&server, "support", "slack", "dbg-use-1", "one");
    say(&server, "sales", "teams", "dbg-use-2", "two");
    let (yesterday, today, tomorrow) = (utc_date(-1), utc_date(0), utc_date(1));
    let usage = |query: &str, headers: &Owned| {
        call(
            &server,
            "GET",
            &format!("/api/v1/usage?{query}"),
            headers,
            "",
        )
    };

    // Today, by day: both messages; echoed dates.
    let body = usage(&format!("by=day&since={today}&until={today}"), &acme()).ok();
    assert_eq!(body["since"], today.as_str());
    assert_eq!(body["until"], today.as_str());
    assert_eq!(body["usage"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["usage"][0]["day"], today.as_str());
    assert_eq!(body["usage"][0]["messages_in"], 2);
    // Open ends; no dates at all echo null.
    let body = usage(&format!("by=team&since={yesterday}"), &acme()).ok();
    assert_eq!(
        (body["since"].as_str(), body["until"].as_str()),
        (Some(&*yesterday), None)
    );
    assert_eq!(body["usage"].as_array().unwrap().len(), 2, "{body}");
    let body = usage("by=team", &acme()).ok();
    assert_eq!(
        (body["since"].clone(), body["until"].clone()),
        (Value::Null, Value::Null)
    );
    // Days without traffic: no rows.
    for query in [format!("since={tomorrow}"), format!("until={yesterday}")] {
        let body = usage(&query, &acme()).ok();
        assert_eq!(body["usage"], json!([]), "{query}: {body}");
    }

    // Bad dates and a reversed range: 400 naming the field.
    for (query, field) in [
        ("since=2026-13-01", "since"),
        ("until=30.11.2026", "until"),
        ("since=2026-11-30T00:00:00Z", "since"),
        (&*format!("since={tomorrow}&until={today}"), "since"),
    ] {
        let reply = usage(query, &acme());
        refused(&reply, 400, "invalid_parameter", &[]);
        assert!(reply.body.contains(field), "{query}: {}", reply.body);
    }

    // Scope: a team sees its rows only, another env or tenant none of acme's, no token 401.
    let window = format!("by=channel&since={today}&until={today}");
    let sales = usage(&window, &headers("acme", "prod", Some("sales"), None)).ok();
    assert_eq!(sales["usage"].as_array().unwrap().len(), 1, "{sales}");
    assert_eq!(sales["usage"][0]["team"], "sales");
    let sales = usage(&window, &headers("acme", "prod", None, Some("sales"))).ok();
    assert_eq!(sales["usage"][0]["channel"], "teams");
    assert_eq!(sales["usage"].as_array().unwrap().len(), 1, "{sales}");
    let staging = usage(&window, &headers("acme", "staging", None, None)).ok();
    assert_eq!(staging["usage"], json!([]));
    let bigcorp = usage(&window, &headers("bigcorp", "prod", None, None)).ok();
    assert_eq!(bigcorp["usage"], json!([]));
    assert_eq!(bigcorp["tenant"], "bigcorp");
    let anonymous = usage(&window, &vec![("X-Tenant-ID", "acme".to_owned())]);
    refused(&anonymous, 401, "missing_token", &[]);
}

/// The NDJSON lines of a verification as `headers`; asserts 200 and the content type.
#[track_caller]
fn verify(server: &ServeProcess, headers: &Owned) -> Vec<Value> {
    let reply = call(server, "GET", "/api/v1/audit/verify", headers, "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let lines: Vec<Value> = reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Progress first (at least one), then exactly one result, last.
    let (result, progress) = lines.split_last().unwrap();
    assert!(result.get("result").is_some(), "{lines:?}");
    assert!(!progress.is_empty(), "{lines:?}");
    for p in progress {
        assert!(p["progress"]["events"].is_u64(), "{p}");
    }
    lines
}

#[test]
fn debug_api_verify_streams_progress_then_the_chain_head() {
    let server = start();
    say(&server, "support", "slack", "dbg-ver", "secret words");
    say(&server, "sales", "teams", "dbg-ver-2", "more secret words");
    let bigcorp = headers("bigcorp", "prod", None, None);
    let body = json!({"team": "helpdesk", "channel": "webchat", "user": "bo", "text": "hi"});
    call(
        &server,
        "POST",
        "/api/v1/messages",
        &bigcorp,
        &body.to_string(),
    )
    .ok();

    // The head is the last event of the newest session (acme's only events are these two).
    let events = call(
        &server,
        "GET",
        "/api/v1/sessions/dbg-ver-2/events",
        &acme(),
        "",
    )
    .ok();
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    let lines = verify(&server, &acme());
    let result = &lines.last().unwrap()["result"];
    assert_eq!(result["ok"], true, "{lines:?}");
    assert_eq!(result["events"], last["tenant_seq"]);
    assert_eq!(result["head"]["tenant_seq"], last["tenant_seq"]);
    assert_eq!(result["head"]["hash"], last["hash"]);
    let progress = &lines[lines.len() - 2]["progress"];
    assert_eq!(progress["events"], last["tenant_seq"]);
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("secret"), "{text}");

    // bigcorp's token verifies bigcorp's chain only.
    let theirs = verify(&server, &bigcorp);
    let theirs = &theirs.last().unwrap()["result"];
    assert_eq!(theirs["ok"], true);
    assert_ne!(theirs["events"], result["events"]);
    assert_ne!(theirs["head"]["hash"], result["head"]["hash"]);
    // The chain spans every env: another env's token of the tenant gets the same counts and
    // hash, never an event (documented).
    let staging = verify(&server, &headers("acme", "staging", None, None));
    assert_eq!(staging.last().unwrap()["result"], *result);

    // Team-scoped callers are refused: the chain spans every team. No or a bad token: 401.
    for team_scoped in [
        headers("acme", "prod", Some("support"), None),
        headers("acme", "prod", None, Some("support")),
    ] {
        let reply = call(&server, "GET", "/api/v1/audit/verify", &team_scoped, "");
        refused(&reply, 403, "team_scoped", &["secret"]);
        assert!(reply.body.contains("without a team"), "{}", reply.body);
    }
    let anonymous = vec![("X-Tenant-ID", "acme".to_owned())];
    let reply = call(&server, "GET", "/api/v1/audit/verify", &anonymous, "");
    refused(&reply, 401, "missing_token", &[]);
    let bad = vec![
        ("Authorization", "Bearer x.y.z".to_owned()),
        ("X-Tenant-ID", "acme".to_owned()),
    ];
    let reply = call(&server, "GET", "/api/v1/audit/verify", &bad, "");
    refused(&reply, 401, "invalid_token", &[]);
}

#[test]
fn debug_api_verify_names_the_first_bad_position() {
    let mut first = start();
    for text in ["one", "two", "three"] {
        say(&first, "support", "slack", "dbg-bad", text);
    }
    assert!(first.stop().success());
    let dir = first.take_dir();
    // Below the log API, as a disk would: the second message's frame (tenant_seq 5..) is
    // garbage.
    {
        let db = sled::open(dir.path().join("data").join("log")).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut key = b"acme\0L".to_vec();
        key.extend_from_slice(&5u64.to_be_bytes());
        assert!(tree.insert(key, &b"not a frame"[..]).unwrap().is_some());
        db.flush().unwrap();
    }
    let server = Serve::shipped().in_dir(dir.path()).start();
    let lines = verify(&server, &acme());
    let result = &lines.last().unwrap()["result"];
    assert_eq!(result["ok"], false, "{lines:?}");
    assert_eq!(result["first_bad"]["tenant_seq"], 5, "{lines:?}");
    assert_eq!(result["first_bad"]["reason"], "unreadable", "{lines:?}");
    assert_eq!(result["events"], 4, "{lines:?}");
    // Another tenant's chain is untouched.
    let theirs = verify(&server, &headers("bigcorp", "prod", None, None));
    assert_eq!(theirs.last().unwrap()["result"]["ok"], true);
}
