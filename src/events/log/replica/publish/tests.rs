//! What a refusal means, by error code; and chained publishes on a real R3 stream of
//! nats-server 2.15 (three servers on loopback) with both cores busy, where the server refuses
//! some of them as "in process" right after acking the one before.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream};

use super::{publish_expecting, refusal, Refusal, Refused};
use crate::events::log::replica::tests::server_binary;

/// The error nats-server answers with `err_code`, as the client decodes it.
fn server_error(err_code: u64, description: &str) -> jetstream::Error {
    let json = format!(r#"{{"code":400,"err_code":{err_code},"description":"{description}"}}"#);
    serde_json::from_str(&json).unwrap()
}

#[test]
fn a_stale_expectation_fences_an_in_process_subject_is_retried_and_the_rest_fail() {
    let stale = PublishError::new(PublishErrorKind::WrongLastSequence);
    assert_eq!(refusal(&stale), Refusal::WrongLast);
    let busy = PublishError::with_source(
        PublishErrorKind::Other,
        server_error(10164, "wrong last sequence"),
    );
    assert_eq!(refusal(&busy), Refusal::SubjectBusy);
    let other = PublishError::with_source(
        PublishErrorKind::Other,
        server_error(10077, "maximum messages exceeded"),
    );
    assert_eq!(refusal(&other), Refusal::Other);
    assert_eq!(
        refusal(&PublishError::new(PublishErrorKind::TimedOut)),
        Refusal::Other
    );
}

/// Three nats-servers with JetStream in one cluster, on free loopback ports; killed on drop.
struct Cluster {
    children: Vec<Child>,
    url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes_list = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let children = (0..3)
            .map(|i| {
                let config = dir.path().join(format!("n{i}.conf"));
                let store = dir.path().join(format!("n{i}"));
                std::fs::write(
                    &config,
                    conf(i, clients[i], routes[i], &routes_list, &store),
                )
                .unwrap();
                Command::new(server_binary())
                    .arg("-c")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        Cluster {
            children,
            url: format!("nats://127.0.0.1:{}", clients[0]),
            _dir: dir,
        }
    }
}

fn conf(i: usize, client: u16, route: u16, routes: &str, store: &Path) -> String {
    format!(
        "server_name: n{i}\nlisten: 127.0.0.1:{client}\n\
         jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n\
         cluster {{\n  name: c\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
        store.display().to_string()
    )
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// 8 chains of 400 publishes of 50 KiB each, every one sent once the one before was acked and
/// held to it, with two threads spinning meanwhile: every publish is stored in order (the
/// server's "in process" refusals among them are retried), and a stale expectation is then
/// refused as one.
#[test]
fn on_a_busy_r3_stream_every_chained_publish_is_stored_and_a_stale_one_is_fenced() {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let js = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let client = async_nats::connect(&cluster.url).await?;
                let js = jetstream::new(client);
                js.create_stream(stream::Config {
                    name: "CHAIN".into(),
                    subjects: vec!["CHAIN.*".into()],
                    storage: stream::StorageType::File,
                    num_replicas: 3,
                    ..Default::default()
                })
                .await?;
                Ok::<_, async_nats::Error>(js)
            };
            match attempt.await {
                Ok(js) => break js,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the R3 stream was not created: {e}"),
            }
        }
    });
    let spin = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let spin = spin.clone();
            std::thread::spawn(move || {
                while spin.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let chains = rt.block_on(futures_util::future::join_all((0..8).map(|c| {
        let js = js.clone();
        async move {
            let subject = format!("CHAIN.t{c}");
            let mut expected = 0;
            for _ in 0..400 {
                expected = publish_expecting(&js, &subject, vec![7; 50 * 1024], Some(expected))
                    .await
                    .map_err(|e| format!("{subject} after {expected}: {e:?}"))?;
            }
            Ok::<_, String>((subject, expected))
        }
    })));
    spin.store(false, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    for chain in chains {
        let (subject, last) = chain.unwrap();
        let stale = rt.block_on(publish_expecting(&js, &subject, vec![1], Some(last - 1)));
        assert_eq!(stale, Err(Refused::WrongLast), "{subject}");
    }
    let info = rt.block_on(async {
        js.get_stream("CHAIN")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    });
    assert_eq!(info, 8 * 400);
}
