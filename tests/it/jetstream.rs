//! The JetStream server set-up the replicated log relies on, against real nats-server 2.15
//! processes on loopback ([`JetStream`]): the shipped server config (`sync_interval: always`)
//! is the one the tests run, an R3 file stream fences a writer with a stale expected
//! last-subject-sequence, and it keeps taking and serving writes when its leader dies or stalls
//! (a stalled leader that wakes up is fenced like any stale writer).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, StorageType, Stream};
use async_nats::jetstream::{self, Context};

use crate::support::{
    agent, jetstream_server_binary, shipped_jetstream_block, tokio_runtime, JetStream,
    JETSTREAM_DEPLOY_CONFIG,
};

/// How long a publish or read may keep failing while a killed node's streams fail over (an
/// election takes a few seconds).
const FAILOVER_WINDOW: Duration = Duration::from_secs(20);

/// How long one attempt waits for JetStream's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn shipped_jetstream_config_syncs_before_ack_and_is_what_the_tests_run() {
    // The shipped file requires sync_interval: always in its jetstream block (not in a comment).
    let block = shipped_jetstream_block(Path::new("/store"));
    assert!(
        block.lines().any(|l| l.trim() == "sync_interval: always"),
        "{JETSTREAM_DEPLOY_CONFIG} must set `sync_interval: always` in its jetstream block \
         (without it JetStream acks before fsync):\n{block}"
    );
    // nats-server 2.15 accepts the whole file as shipped.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = Command::new(jetstream_server_binary())
        .arg("-t")
        .arg("-c")
        .arg(root.join(JETSTREAM_DEPLOY_CONFIG))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // A test server runs that very block (its own store dir) and reports syncing every write.
    let server = JetStream::single();
    let written = std::fs::read_to_string(server.dir().join("n0.conf")).unwrap();
    assert!(
        written.contains(&shipped_jetstream_block(&server.dir().join("n0"))),
        "{written}"
    );
    let mut varz = agent(Duration::from_secs(5))
        .get(format!("{}/varz", server.monitoring(0)))
        .call()
        .unwrap();
    let varz: serde_json::Value =
        serde_json::from_str(&varz.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        varz["jetstream"]["config"]["sync_always"], true,
        "{}",
        varz["jetstream"]
    );
}

/// A client of every node (`urls()` is a `[nats] url` value) whose acks time out after
/// [`ACK_TIMEOUT`].
async fn connect(urls: &str) -> Context {
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
        .await
        .unwrap();
    let mut context = jetstream::new(client);
    context.set_timeout(ACK_TIMEOUT);
    context
}

/// Publishes `payload` to `subject` if its last message is stream seq `expected` (0: none yet).
async fn publish(
    js: &Context,
    subject: &str,
    payload: &'static str,
    expected: u64,
) -> Result<u64, PublishError> {
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(payload)
        .expected_last_subject_sequence(expected);
    let ack = js.send_publish(subject.to_owned(), message).await?.await?;
    Ok(ack.sequence)
}

/// [`publish`] until JetStream gives a definite answer: an ack or the fence
/// (`WrongLastSequence`). Anything else (no responders while a new R3 stream's group settles
/// on a loaded machine, a lost ack) is retried for [`FAILOVER_WINDOW`]; a retry has the same
/// `Nats-Msg-Id`, so a stored attempt is answered as that message.
async fn publish_settled(
    js: &Context,
    subject: &str,
    payload: &'static str,
    expected: u64,
) -> Result<u64, PublishError> {
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        match publish(js, subject, payload, expected).await {
            Err(e) if e.kind() != PublishErrorKind::WrongLastSequence => {
                assert!(Instant::now() < deadline, "no answer for {subject}: {e}");
            }
            answer => return answer,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`publish`], retried for [`FAILOVER_WINDOW`] while it fails for any reason but fencing. An
/// attempt whose ack was lost may have been stored: the retry then has the same `Nats-Msg-Id`
/// and is reported as that message (JetStream's dedup), or is fenced because it landed, which
/// the subject's last message tells.
async fn publish_through_failover(
    js: &Context,
    stream: &Stream,
    subject: &str,
    payload: &'static str,
    expected: u64,
) -> u64 {
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        let error = match publish(js, subject, payload, expected).await {
            Ok(seq) => return seq,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let last = stream
                    .get_last_raw_message_by_subject(subject)
                    .await
                    .unwrap();
                assert_eq!(last.payload, payload, "fenced by another writer: {e}");
                return last.sequence;
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "no ack within {FAILOVER_WINDOW:?}: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last message on `subject` (seq, payload), retried for [`FAILOVER_WINDOW`].
async fn last_on(stream: &Stream, subject: &str) -> (u64, String) {
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => return (m.sequence, String::from_utf8(m.payload.to_vec()).unwrap()),
            Err(e) => assert!(Instant::now() < deadline, "no read of {subject}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node index of the stream's leader (nodes are named `n{i}`).
async fn leader(stream: &mut Stream) -> usize {
    let info = stream.info().await.unwrap();
    let name = info.cluster.as_ref().and_then(|c| c.leader.clone());
    let name = name.unwrap_or_else(|| panic!("no leader: {info:?}"));
    name.trim_start_matches('n').parse().unwrap()
}

/// The R3 file stream `IT_LOG` of subjects `it.log.>`.
async fn r3_stream(js: &Context) -> Stream {
    js.create_stream(Config {
        name: "IT_LOG".to_owned(),
        subjects: vec!["it.log.>".to_owned()],
        storage: StorageType::File,
        num_replicas: 3,
        ..Config::default()
    })
    .await
    .unwrap()
}

#[test]
fn r3_stream_fences_stale_writers_and_survives_its_leader_dying() {
    let mut servers = JetStream::cluster(3);
    let rt = tokio_runtime();
    rt.block_on(async {
        let js = connect(&servers.urls()).await;
        let mut stream = r3_stream(&js).await;
        let (acme, bigcorp) = ("it.log.acme", "it.log.bigcorp");

        // Fencing: the first write on an empty subject expects 0; a writer that expects a
        // sequence the subject has moved past is refused, and the refusal stores nothing.
        assert_eq!(publish_settled(&js, acme, "a1", 0).await.unwrap(), 1);
        assert_eq!(publish_settled(&js, bigcorp, "b1", 0).await.unwrap(), 2);
        let stale = publish_settled(&js, acme, "a1-stale", 0).await.unwrap_err();
        assert_eq!(stale.kind(), PublishErrorKind::WrongLastSequence, "{stale}");
        // The stream sequence is global: acme's last is 1, not 2.
        let stale = publish_settled(&js, acme, "a2-stale", 2).await.unwrap_err();
        assert_eq!(stale.kind(), PublishErrorKind::WrongLastSequence, "{stale}");
        assert_eq!(publish_settled(&js, acme, "a2", 1).await.unwrap(), 3);
        assert_eq!(stream.info().await.unwrap().state.messages, 3);

        // The stream's leader dies: a survivor takes over, with the fence intact.
        let dead = leader(&mut stream).await;
        let killed = Instant::now();
        servers.kill(dead);
        let seq = publish_through_failover(&js, &stream, acme, "a3", 3).await;
        let failover = killed.elapsed();
        assert_eq!(seq, 4, "after {failover:?}");
        assert_eq!(last_on(&stream, acme).await, (4, "a3".to_owned()));
        assert_eq!(last_on(&stream, bigcorp).await, (2, "b1".to_owned()));
        let stale = publish_settled(&js, acme, "a3-stale", 3).await.unwrap_err();
        assert_eq!(stale.kind(), PublishErrorKind::WrongLastSequence, "{stale}");
        assert_eq!(stream.info().await.unwrap().state.messages, 4);
        assert_ne!(leader(&mut stream).await, dead);
        eprintln!("JetStream R3: first ack {failover:?} after killing the stream leader");

        // It comes back with its store dir and catches up; a client of it alone reads it all.
        servers.restart(dead);
        let alone = connect(&servers.url(dead)).await;
        let stream = alone.get_stream("IT_LOG").await.unwrap();
        assert_eq!(last_on(&stream, acme).await, (4, "a3".to_owned()));
        assert_eq!(publish_settled(&alone, bigcorp, "b2", 2).await.unwrap(), 5);
    });
}

#[test]
fn a_paused_stream_leader_wakes_up_fenced() {
    let servers = JetStream::cluster(3);
    let rt = tokio_runtime();
    rt.block_on(async {
        let js = connect(&servers.urls()).await;
        let mut stream = r3_stream(&js).await;
        let acme = "it.log.acme";
        assert_eq!(publish_settled(&js, acme, "a1", 0).await.unwrap(), 1);

        // The leader stalls (SIGSTOP): the others elect a new one and take the next write (from
        // a client of theirs: a client of the paused node would wait for its ping timeout).
        let paused = leader(&mut stream).await;
        let others: Vec<String> = (0..3)
            .filter(|&i| i != paused)
            .map(|i| servers.url(i))
            .collect();
        let js = connect(&others.join(",")).await;
        let stream = js.get_stream("IT_LOG").await.unwrap();
        servers.stop(paused);
        assert_eq!(
            publish_through_failover(&js, &stream, acme, "a2", 1).await,
            2
        );

        // It wakes up believing it leads; a write through it alone that expects what it last
        // saw is refused, one that expects the cluster's last is taken.
        servers.cont(paused);
        let woken = connect(&servers.url(paused)).await;
        let deadline = Instant::now() + FAILOVER_WINDOW;
        let stale = loop {
            match publish(&woken, acme, "a2-stale", 1).await {
                Ok(seq) => panic!("the woken node took a stale write as seq {seq}"),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => break e,
                Err(e) => assert!(Instant::now() < deadline, "no answer: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(stale.kind(), PublishErrorKind::WrongLastSequence);
        let stream = woken.get_stream("IT_LOG").await.unwrap();
        assert_eq!(
            publish_through_failover(&woken, &stream, acme, "a3", 2).await,
            3
        );
        assert_eq!(last_on(&stream, acme).await, (3, "a3".to_owned()));
    });
}
