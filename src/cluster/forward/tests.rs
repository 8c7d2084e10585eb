//! Forwarding between two runtimes (two sled logs, one actix System) over a real nats-server
//! (Debian's 2.9 is enough for request/reply): node `b` is told that `a` owns a tenant, and
//! everything sent to `b` must be handled by `a` and answered by `b` as `a` would.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::ResponseError;

use super::*;
use crate::actors::runtime::RuntimeOptions;
use crate::config::LoadOptions;
use crate::edge::http::error::ApiError;
use crate::events::log::{EventLog, LogOptions};
use crate::projections::snapshot::SnapshotStore;

/// Echoes each message; `bye` ends the session. (A node's successor is the next one in the
/// file, so the echo comes last.)
const FLOW: &str = r#"
name: forward_flow
version: "1"
nodes:
  - id: start
    type: route
    config:
      routes:
        - keyword: bye
          next: goodbye
      default: echo
  - id: goodbye
    type: end
    config:
      reason: user said bye
  - id: echo
    type: reply
    config:
      message: "{{ tenant.name }} heard: {{ message.text }}"
"#;

const STREAM: &str = "TENANTRY_LOG";

/// A plain nats-server on a free loopback port; killed on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    fn start() -> NatsServer {
        let binary = std::env::var_os("TENANTRY_NATS_SERVER")
            .unwrap_or_else(|| "/usr/sbin/nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian's /usr/sbin/nats-server, or TENANTRY_NATS_SERVER)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url).await.unwrap()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A placement set by the test: per tenant a script of routes, each answered once, the last
/// one for good; `Local` for a tenant without one.
struct Scripted {
    node: String,
    routes: Mutex<HashMap<TenantId, VecDeque<Route>>>,
}

impl Scripted {
    fn new(node: &str) -> Arc<Scripted> {
        Arc::new(Scripted {
            node: node.into(),
            routes: Mutex::default(),
        })
    }

    fn set(&self, tenant: &str, script: &[Route]) {
        self.routes
            .lock()
            .unwrap()
            .insert(id(tenant), script.iter().cloned().collect());
    }
}

impl Placement for Scripted {
    fn route(&self, tenant: &TenantId) -> Route {
        let mut routes = self.routes.lock().unwrap();
        match routes.get_mut(tenant) {
            None => Route::Local,
            Some(script) if script.len() > 1 => script.pop_front().unwrap(),
            Some(script) => script.front().cloned().unwrap_or(Route::Local),
        }
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// One node: its own data dir and log, its runtime (with forwarding), its listener.
struct Node {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    placement: Arc<Scripted>,
    _stop: watch::Sender<bool>,
}

impl Node {
    async fn start(nats: &NatsServer, name: &str, tune: impl FnOnce(&mut RuntimeOptions)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flow.yaml"), FLOW).unwrap();
        let data = dir.path().join("data");
        std::fs::write(dir.path().join("config.toml"), config_toml(&data, name)).unwrap();
        let config =
            Config::load(&dir.path().join("config.toml"), &LoadOptions::default()).unwrap();
        let placement = Scripted::new(name);
        let client = nats.client().await;
        let mut opts = RuntimeOptions::from_config(&config);
        tune(&mut opts);
        opts.forwarding = forwarding(&config, &client, placement.clone())
            .await
            .unwrap();
        assert!(opts.forwarding.is_some(), "[cluster] is set");
        let log = EventLog::open(&data.join("log"), &LogOptions::default()).unwrap();
        let snapshots = SnapshotStore::new(data.join("sessions"));
        let runtime = Runtime::start(&config, log, snapshots, opts);
        let (stop_tx, stop) = watch::channel(false);
        start(
            &config,
            client.clone(),
            runtime.clone(),
            placement.clone(),
            stop,
        )
        .unwrap();
        // The listener counts as up once the server has its subscription.
        wait_for_listener(&client, name).await;
        Node {
            _dir: dir,
            runtime,
            placement,
            _stop: stop_tx,
        }
    }

    /// The session's last seq in this node's own log; 0 when it has none of it.
    fn last_seq(&self, ctx: &TenantCtx, session: &SessionId) -> u64 {
        self.runtime
            .session_state(ctx, session)
            .unwrap()
            .map_or(0, |s| s.last_seq)
    }
}

/// Waits until a request on `node`'s subject gets an answer (any answer).
async fn wait_for_listener(client: &async_nats::Client, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let asked = client.request(subject(STREAM, node), "{}".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), asked).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "listener of {node} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_toml(data_dir: &Path, node: &str) -> String {
    format!(
        r#"
[server]
data_dir = "{}"
[runtime]
session_idle_timeout = "10m"
[cluster]
node = "{node}"
[tenants.acme]
name = "ACME"
environments = ["prod"]
[tenants.acme.teams.support]
flow = "flow.yaml"
[tenants.acme.teams.support.channels.web]
provider = "messaging-webchat"
[tenants.globex]
name = "Globex"
environments = ["prod"]
[tenants.globex.teams.support]
flow = "flow.yaml"
[tenants.globex.teams.support.channels.web]
provider = "messaging-webchat"
"#,
        data_dir.display()
    )
}

fn id<T: std::str::FromStr>(raw: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    raw.parse().unwrap()
}

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(id(tenant), id("prod"), Some(id("support")))
}

fn web() -> ChannelId {
    id("web")
}

fn msg(session: &str, text: &str, message_id: Option<&str>) -> Inbound {
    Inbound {
        session: Some(id(session)),
        user: "ada".into(),
        text: text.into(),
        message_id: message_id.map(Into::into),
    }
}

/// Nodes `a` and `b` on one server; `b` is told that `a` owns acme.
async fn pair(nats: &NatsServer) -> (Node, Node) {
    let a = Node::start(nats, "a", |_| {}).await;
    let b = Node::start(nats, "b", |_| {}).await;
    b.placement.set("acme", &[Route::Remote("a".into())]);
    (a, b)
}

/// What an HTTP client is shown for `e`: status, `Retry-After`, body.
async fn shown(e: RuntimeError) -> (u16, Option<String>, String) {
    let response = ApiError::Runtime(e).error_response();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    (
        status,
        retry_after,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Sends a hand-made forwarded request to `node` and reads the reply.
async fn raw_request(
    client: &async_nats::Client,
    node: &str,
    body: serde_json::Value,
) -> ForwardReply {
    let reply = client
        .request(
            subject(STREAM, node),
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

fn request_json(tenant: &str, team: &str, session: &str) -> serde_json::Value {
    serde_json::json!({
        "tenant": tenant, "env": "prod", "team": team, "channel": "web",
        "inbound": {"session": session, "user": "ada", "text": "hi", "message_id": "m1"}
    })
}

#[test]
fn the_subject_names_the_stream_and_the_node() {
    assert_eq!(
        subject("TENANTRY_LOG", "n1"),
        "tenantry.cluster.TENANTRY_LOG.forward.n1"
    );
}

#[actix_rt::test]
async fn a_message_sent_to_a_non_owner_is_handled_by_the_owner_and_answered_as_its_ack() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    let at = ctx("acme");
    let s1: SessionId = id("s1");
    let ack = b
        .runtime
        .send(&at, &web(), msg("s1", "hello", Some("m1")))
        .await
        .unwrap();
    assert_eq!(ack.session, s1);
    assert_eq!(ack.replies, vec!["ACME heard: hello".to_owned()]);
    assert!(!ack.duplicate);
    // The events are in a's log; b's has nothing of the session.
    assert!(a.last_seq(&at, &s1) >= ack.seq, "a's log has the message");
    assert_eq!(b.last_seq(&at, &s1), 0, "b appended nothing");
    // Isolation: the session is acme's, not globex's, on the owner too.
    assert_eq!(a.last_seq(&ctx("globex"), &s1), 0);

    // A retry with the same message_id through b gets the first answer, appending nothing.
    let before = a.last_seq(&at, &s1);
    let again = b
        .runtime
        .send(&at, &web(), msg("s1", "hello", Some("m1")))
        .await
        .unwrap();
    assert_eq!(
        (again.session.clone(), again.seq),
        (ack.session.clone(), ack.seq)
    );
    assert_eq!(again.replies, ack.replies);
    assert!(again.duplicate, "the owner recognised the retry");
    assert_eq!(a.last_seq(&at, &s1), before);
    assert_eq!(b.last_seq(&at, &s1), 0);
}

#[actix_rt::test]
async fn an_operator_close_or_reset_on_a_non_owner_is_refused_and_appends_nothing() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    let at = ctx("acme");
    let s1: SessionId = id("s1");
    a.runtime
        .send(&at, &web(), msg("s1", "hello", None))
        .await
        .unwrap();
    let before = a.last_seq(&at, &s1);
    // b holds none of acme's session actors: neither a close nor a reset can act there.
    let closed = b.runtime.close_session(&at, &web(), &s1).await;
    assert!(
        matches!(closed, Err(RuntimeError::Interrupted)),
        "{closed:?}"
    );
    let reset = b.runtime.reset_session(&at, &s1).await;
    assert!(matches!(reset, Err(RuntimeError::Interrupted)), "{reset:?}");
    assert_eq!(a.last_seq(&at, &s1), before);
    assert_eq!(b.last_seq(&at, &s1), 0);
    // On the owner both act.
    a.runtime.reset_session(&at, &s1).await.unwrap();
    let ack = a.runtime.close_session(&at, &web(), &s1).await.unwrap();
    assert_eq!(ack.seq, before + 1);
}

#[actix_rt::test]
async fn a_burst_for_one_session_through_a_non_owner_keeps_its_order() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    let at = ctx("acme");
    // The session's actor runs before the burst: a starting actor's mailbox holds only actix's
    // default 16 until its start sets SESSION_MAILBOX (64), whatever the route.
    b.runtime
        .send(&at, &web(), msg("s1", "warm", None))
        .await
        .unwrap();
    const BURST: usize = 48;
    let pending: Vec<_> = (0..BURST)
        .map(|i| {
            let m = msg("s1", &format!("n{i}"), Some(&format!("m{i}")));
            b.runtime.submit(&at, &web(), m).unwrap()
        })
        .collect();
    // Awaited last-first: the order must come from the order of `submit`, not of polling.
    let mut tasks: Vec<_> = pending.into_iter().rev().map(tokio::spawn).collect();
    tasks.reverse();
    let acks: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut last = 0;
    for (i, ack) in acks.into_iter().enumerate() {
        let ack = ack.unwrap_or_else(|e| panic!("message {i}: {e:?}"));
        assert!(
            ack.seq > last,
            "message {i} got seq {} after {last}",
            ack.seq
        );
        assert_eq!(ack.replies, vec![format!("ACME heard: n{i}")]);
        last = ack.seq;
    }
    assert!(a.last_seq(&at, &id("s1")) >= last);
    assert_eq!(b.last_seq(&at, &id("s1")), 0);
}

#[actix_rt::test]
async fn every_runtime_error_crosses_the_wire_and_is_shown_as_the_owner_would_show_it() {
    let cases = vec![
        RuntimeError::UnknownTenant(id("acme")),
        RuntimeError::UnknownEnv {
            tenant: id("acme"),
            env: id("qa"),
        },
        RuntimeError::UnknownTeam {
            tenant: id("acme"),
            team: id("sales"),
        },
        RuntimeError::UnknownChannel {
            team: id("support"),
            channel: id("fax"),
        },
        RuntimeError::Invalid("user must be 1..=128 bytes".into()),
        RuntimeError::SessionEnded(id("s1")),
        RuntimeError::SessionChannel {
            session: id("s1"),
            channel: id("web"),
        },
        RuntimeError::Quarantined(id("s1")),
        RuntimeError::FlowCrashed(id("s1")),
        RuntimeError::Overloaded,
        RuntimeError::SessionsFull { limit: 7 },
        RuntimeError::ShuttingDown,
        RuntimeError::Interrupted,
        RuntimeError::Storage("appending to /srv/data/log/db: tenant_seq 41".into()),
    ];
    for e in cases {
        let wire = serde_json::to_vec(&ForwardReply::Error(encode_error(&e))).unwrap();
        let text = String::from_utf8(wire.clone()).unwrap();
        assert!(
            !text.contains("/srv"),
            "internal detail crossed the wire: {text}"
        );
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["error"]["code"], e.code(), "{text}");
        assert_eq!(json["error"]["message"], e.public().1.as_str(), "{text}");
        let Ok(ForwardReply::Error(value)) = serde_json::from_slice(&wire) else {
            panic!("not an error reply: {text}");
        };
        let back = decode_error(value, "a");
        assert_eq!(back.code(), e.code());
        assert_eq!(back.public(), e.public());
        let code = e.code();
        assert_eq!(shown(back).await, shown(e).await, "{code}");
    }
}

#[actix_rt::test]
async fn a_newer_nodes_unknown_error_code_is_a_failure_not_a_guess() {
    let e = decode_error(
        serde_json::json!({"code": "from_the_future", "message": "?"}),
        "a",
    );
    assert_eq!(e.code(), "internal");
    assert_eq!(shown(e).await.0, 500);
}

#[actix_rt::test]
async fn the_owners_errors_reach_the_client_of_the_non_owner_with_their_status() {
    let nats = NatsServer::start();
    // a refuses every message of acme as overloaded: its share is zero.
    let a = Node::start(&nats, "a", |o| o.inflight_per_tenant_max = 0).await;
    let b = Node::start(&nats, "b", |_| {}).await;
    b.placement.set("acme", &[Route::Remote("a".into())]);
    let at = ctx("acme");
    let e = b
        .runtime
        .send(&at, &web(), msg("s1", "hi", None))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Overloaded), "{e:?}");
    let (status, retry_after, body) = shown(e).await;
    assert_eq!((status, retry_after.as_deref()), (429, Some("1")), "{body}");
    drop(a);

    // session_ended: the owner ended the session; b answers 409 as a would.
    let nats = NatsServer::start();
    let (_a, b) = pair(&nats).await;
    b.runtime
        .send(&at, &web(), msg("s2", "bye", None))
        .await
        .unwrap();
    let e = b
        .runtime
        .send(&at, &web(), msg("s2", "hello", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RuntimeError::SessionEnded(s) if s.as_str() == "s2"),
        "{e:?}"
    );
    let (status, _, body) = shown(e).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("session_ended") && body.contains("s2"),
        "{body}"
    );

    // unknown_team from the owner (a request another node checked against its own config).
    let client = nats.client().await;
    let reply = raw_request(&client, "a", request_json("acme", "sales", "s3")).await;
    let ForwardReply::Error(value) = reply else {
        panic!("not an error: {reply:?}");
    };
    let e = decode_error(value, "a");
    assert!(matches!(e, RuntimeError::UnknownTeam { .. }), "{e:?}");
    assert_eq!(shown(e).await.0, 400);
}

#[actix_rt::test]
async fn bad_input_is_refused_by_the_receiving_node_before_forwarding() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    let sales = TenantCtx::new(id("acme"), id("prod"), Some(id("sales")));
    let e = b
        .runtime
        .submit(&sales, &web(), msg("s1", "hi", None))
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::UnknownTeam { .. }), "{e:?}");
    assert_eq!(
        a.runtime
            .metrics()
            .inflight
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
}

#[actix_rt::test]
async fn a_forwarded_request_for_a_tenant_not_owned_here_is_refused_not_handled() {
    let nats = NatsServer::start();
    let a = Node::start(&nats, "a", |_| {}).await;
    // a lost acme to b, and knows it.
    a.placement.set("acme", &[Route::Remote("b".into())]);
    let client = nats.client().await;
    let reply = raw_request(&client, "a", request_json("acme", "support", "s1")).await;
    assert!(
        matches!(&reply, ForwardReply::NotOwner { tenant, node } if tenant.as_str() == "acme" && node == "a"),
        "{reply:?}"
    );
    assert_eq!(a.last_seq(&ctx("acme"), &id("s1")), 0, "nothing appended");
    // Unowned is not owned either.
    a.placement.set("acme", &[Route::Unowned]);
    let reply = raw_request(&client, "a", request_json("acme", "support", "s1")).await;
    assert!(matches!(reply, ForwardReply::NotOwner { .. }), "{reply:?}");
    assert_eq!(a.last_seq(&ctx("acme"), &id("s1")), 0, "nothing appended");
    // Another tenant a does own is handled.
    let reply = raw_request(&client, "a", request_json("globex", "support", "s1")).await;
    assert!(matches!(reply, ForwardReply::Ack(_)), "{reply:?}");
    assert!(a.last_seq(&ctx("globex"), &id("s1")) > 0);
}

#[actix_rt::test]
async fn a_not_owner_answer_makes_the_sender_ask_again_and_follow_the_new_route() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    // b still believes a owns acme on its first ask; a has lost it (to b).
    a.placement.set("acme", &[Route::Remote("b".into())]);
    b.placement
        .set("acme", &[Route::Remote("a".into()), Route::Local]);
    let at = ctx("acme");
    let ack = b
        .runtime
        .send(&at, &web(), msg("s1", "hello", Some("m1")))
        .await
        .unwrap();
    assert_eq!(ack.replies, vec!["ACME heard: hello".to_owned()]);
    assert_eq!(a.last_seq(&at, &id("s1")), 0, "a refused it");
    assert!(
        b.last_seq(&at, &id("s1")) >= ack.seq,
        "b, the new owner, handled it"
    );
}

#[actix_rt::test]
async fn a_node_without_a_listener_gives_the_retryable_error_at_once() {
    let nats = NatsServer::start();
    let (_a, b) = pair(&nats).await;
    b.placement.set("acme", &[Route::Remote("gone".into())]);
    let started = Instant::now();
    let e = b
        .runtime
        .send(&ctx("acme"), &web(), msg("s1", "hi", Some("m1")))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Interrupted), "{e:?}");
    assert!(
        started.elapsed() < FORWARD_TIMEOUT / 2,
        "no responders is known at once"
    );
    assert_eq!(shown(e).await.0, 503);
}

#[actix_rt::test]
async fn an_unowned_tenant_waits_for_an_owner_then_gives_the_retryable_error() {
    let nats = NatsServer::start();
    let (a, b) = pair(&nats).await;
    let at = ctx("acme");
    b.placement.set("acme", &[Route::Unowned]);
    let started = Instant::now();
    let e = b
        .runtime
        .send(&at, &web(), msg("s1", "hi", Some("m1")))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Interrupted), "{e:?}");
    assert!(
        started.elapsed() >= OWNER_WAIT,
        "gave up after {:?}",
        started.elapsed()
    );
    let (status, retry_after, _) = shown(e).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(a.last_seq(&at, &id("s1")) + b.last_seq(&at, &id("s1")), 0);

    // An owner that appears while the message waits gets it.
    b.placement.set(
        "acme",
        &[Route::Unowned, Route::Unowned, Route::Remote("a".into())],
    );
    let ack = b
        .runtime
        .send(&at, &web(), msg("s1", "hi", Some("m1")))
        .await
        .unwrap();
    assert!(a.last_seq(&at, &id("s1")) >= ack.seq);
}

#[test]
fn a_static_placement_reads_tenant_node_pairs_and_refuses_anything_else() {
    let p = StaticPlacement::parse("b", "acme=a, globex=unowned,initech=b").unwrap();
    assert_eq!(p.route(&id("acme")), Route::Remote("a".into()));
    assert_eq!(p.route(&id("globex")), Route::Unowned);
    assert_eq!(
        p.route(&id("initech")),
        Route::Local,
        "its own name is Local"
    );
    assert_eq!(
        p.route(&id("hooli")),
        Route::Local,
        "unnamed tenants are Local"
    );
    assert_eq!(p.node(), "b");
    for bad in ["acme", "Acme!=a", "acme=a.b", "acme="] {
        let e = StaticPlacement::parse("b", bad).err().unwrap().to_string();
        assert!(
            e.contains(STATIC_PLACEMENT_VAR) && e.contains("tenant=node"),
            "{bad}: {e}"
        );
    }
}
