use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn the_done_line_gives_the_figures_and_the_2xx_answers_only_count_as_ok() {
    let out = "Running 1s test @ http://127.0.0.1:1/api/v1/messages\n  1 threads and 64 connections\n\
               tenantry-wrk requests=1200 duration_us=2000000 non2xx=200 socket_errors=3 p50_us=4100 p99_us=12900\n";
    let run = parse(out).unwrap();
    assert_eq!(run.ok, 1000);
    assert_eq!(run.non_2xx, 200);
    assert_eq!(run.socket_errors, 3);
    assert!((run.seconds - 2.0).abs() < 1e-9);
    assert!((run.ok_per_s - 500.0).abs() < 1e-9);
    assert_eq!((run.latency_p50_us, run.latency_p99_us), (4100, 12900));
}

#[test]
fn output_without_the_done_line_or_a_field_is_an_error_that_names_it() {
    let e = parse("Requests/sec: 9000.00\n").unwrap_err();
    assert!(e.contains("no `tenantry-wrk` line"), "{e}");
    let e = parse("tenantry-wrk requests=10 duration_us=1000000 socket_errors=0 p50_us=1 p99_us=2")
        .unwrap_err();
    assert!(e.contains("no non2xx"), "{e}");
    let e =
        parse("tenantry-wrk requests=ten duration_us=1 non2xx=0 socket_errors=0 p50_us=1 p99_us=2")
            .unwrap_err();
    assert!(e.contains("requests"), "{e}");
}

/// One request as the responder saw it: its head and body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Answers every request on a keep-alive connection with `status` and records it.
fn respond(stream: TcpStream, status: &str, seen: &Seen) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut head = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock()
            .unwrap()
            .push((head, String::from_utf8_lossy(&body).into_owned()));
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n{{}}");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A loopback server answering `status` to everything, and what it saw.
fn responder(status: &'static str) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let recorded = recorded.clone();
            std::thread::spawn(move || respond(stream, status, &recorded));
        }
    });
    (addr, seen)
}

/// One second of `wrk` with one tenant's token.
fn one_second(
    wrk: &Path,
    dir: &Path,
    addr: SocketAddr,
    connections: usize,
) -> Result<WrkRun, String> {
    let tokens = ["t".to_owned()];
    run(wrk, dir, addr, &tokens, connections, Duration::from_secs(1))
}

fn wrk_or_fail() -> PathBuf {
    binary().expect("wrk is not on PATH: scripts/test.sh installs Debian's wrk")
}

#[test]
fn wrk_posts_a_new_message_per_request_with_its_tenants_token() {
    let wrk = wrk_or_fail();
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = responder("200 OK");
    let tokens = vec!["token-zero".to_owned(), "token-one".to_owned()];
    let run = run(&wrk, dir.path(), addr, &tokens, 4, Duration::from_secs(1)).unwrap();

    let seen = seen.lock().unwrap();
    assert!(run.ok > 0 && run.non_2xx == 0, "{run:?}");
    let run = acked(run).unwrap();
    // wrk counts the answers it read by the end; the server may have read a few more.
    assert!(seen.len() as u64 >= run.ok, "{} seen, {run:?}", seen.len());
    assert!(run.version.starts_with("wrk"), "{}", run.version);
    assert_eq!((run.connections, run.threads), (4, 1));
    let mut ids = HashSet::new();
    for (head, body) in seen.iter() {
        assert!(
            head.starts_with("POST /api/v1/messages HTTP/1.1\r\n"),
            "{head}"
        );
        let message: serde_json::Value = serde_json::from_str(body).unwrap();
        let id = message["message_id"].as_str().unwrap().to_owned();
        let session = message["session"].as_str().unwrap();
        assert!(id.starts_with(&format!("{session}-")), "{id} of {session}");
        // The session's client picks the tenant: its token and X-Tenant-ID agree.
        let client: usize = session.rsplit("-c").next().unwrap().parse().unwrap();
        let tenant = client % tokens.len();
        assert!(
            head.contains(&format!("Authorization: Bearer {}\r\n", tokens[tenant])),
            "{head}"
        );
        assert!(
            head.contains(&format!("X-Tenant-ID: {}\r\n", tenant_name(tenant))),
            "{head}"
        );
        assert!(ids.insert(id.clone()), "message id {id} sent twice");
    }
}

#[test]
fn refused_answers_are_counted_apart_from_the_acks() {
    let wrk = wrk_or_fail();
    let dir = tempfile::tempdir().unwrap();
    let (addr, _seen) = responder("429 Too Many Requests");
    let run = one_second(&wrk, dir.path(), addr, 2).unwrap();
    assert_eq!(run.ok, 0, "{run:?}");
    assert!(run.non_2xx > 0, "{run:?}");
    // Such a run is no anchor: the bench refuses it rather than report 0 req/s.
    let e = acked(run).unwrap_err();
    assert!(e.starts_with("wrk got no 2xx answer"), "{e}");
}

#[test]
fn a_failing_wrk_is_an_error_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("wrk");
    std::fs::write(&fake, "#!/bin/sh\necho 'unable to connect' >&2\nexit 1\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e = one_second(&fake, dir.path(), addr, 1).unwrap_err();
    assert!(
        e.contains("exited with") && e.contains("unable to connect"),
        "{e}"
    );
}
