//! The live event streams (docs/http.md, Server-Sent Events): `GET /api/v1/events/stream` and
//! `GET /api/v1/sessions/{id}/events/stream`, read incrementally over a raw TCP connection from
//! the real `tenantry serve`: events arrive with their `tenant_seq` ids, `Last-Event-ID` and
//! `?after=` resume, tenants, envs and teams never see each other's events, streams are bounded
//! per tenant, and a stopping server ends them at once.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{claims, sign, Serve, ServeProcess};

/// The most streams per tenant (`STREAMS_PER_TENANT_MAX` in src/edge/http/stream.rs).
const STREAMS_PER_TENANT_MAX: usize = 16;

/// A token for `tenant` in `env`.
fn token_in(tenant: &str, env: &str) -> String {
    let mut claims = claims(tenant);
    claims["env"] = json!(env);
    sign(&claims)
}

/// One SSE connection, read line by line with deadlines.
struct Sse {
    reader: BufReader<TcpStream>,
    status: u16,
    /// The response head, lower-cased.
    head: String,
    /// A line read in part when a deadline passed.
    partial: Vec<u8>,
}

/// An event as received: its `id:` and its `data:` JSON.
#[derive(Debug, Clone)]
struct Received {
    id: u64,
    data: Value,
}

impl Sse {
    /// Opens `path` as `tenant` in `env`, with extra `headers`, and reads the response head.
    fn open(
        server: &ServeProcess,
        tenant: &str,
        env: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Sse {
        let stream = TcpStream::connect(&server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {}\r\nX-Tenant-ID: {tenant}\r\n",
            server.addr,
            token_in(tenant, env)
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        (&stream).write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Sse {
            reader,
            status,
            head,
            partial: Vec::new(),
        }
    }

    /// The next line before `deadline` (without its line end); `Err(true)` at the end of the
    /// stream, `Err(false)` when the deadline passed.
    fn line(&mut self, deadline: Instant) -> Result<String, bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(false);
            }
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => return Err(true),
                Ok(_) if self.partial.ends_with(b"\n") => {
                    let line = String::from_utf8(std::mem::take(&mut self.partial)).unwrap();
                    return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Err(true),
            }
        }
    }

    /// The next event before `deadline`, or `None` (deadline, or the stream ended). Comment
    /// lines and the chunked encoding's size lines are skipped.
    fn next(&mut self, deadline: Instant) -> Option<Received> {
        let mut id = None;
        loop {
            let line = self.line(deadline).ok()?;
            if let Some(rest) = line.strip_prefix("id: ") {
                id = Some(rest.parse().unwrap());
            } else if let Some(rest) = line.strip_prefix("data: ") {
                let data = serde_json::from_str(rest).unwrap();
                return Some(Received {
                    id: id.expect("an id: line before data:"),
                    data,
                });
            }
        }
    }

    /// Every event until none came for `quiet`.
    fn drain(&mut self, quiet: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        while let Some(event) = self.next(Instant::now() + quiet) {
            out.push(event);
        }
        out
    }

    /// Waits (at most `within`) until the server ends the stream; whether it did.
    fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.line(deadline) {
                Ok(_) => {}
                Err(ended) => return ended,
            }
        }
    }
}

/// Posts a message as `tenant` in `env` (team `team`, channel `channel`); the ack.
fn post(
    server: &ServeProcess,
    tenant: &str,
    env: &str,
    team: &str,
    channel: &str,
    text: &str,
) -> Value {
    let bearer = format!("Bearer {}", token_in(tenant, env));
    let body = json!({"team": team, "channel": channel, "user": format!("{tenant}-{env}-{team}-{text}"),
                      "text": text});
    server
        .post(
            "/api/v1/messages",
            &[("Authorization", &bearer), ("X-Tenant-ID", tenant)],
            &body.to_string(),
        )
        .ok()
}

fn sessions_of(events: &[Received]) -> Vec<String> {
    let mut sessions: Vec<String> = events
        .iter()
        .map(|e| e.data["session"].as_str().unwrap().to_owned())
        .collect();
    sessions.sort();
    sessions.dedup();
    sessions
}

#[test]
fn new_events_arrive_live_with_their_tenant_seq_and_resume_after_last_event_id() {
    let server = Serve::shipped().start();
    let mut live = Sse::open(&server, "acme", "prod", "/api/v1/events/stream", &[]);
    assert_eq!(live.status, 200, "{}", live.head);
    assert!(
        live.head.contains("content-type: text/event-stream"),
        "{}",
        live.head
    );

    let ack = post(&server, "acme", "prod", "support", "slack", "hello");
    let acked = Instant::now();
    let session = ack["session"].as_str().unwrap().to_owned();
    let first = live
        .next(Instant::now() + Duration::from_secs(5))
        .expect("an event");
    // Within 0.5 s of the ack (the contract); woken by the log, it takes a few ms here.
    assert!(
        acked.elapsed() < Duration::from_millis(500),
        "{:?}",
        acked.elapsed()
    );
    let mut events = vec![first];
    events.extend(live.drain(Duration::from_millis(800)));
    assert!(events.len() >= 3, "{events:#?}");
    assert_eq!(events[0].data["kind"], "SessionStarted", "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.data["kind"] == "MessageReceived" && e.data["data"]["text"] == "hello"),
        "{events:#?}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.data["session"], session.as_str());
        assert_eq!(e.data["tenant_seq"], e.id, "id is the tenant_seq");
        assert_eq!(
            e.id,
            events[0].id + i as u64,
            "tenant_seqs in order, none missing"
        );
    }
    // The item is exactly GET /sessions/{id}/events's.
    let listed = server
        .get_as("acme", &format!("/api/v1/sessions/{session}/events"))
        .ok();
    let listed: Vec<Value> = listed["events"].as_array().unwrap().clone();
    let streamed: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(streamed, listed);

    // A second message: the open stream gets only its events.
    let ack2 = post(&server, "acme", "prod", "support", "slack", "second");
    let later = live.drain(Duration::from_millis(800));
    assert!(!later.is_empty());
    assert!(later.iter().all(|e| e.id > events.last().unwrap().id));
    assert!(
        later.iter().any(|e| e.data["data"]["text"] == "second"),
        "{later:#?}"
    );
    assert_eq!(
        sessions_of(&later),
        vec![ack2["session"].as_str().unwrap().to_owned()]
    );

    // Reconnect with Last-Event-ID: exactly what came after it, from the log.
    let resume_at = events[1].id;
    let mut resumed = Sse::open(
        &server,
        "acme",
        "prod",
        "/api/v1/events/stream",
        &[("Last-Event-ID", &resume_at.to_string())],
    );
    let got = resumed.drain(Duration::from_millis(800));
    let expected: Vec<u64> = events
        .iter()
        .chain(&later)
        .map(|e| e.id)
        .filter(|id| *id > resume_at)
        .collect();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), expected);
    // ?after= does the same; the header wins over it (a browser's reconnect sends both).
    let last = later.last().unwrap().id;
    let mut by_query = Sse::open(
        &server,
        "acme",
        "prod",
        &format!("/api/v1/events/stream?after={}", last - 1),
        &[],
    );
    assert_eq!(
        by_query
            .drain(Duration::from_millis(800))
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![last]
    );
    let mut both = Sse::open(
        &server,
        "acme",
        "prod",
        "/api/v1/events/stream?after=0",
        &[("Last-Event-ID", &last.to_string())],
    );
    assert!(both.drain(Duration::from_millis(800)).is_empty());

    // The session stream: the whole session first, then live; resumable too.
    let mut one = Sse::open(
        &server,
        "acme",
        "prod",
        &format!("/api/v1/sessions/{session}/events/stream"),
        &[],
    );
    assert_eq!(one.status, 200, "{}", one.head);
    let whole = one.drain(Duration::from_millis(800));
    assert_eq!(
        whole.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        listed
    );
    let bearer = format!("Bearer {}", token_in("acme", "prod"));
    let body = json!({"team": "support", "channel": "slack", "session": session, "user": "u", "text": "more"});
    server
        .post(
            "/api/v1/messages",
            &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
            &body.to_string(),
        )
        .ok();
    let more = one.drain(Duration::from_millis(800));
    assert!(
        more.iter().any(|e| e.data["data"]["text"] == "more"),
        "{more:#?}"
    );
    assert_eq!(sessions_of(&more), vec![session.clone()]);
    let mut one_resumed = Sse::open(
        &server,
        "acme",
        "prod",
        &format!("/api/v1/sessions/{session}/events/stream"),
        &[("Last-Event-ID", &whole.last().unwrap().id.to_string())],
    );
    let again = one_resumed.drain(Duration::from_millis(800));
    assert_eq!(
        again.iter().map(|e| e.id).collect::<Vec<_>>(),
        more.iter().map(|e| e.id).collect::<Vec<_>>()
    );

    // A bad resume point is refused, naming the field.
    let bad = server.get(
        "/api/v1/events/stream",
        &[
            ("Authorization", &bearer),
            ("X-Tenant-ID", "acme"),
            ("Last-Event-ID", "abc"),
        ],
    );
    assert_eq!(bad.error(400), "invalid_parameter");
    assert!(bad.body.contains("Last-Event-ID"), "{}", bad.body);
    let bad = server.get(
        "/api/v1/events/stream?after=-1",
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
    );
    assert_eq!(bad.error(400), "invalid_parameter");
    assert!(bad.body.contains("after"), "{}", bad.body);
    // No token: refused before any stream opens.
    let anonymous = server.get("/api/v1/events/stream", &[("X-Tenant-ID", "acme")]);
    assert_eq!(anonymous.error(401), "missing_token");
}

#[test]
fn a_stream_carries_only_its_tenant_env_and_team() {
    let server = Serve::shipped().start();
    let all = "/api/v1/events/stream";
    let mut acme_prod = Sse::open(&server, "acme", "prod", all, &[]);
    let mut acme_support = Sse::open(&server, "acme", "prod", all, &[("X-Team-ID", "support")]);
    let mut acme_sales = Sse::open(&server, "acme", "prod", all, &[("X-Team-ID", "sales")]);
    let mut acme_staging = Sse::open(&server, "acme", "staging", all, &[]);
    let mut bigcorp = Sse::open(&server, "bigcorp", "prod", all, &[]);
    for s in [
        &acme_prod,
        &acme_support,
        &acme_sales,
        &acme_staging,
        &bigcorp,
    ] {
        assert_eq!(s.status, 200, "{}", s.head);
    }
    let session = |ack: Value| ack["session"].as_str().unwrap().to_owned();
    let prod_support = session(post(&server, "acme", "prod", "support", "slack", "a"));
    let prod_sales = session(post(&server, "acme", "prod", "sales", "teams", "b"));
    let staging_support = session(post(&server, "acme", "staging", "support", "slack", "c"));
    let big = session(post(&server, "bigcorp", "prod", "helpdesk", "webchat", "d"));
    let quiet = Duration::from_millis(1500);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sessions_of(&acme_prod.drain(quiet)),
        sorted(vec![prod_support.clone(), prod_sales.clone()])
    );
    assert_eq!(
        sessions_of(&acme_support.drain(quiet)),
        vec![prod_support.clone()]
    );
    assert_eq!(
        sessions_of(&acme_sales.drain(quiet)),
        vec![prod_sales.clone()]
    );
    let staging = acme_staging.drain(quiet);
    assert_eq!(sessions_of(&staging), vec![staging_support.clone()]);
    assert!(staging.iter().all(|e| e.data["env"] == "staging"));
    assert_eq!(sessions_of(&bigcorp.drain(quiet)), vec![big.clone()]);

    // Another tenant's, env's or team's session is not found, exactly like a missing one.
    let path = |s: &str| format!("/api/v1/sessions/{s}/events/stream");
    let not_found = |sse: Sse| {
        assert_eq!(sse.status, 404, "{}", sse.head);
    };
    not_found(Sse::open(&server, "acme", "prod", &path(&big), &[]));
    not_found(Sse::open(
        &server,
        "acme",
        "prod",
        &path(&staging_support),
        &[],
    ));
    not_found(Sse::open(
        &server,
        "acme",
        "prod",
        &path(&prod_sales),
        &[("X-Team-ID", "support")],
    ));
    not_found(Sse::open(
        &server,
        "bigcorp",
        "prod",
        &path(&prod_support),
        &[],
    ));
    not_found(Sse::open(
        &server,
        "acme",
        "prod",
        &path("no-such-session"),
        &[],
    ));
    // A token for acme naming bigcorp in X-Tenant-ID never opens a stream.
    let bearer = format!("Bearer {}", token_in("acme", "prod"));
    let crossed = server.get(
        all,
        &[("Authorization", &bearer), ("X-Tenant-ID", "bigcorp")],
    );
    assert_eq!(crossed.error(403), "tenant_mismatch");
}

#[test]
fn streams_are_bounded_per_tenant() {
    let server = Serve::shipped().start();
    let path = "/api/v1/events/stream";
    let mut open: Vec<Sse> = (0..STREAMS_PER_TENANT_MAX)
        .map(|_| Sse::open(&server, "acme", "prod", path, &[]))
        .collect();
    assert!(open.iter().all(|s| s.status == 200));
    let refused = Sse::open(&server, "acme", "prod", path, &[]);
    assert_eq!(refused.status, 429, "{}", refused.head);
    assert!(refused.head.contains("retry-after: "), "{}", refused.head);
    // Another tenant is not affected.
    assert_eq!(Sse::open(&server, "bigcorp", "prod", path, &[]).status, 200);
    // A client that goes away gives its slot back, at the heartbeat (15 s) and its probe (1 s)
    // at the latest: actix notices a gone client only when a write fails.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let again = Sse::open(&server, "acme", "prod", path, &[]);
        if again.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot of a closed stream was not given back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stopping_server_ends_its_streams_at_once() {
    let mut server = Serve::shipped().start();
    let session = post(&server, "acme", "prod", "support", "slack", "hi")["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tenant = Sse::open(&server, "acme", "prod", "/api/v1/events/stream", &[]);
    let mut one = Sse::open(
        &server,
        "acme",
        "prod",
        &format!("/api/v1/sessions/{session}/events/stream"),
        &[],
    );
    assert!(one.next(Instant::now() + Duration::from_secs(5)).is_some());
    let stopping = Instant::now();
    server.sigterm();
    assert!(
        tenant.ends_within(Duration::from_secs(5)),
        "the tenant stream was not ended"
    );
    assert!(
        one.ends_within(Duration::from_secs(5)),
        "the session stream was not ended"
    );
    let status = server.child().wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Well under the graceful stop's 10 s (SHUTDOWN_TIMEOUT_S), which an open stream would hold.
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

/// A cluster node serving acme from the JetStream log (stream `STREAMS`) behind `url`.
fn cluster_node(url: &str, node: &str) -> ServeProcess {
    Serve::shipped()
        .section(
            "nats",
            &format!("url = \"{url}\"\nsubject_prefix = \"greentic.messaging\""),
        )
        .section(
            "log",
            "backend = \"jetstream\"\nstream = \"STREAMS\"\nreplicas = 1",
        )
        .section("cluster", &format!("node = \"{node}\""))
        .start()
}

#[test]
fn a_node_that_follows_a_tenant_streams_what_its_owner_appends() {
    let js = crate::support::JetStream::single();
    // The first node takes every tenant's lease before it serves; the second follows them.
    let owner = cluster_node(&js.url(0), "a");
    let follower = cluster_node(&js.url(0), "b");
    let mut on_follower = Sse::open(&follower, "acme", "prod", "/api/v1/events/stream", &[]);
    assert_eq!(on_follower.status, 200, "{}", on_follower.head);
    let posted = Instant::now();
    let ack = post(&owner, "acme", "prod", "support", "slack", "followed");
    let first = on_follower
        .next(Instant::now() + Duration::from_secs(5))
        .expect("the owner's events on the follower's stream");
    // The follower applies the stream's records every 200 ms.
    assert!(
        posted.elapsed() < Duration::from_secs(3),
        "{:?}",
        posted.elapsed()
    );
    let mut events = vec![first];
    events.extend(on_follower.drain(Duration::from_millis(1000)));
    assert_eq!(
        sessions_of(&events),
        vec![ack["session"].as_str().unwrap().to_owned()]
    );
    assert!(
        events.iter().any(|e| e.data["data"]["text"] == "followed"),
        "{events:#?}"
    );
}

#[test]
fn the_heartbeat_comes_every_15_s_even_while_other_envs_are_busy() {
    let server = Serve::shipped().start();
    let mut quiet = Sse::open(&server, "acme", "prod", "/api/v1/events/stream", &[]);
    let opened = Instant::now();
    // Staging is busy all along: every message wakes the prod stream, which sends nothing.
    let url = server.url("/api/v1/messages");
    let bearer = format!("Bearer {}", token_in("acme", "staging"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = std::thread::scope(|scope| {
        let poster = scope.spawn(|| {
            let agent = crate::support::agent(Duration::from_secs(10));
            let mut posted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"team": "support", "channel": "slack", "user": "busy",
                                  "text": format!("busy {posted}")});
                let sent = agent
                    .post(&url)
                    .header("Authorization", &bearer)
                    .header("X-Tenant-ID", "acme")
                    .send(body.to_string());
                assert_eq!(crate::support::read(sent).status, 200);
                posted += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            posted
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(line) = quiet.line(deadline) {
            if line == ": ping" {
                break;
            }
            seen.push(line);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // `: open`, and the chunked encoding's size lines; no event, no earlier heartbeat.
        assert!(seen.contains(&": open".to_owned()), "{seen:?}");
        assert!(
            !seen
                .iter()
                .any(|l| l.starts_with("data:") || l.starts_with(':') && l != ": open"),
            "{seen:?}"
        );
        poster.join().unwrap()
    });
    let waited = opened.elapsed();
    assert!(busy > 10, "staging got {busy} messages");
    assert!(
        waited >= Duration::from_secs(14) && waited < Duration::from_secs(18),
        "the ping came after {waited:?}"
    );
}
