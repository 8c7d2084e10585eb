//! Live-session limits as HTTP clients see them: the real `tenantry serve` with tiny
//! `runtime.sessions_max` / `runtime.tenant_sessions_max`, real HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Serve, ServeProcess};

fn config() -> String {
    let tenant = |t: &str, flow: &str| {
        format!(
            "[tenants.{t}]\nname = \"{t}\"\nenvironments = [\"prod\"]\n\
             [tenants.{t}.teams.support]\nflow = \"flows/{flow}\"\n\
             [tenants.{t}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        )
    };
    format!(
        "[server]\ndata_dir = \"./data\"\n\
         [runtime]\nsessions_max = 2\ntenant_sessions_max = 2\n{}{}",
        tenant("acme", "acme_support.yaml"),
        tenant("bigcorp", "bigcorp_helpdesk.yaml"),
    )
}

/// Posts a message to `session` as `tenant`: (status, Retry-After, body).
fn post(server: &ServeProcess, tenant: &str, session: &str) -> (u16, Option<String>, Value) {
    let body = json!({"team": "support", "channel": "webchat", "user": "u", "text": "hello",
        "session": session});
    let reply = server.post_as(tenant, &body);
    let body = reply.json();
    (reply.status, reply.retry_after, body)
}

#[test]
fn past_the_session_limit_new_sessions_get_429_with_retry_after_until_idle_ones_make_room() {
    let server = Serve::config(&config()).start();

    assert_eq!(post(&server, "acme", "s1").0, 200);
    assert_eq!(post(&server, "acme", "s2").0, 200);
    // Both sessions are busy (used within the last second): a third is refused, cleanly.
    let (status, retry_after, body) = post(&server, "bigcorp", "b1");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "sessions_full", "{body}");
    assert_eq!(retry_after.as_deref(), Some("2"));
    // A live session is still served.
    assert_eq!(post(&server, "acme", "s2").0, 200);
    // Once acme's sessions are idle, they make room; the refused request's retry is served.
    std::thread::sleep(Duration::from_millis(2_100));
    let mut served = None;
    for _ in 0..20 {
        let (status, _, body) = post(&server, "bigcorp", "b1");
        if status == 200 {
            served = Some(body);
            break;
        }
        assert_eq!(body["error"]["code"], "sessions_full", "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = served.expect("bigcorp never got a session after acme's went idle");
    assert_eq!(served["session"], "b1");
    // acme's passivated sessions come back where they were.
    std::thread::sleep(Duration::from_millis(1_100));
    let (status, _, body) = post(&server, "acme", "s1");
    assert_eq!(status, 200, "{body}");
    assert!(body["seq"].as_u64().unwrap() > 2, "{body}");
}
