//! Overload and a noisy neighbour, against the real `tenantry serve` over real HTTP.
//!
//! Behaviour only, never timing: past `runtime.inflight_max` the excess is refused with 429 and
//! `Retry-After`, every acked message is in the log, memory does not grow with the offered load;
//! a tenant flooding past its quota is refused while its neighbours see no error at all; over
//! NATS too: a tenant's quota is charged by its NATS messages, and a tenant flooding NATS holds
//! at most its share of the in-flight budget, so another tenant's HTTP posts are not refused.
//! (How fast refusals come and how much goodput remains are figures of `tenantry-bench overload`.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{bearer, read, token, Serve, ServeProcess};
/// Tenants sharing every id below them (env, team, channel, session and user names).
const TENANTS: [&str; 3] = ["t1", "t2", "t3"];

fn config(runtime: &str, t1_quota: u32) -> String {
    let mut text = format!(
        "[server]\ndata_dir = \"./data\"\nrate_limit_per_s = 100000\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n[runtime]\n{runtime}\n"
    );
    for t in TENANTS {
        let quota = if t == "t1" { t1_quota } else { 100_000 };
        text.push_str(&format!(
            "[tenants.{t}]\nenvironments = [\"prod\"]\nrate_limit_per_s = {quota}\n\
             [tenants.{t}.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
             [tenants.{t}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        ));
    }
    text
}

/// A running `tenantry serve` with `config`.
fn start(config: &str) -> ServeProcess {
    Serve::config(config).log("warn,tenantry=info").start()
}

/// With NATS ingress from the nats-server on `nats_port`.
fn start_with_nats(config: &str, nats_port: u16) -> ServeProcess {
    Serve::config(config)
        .section("nats", &format!("url = \"nats://127.0.0.1:{nats_port}\""))
        .log("warn,tenantry=info")
        .start()
}

/// The server's resident set, from /proc.
fn rss_bytes(server: &ServeProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

fn agent() -> ureq::Agent {
    crate::support::agent(Duration::from_secs(30))
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// (tenant, session, message id) of every 200, with the seq the ack gave.
    acked: Vec<(String, String, String, u64)>,
    /// Refusals by status and error code; each had a `Retry-After` of at least 1 s.
    refused: BTreeMap<(u16, String), u64>,
}

/// Sends `count` messages from one client, back to back, in sessions shared across tenants.
fn client(base: &str, tenant: &str, c: usize, round: &str, count: usize) -> Seen {
    let agent = agent();
    let bearer = bearer(tenant);
    let mut seen = Seen::default();
    for n in 0..count {
        // Sessions and users are named alike in every tenant: a mix-up would show.
        let session = format!("s{}", c % 4);
        let message_id = format!("{round}-c{c}-{n}");
        let body = json!({"team": "support", "channel": "webchat", "session": session,
                          "user": format!("u{c}"), "text": "hello", "message_id": message_id});
        let reply = read(
            agent
                .post(format!("{base}/api/v1/messages"))
                .header("Authorization", &bearer)
                .header("X-Tenant-ID", tenant)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        );
        let retry_after = reply
            .retry_after
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok());
        let (status, body) = (reply.status, reply.json());
        match status {
            200 => {
                assert_eq!(body["session"], session.as_str(), "{body}");
                let seq = body["seq"].as_u64().unwrap();
                seen.acked
                    .push((tenant.to_owned(), session, message_id, seq));
            }
            429 | 503 => {
                assert!(
                    retry_after.is_some_and(|s| s >= 1),
                    "a {status} without Retry-After: {body}"
                );
                let code = body["error"]["code"].as_str().unwrap_or("?").to_owned();
                *seen.refused.entry((status, code)).or_default() += 1;
            }
            other => panic!("{tenant} client {c}: unexpected status {other}: {body}"),
        }
    }
    seen
}

/// Runs `clients` concurrent clients per tenant of `tenants`, `count` messages each.
fn flood(base: &str, tenants: &[&str], clients: usize, round: &str, count: usize) -> Seen {
    let handles: Vec<_> = tenants
        .iter()
        .flat_map(|&t| (0..clients).map(move |c| (t, c)))
        .map(|(t, c)| {
            let (base, t, round) = (base.to_owned(), t.to_owned(), round.to_owned());
            std::thread::spawn(move || client(&base, &t, c, &round, count))
        })
        .collect();
    let mut all = Seen::default();
    for h in handles {
        let seen = h.join().unwrap();
        all.acked.extend(seen.acked);
        for (k, n) in seen.refused {
            *all.refused.entry(k).or_default() += n;
        }
    }
    all
}

/// Every acked message id is in its tenant's session exactly once, at the acked seq, and no
/// tenant's sessions hold another tenant's message.
fn assert_all_acked_are_logged(base: &str, acked: &[(String, String, String, u64)]) {
    let agent = agent();
    let mut by_session: BTreeMap<(&str, &str), Vec<(&str, u64)>> = BTreeMap::new();
    for (tenant, session, id, seq) in acked {
        by_session
            .entry((tenant, session))
            .or_default()
            .push((id, *seq));
    }
    for ((tenant, session), acks) in by_session {
        let mut logged: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut from_seq = 1;
        loop {
            let url = format!("{base}/api/v1/sessions/{session}/events?from_seq={from_seq}");
            let reply = loop {
                let reply = read(
                    agent
                        .get(&url)
                        .header("Authorization", &bearer(tenant))
                        .header("X-Tenant-ID", tenant)
                        .call(),
                );
                // Reads count against the quota too: a flooding tenant waits like any client.
                if reply.status != 429 {
                    break reply;
                }
                std::thread::sleep(Duration::from_secs(1));
            };
            assert_eq!(reply.status, 200);
            let page = reply.json();
            for e in page["events"].as_array().unwrap() {
                if let Some(id) = e["data"]["message_id"].as_str() {
                    logged
                        .entry(id.to_owned())
                        .or_default()
                        .push(e["seq"].as_u64().unwrap());
                }
            }
            match page["next_from_seq"].as_u64() {
                Some(next) => from_seq = next,
                None => break,
            }
        }
        for (id, seq) in &acks {
            assert_eq!(
                logged.get(*id),
                Some(&vec![*seq]),
                "{tenant}/{session}: acked message {id} (seq {seq}) is not logged once at its seq"
            );
        }
        // Only this tenant's clients' ids (refused ones never reach the log).
        let acked_ids: BTreeSet<&str> = acks.iter().map(|(id, _)| *id).collect();
        let extra: Vec<_> = logged
            .keys()
            .filter(|id| !acked_ids.contains(id.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{tenant}/{session}: logged messages nobody got an ack for: {extra:?}"
        );
    }
}

#[test]
fn past_inflight_max_the_excess_is_refused_memory_stays_flat_and_nothing_acked_is_lost() {
    let server = start(&config("inflight_max = 8", 100_000));
    // Warm-up round: the server's caches, pools and connections reach their working size.
    let warm = flood(&server.base(), &TENANTS, 8, "warm", 30);
    let rss_warm = rss_bytes(&server);
    // Four times the concurrency, twice the messages each: eight times the offered work.
    let hot = flood(&server.base(), &TENANTS, 32, "hot", 60);
    let rss_hot = rss_bytes(&server);

    let refused: u64 = hot.refused.values().sum();
    assert!(
        refused > 0,
        "96 concurrent clients against inflight_max = 8 were never refused"
    );
    assert!(
        hot.refused
            .keys()
            .all(|(status, code)| *status == 429 && code == "overloaded"),
        "refusals other than 429 overloaded: {:?}",
        hot.refused
    );
    assert!(!hot.acked.is_empty(), "nothing was accepted under overload");
    // Bounded: the excess is refused, not queued, so 8x the offered load does not mean 8x the
    // memory. The margin covers allocator and sled cache growth with the log.
    assert!(
        rss_hot <= rss_warm + 48 * 1024 * 1024,
        "RSS grew from {rss_warm} to {rss_hot} bytes between rounds"
    );
    let mut acked = warm.acked;
    acked.extend(hot.acked);
    assert_all_acked_are_logged(&server.base(), &acked);
}

#[test]
fn a_tenant_flooding_past_its_quota_is_refused_while_its_neighbours_see_no_error() {
    let server = start(&config("", 20));
    let base = server.base();
    let started = Instant::now();
    // t1 floods from 8 clients; t2 and t3 talk at their normal pace meanwhile.
    let noisy = {
        let base = base.clone();
        std::thread::spawn(move || flood(&base, &["t1"], 8, "noisy", 150))
    };
    let calm = flood(&base, &["t2", "t3"], 2, "calm", 60);
    let noisy = noisy.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    assert!(
        calm.refused.is_empty(),
        "t2/t3 were refused while t1 flooded: {:?}",
        calm.refused
    );
    assert_eq!(calm.acked.len(), 2 * 2 * 60);
    let refused = noisy
        .refused
        .get(&(429, "quota_exceeded".to_owned()))
        .copied();
    assert!(
        refused.is_some_and(|n| n > 0),
        "t1 at many times its quota was never refused: {:?}",
        noisy.refused
    );
    assert_eq!(
        noisy.refused.len(),
        1,
        "t1 saw refusals other than its quota: {:?}",
        noisy.refused
    );
    // The quota holds: 20/s with a burst of 20.
    let allowed = 20.0 * (elapsed + 1.0) + 20.0;
    assert!(
        (noisy.acked.len() as f64) <= allowed,
        "t1 got {} acks in {elapsed:.1} s with a quota of 20/s",
        noisy.acked.len()
    );
    let mut acked = noisy.acked;
    acked.extend(calm.acked);
    assert_all_acked_are_logged(&base, &acked);
}

/// Reads one HTTP/1.1 response (framed by `Content-Length`) from `stream`; `None` when the server
/// closed the connection instead.
fn read_response(stream: &mut std::net::TcpStream) -> Option<(u16, String)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((status, head))
}

#[test]
fn a_refused_message_leaves_its_keep_alive_connection_open() {
    use std::io::Write;
    // t1 may send one message per second; the second and third are refused.
    let server = start(&config("", 1));
    let addr = server.addr.clone();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let bearer = token("t1");
    let mut statuses = Vec::new();
    for n in 0..3 {
        let body = json!({"team": "support", "channel": "webchat", "session": "s0",
                          "user": "u0", "text": "hello", "message_id": format!("ka-{n}")})
        .to_string();
        write!(
            stream,
            "POST /api/v1/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
             X-Tenant-ID: t1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (status, head) = read_response(&mut stream)
            .unwrap_or_else(|| panic!("the server closed the connection after {statuses:?}"));
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "response {n} closes the connection: {head}"
        );
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 429, 429]);
}

fn nats_subject(tenant: &str) -> String {
    format!("greentic.messaging.ingress.prod.{tenant}.support.webchat")
}

/// Publishes `count` messages of `tenant` on NATS as fast as the client goes, each with a reply
/// subject, and returns the replies that came within `wait`: (acked, error codes).
async fn nats_burst(
    client: &async_nats::Client,
    tenant: &str,
    round: &str,
    count: usize,
    wait: Duration,
) -> (usize, BTreeMap<String, u64>) {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    client.flush().await.unwrap();
    for n in 0..count {
        let body = json!({"user": format!("n{}", n % 8), "text": "hello",
                          "session": format!("ns{}", n % 8), "message_id": format!("{round}-{n}")});
        client
            .publish_with_reply(
                nats_subject(tenant),
                format!("{inbox}.{n}"),
                body.to_string().into(),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let (mut acked, mut refused) = (0, BTreeMap::new());
    let deadline = tokio::time::Instant::now() + wait;
    while acked + (refused.values().sum::<u64>() as usize) < count {
        let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            break;
        };
        let body: Value = serde_json::from_slice(&reply.payload).unwrap();
        match body["error"]["code"].as_str() {
            Some(code) => *refused.entry(code.to_owned()).or_default() += 1,
            None => {
                assert!(body["seq"].is_u64(), "{body}");
                acked += 1;
            }
        }
    }
    (acked, refused)
}

#[test]
fn a_tenants_quota_is_charged_by_its_nats_messages_and_shared_with_http() {
    let nats = crate::support::Nats::start(crate::support::free_port());
    // t1 may send 20 messages a second (burst 20), whichever way they come.
    let server = start_with_nats(&config("", 20), nats.port);
    let rt = crate::support::tokio_runtime();
    let started = Instant::now();
    let (t1_acked, t1_refused, t2_acked, t2_refused) = rt.block_on(async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let (a1, r1) = nats_burst(&client, "t1", "q", 200, Duration::from_secs(20)).await;
        let (a2, r2) = nats_burst(&client, "t2", "q", 60, Duration::from_secs(20)).await;
        (a1, r1, a2, r2)
    });
    // One quota for both edges: right after the NATS burst, t1's HTTP posts are refused too.
    let t1_http = client(&server.base(), "t1", 0, "http", 40);
    let t2_http = client(&server.base(), "t2", 0, "http", 40);
    let elapsed = started.elapsed().as_secs_f64();

    let over = t1_refused.get("quota_exceeded").copied().unwrap_or(0);
    assert!(
        over > 0,
        "t1 sent 200 NATS messages at a quota of 20/s: {t1_refused:?}"
    );
    assert_eq!(
        t1_refused.len(),
        1,
        "t1 saw refusals other than its quota: {t1_refused:?}"
    );
    assert_eq!(t1_acked + over as usize, 200, "every message was answered");
    assert!(
        t1_http
            .refused
            .keys()
            .all(|(status, code)| *status == 429 && code == "quota_exceeded")
            && !t1_http.refused.is_empty(),
        "t1's HTTP posts right after its NATS burst: {:?}",
        t1_http.refused
    );
    let t1_total = t1_acked + t1_http.acked.len();
    assert!(
        (t1_total as f64) <= 20.0 * (elapsed + 1.0) + 20.0,
        "t1 got {t1_total} acks over NATS and HTTP in {elapsed:.1} s with a quota of 20/s"
    );
    // Another tenant's quota is its own, on both edges.
    assert_eq!((t2_acked, t2_refused.len()), (60, 0), "{t2_refused:?}");
    assert_eq!(t2_http.acked.len(), 40, "{:?}", t2_http.refused);
}

#[test]
fn a_tenants_rate_limit_burst_bounds_what_it_may_send_at_once() {
    // t1: one message a second, three at once; t2 keeps the default burst (its rate).
    let config = config("", 1).replacen(
        "rate_limit_per_s = 1\n",
        "rate_limit_per_s = 1\nrate_limit_burst = 3\n",
        1,
    );
    let server = start(&config);
    let started = Instant::now();
    let t1 = client(&server.base(), "t1", 0, "burst", 8);
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket refills one a second while the 8 posts go.
    let refills = elapsed.floor() as usize;
    assert!(
        (3..=3 + refills).contains(&t1.acked.len()),
        "t1 (burst 3, 1/s) got {} acks in {elapsed:.2} s",
        t1.acked.len()
    );
    let over = t1.refused.get(&(429, "quota_exceeded".to_owned()));
    assert_eq!(
        over.copied().unwrap_or(0) as usize,
        8 - t1.acked.len(),
        "{:?}",
        t1.refused
    );
    let t2 = client(&server.base(), "t2", 0, "burst", 8);
    assert_eq!(t2.acked.len(), 8, "{:?}", t2.refused);
}

#[test]
fn a_tenant_flooding_nats_cannot_make_another_tenants_http_posts_get_429() {
    let nats = crate::support::Nats::start(crate::support::free_port());
    // No quota saves the others here: t1 may send 100,000/s. Its share of the 10 in-flight
    // places (half, by default) is what leaves room for t2 and t3.
    let server = start_with_nats(&config("inflight_max = 10", 100_000), nats.port);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noisy = {
        let (stop, port) = (stop.clone(), nats.port);
        std::thread::spawn(move || {
            crate::support::tokio_runtime().block_on(async {
                let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
                    .await
                    .unwrap();
                let (mut acked, mut refused) = (0, BTreeMap::<String, u64>::new());
                let mut round = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (a, r) = nats_burst(
                        &client,
                        "t1",
                        &format!("flood{round}"),
                        400,
                        Duration::from_secs(10),
                    )
                    .await;
                    acked += a;
                    for (code, n) in r {
                        *refused.entry(code).or_default() += n;
                    }
                    round += 1;
                }
                (acked, refused)
            })
        })
    };
    // Let the flood fill t1's share before the calm tenants start.
    std::thread::sleep(Duration::from_millis(500));
    let calm = flood(&server.base(), &["t2", "t3"], 2, "calm", 60);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (noisy_acked, noisy_refused) = noisy.join().unwrap();

    assert!(
        calm.refused.is_empty(),
        "t2/t3 HTTP posts were refused while t1 flooded NATS: {:?}",
        calm.refused
    );
    assert_eq!(calm.acked.len(), 2 * 2 * 60);
    // The flood was real: t1 ran into its share of the in-flight budget.
    assert!(
        noisy_refused.get("overloaded").is_some_and(|&n| n > 0),
        "t1's NATS flood never filled its in-flight share: acked {noisy_acked}, {noisy_refused:?}"
    );
    assert!(noisy_acked > 0, "t1 got nothing through: {noisy_refused:?}");
    assert_all_acked_are_logged(&server.base(), &calm.acked);
}
