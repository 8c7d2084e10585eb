//! Live-session limits as HTTP clients see them: the real `tenantry serve` with tiny
//! `runtime.sessions_max` / `runtime.tenant_sessions_max`, real HTTP.

use std::process::Command;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

const KEY: &str = "it-limits-signing-key-0123456789abcdef";

fn config() -> String {
    let tenant = |t: &str, flow: &str| {
        format!(
            "[tenants.{t}]\nname = \"{t}\"\nenvironments = [\"prod\"]\n\
             [tenants.{t}.teams.support]\nflow = \"flows/{flow}\"\n\
             [tenants.{t}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"./data\"\n\
         [runtime]\nsessions_max = 2\ntenant_sessions_max = 2\n{}{}",
        tenant("acme", "acme_support.yaml"),
        tenant("bigcorp", "bigcorp_helpdesk.yaml"),
    )
}

fn token(tenant: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"tenant": tenant, "env": "prod", "iss": "tenantry",
        "aud": "tenantry-api", "iat": now, "exp": now + 300});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

/// Posts a message to `session` as `tenant`: (status, Retry-After, body).
fn post(
    agent: &ureq::Agent,
    base: &str,
    tenant: &str,
    session: &str,
) -> (u16, Option<String>, Value) {
    let body = json!({"team": "support", "channel": "webchat", "user": "u", "text": "hello",
        "session": session});
    let mut response = agent
        .post(format!("{base}/api/v1/messages"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {}", token(tenant)))
        .header("X-Tenant-ID", tenant)
        .send(body.to_string())
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    let status = response.status().as_u16();
    (status, retry_after, serde_json::from_str(&text).unwrap())
}

#[test]
fn past_the_session_limit_new_sessions_get_429_with_retry_after_until_idle_ones_make_room() {
    let dir = crate::support::dir_with_flows();
    std::fs::write(dir.path().join("config.toml"), config()).unwrap();
    let (mut child, lines) = crate::support::spawn_with_lines(
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .current_dir(dir.path())
            .args(["serve", "--config"])
            .arg(dir.path().join("config.toml"))
            .env("TENANTRY_SIGNING_KEY", KEY)
            .env_remove("TENANTRY_TENANT_ID"),
    );
    let (addr, _) = crate::support::wait_until_serving(&lines, false, Duration::from_secs(20));
    let base = format!("http://{addr}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();

    assert_eq!(post(&agent, &base, "acme", "s1").0, 200);
    assert_eq!(post(&agent, &base, "acme", "s2").0, 200);
    // Both sessions are busy (used within the last second): a third is refused, cleanly.
    let (status, retry_after, body) = post(&agent, &base, "bigcorp", "b1");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "sessions_full", "{body}");
    assert_eq!(retry_after.as_deref(), Some("2"));
    // A live session is still served.
    assert_eq!(post(&agent, &base, "acme", "s2").0, 200);
    // Once acme's sessions are idle, they make room; the refused request's retry is served.
    std::thread::sleep(Duration::from_millis(2_100));
    let mut served = None;
    for _ in 0..20 {
        let (status, _, body) = post(&agent, &base, "bigcorp", "b1");
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
    let (status, _, body) = post(&agent, &base, "acme", "s1");
    assert_eq!(status, 200, "{body}");
    assert!(body["seq"].as_u64().unwrap() > 2, "{body}");
    let _ = child.kill();
    let _ = child.wait();
}
