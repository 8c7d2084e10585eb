//! Anchored chain heads with the real binary: `serve` makes the chain head key and signs heads,
//! `export` carries them (and signs its tail), `keys export-pubkey` hands out the public key, and
//! `verify --pubkey` catches what the hash chain alone cannot: a wholly rewritten chain with a
//! recomputed manifest, and a cut-off tail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tenantry::audit::record::{decode_base64, encode_base64, hash_hex, parse_hash};
use tenantry::events::codec::chain_hash;

use crate::support::{acme_config, dir_with_flows, Serve};

fn tenantry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(dir)
        .env_remove("TENANTRY_MASTER_KEY")
        .env_remove("TENANTRY_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A data dir written by a real server that signed heads every 3 events, with 6 messages
/// (24 events) of tenant acme, stopped; its export `audit.jsonl` and public key `key.pub`.
struct Exported {
    dir: tempfile::TempDir,
    lines: Vec<Value>,
}

fn exported() -> Exported {
    exported_with("seal = true")
}

/// [`exported`] with `[log]` set to `log` (`seal = false` for a log `migrate` may copy).
fn exported_with(log: &str) -> Exported {
    let dir = dir_with_flows();
    let mut serve = Serve::config(&acme_config(Path::new("./data")))
        .section(
            "audit",
            "head_sign_every_events = 3\nhead_sign_interval = \"1s\"",
        )
        .section("log", log)
        .in_dir(dir.path())
        .start();
    let mut session = Value::Null;
    for i in 0..6 {
        let mut message = json!({"team": "support", "channel": "slack", "user": "ada",
                                 "text": format!("pay {i}00 to Bob"),
                                 "message_id": format!("pay-{i}00")});
        if !session.is_null() {
            message["session"] = session.clone();
        }
        session = serve.post_as("acme", &message).ok()["session"].clone();
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    assert!(
        serve
            .started
            .iter()
            .any(|l| l.contains("generated the chain head signing key global/chain_head_key")),
        "serve says it made the key: {:#?}",
        serve.started
    );
    assert!(serve.stop().success());

    let out = tenantry(
        dir.path(),
        &["export", "--tenant", "acme", "--out", "audit.jsonl"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = tenantry(dir.path(), &["keys", "export-pubkey", "--out", "key.pub"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(dir.path().join("key.pub")).unwrap();
    assert_eq!(key.len(), 65, "64 hex digits and a newline: {key:?}");
    let lines = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Exported { dir, lines }
}

impl Exported {
    fn manifest(&self) -> &Value {
        self.lines.last().unwrap()
    }

    fn events(&self) -> Vec<Value> {
        self.lines[..self.lines.len() - 1].to_vec()
    }

    /// Writes `events` and `manifest` as `name` and verifies it (with `args` added).
    fn verify(&self, name: &str, events: &[Value], manifest: &Value, args: &[&str]) -> Output {
        let mut body = String::new();
        for line in events.iter().chain([manifest]) {
            body.push_str(&serde_json::to_string(line).unwrap());
            body.push('\n');
        }
        std::fs::write(self.dir.path().join(name), body).unwrap();
        let mut all = vec!["verify", name];
        all.extend_from_slice(args);
        tenantry(self.dir.path(), &all)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The manifest of `events` as an attacker recomputes it, with `heads` kept as given.
fn recomputed(manifest: &Value, events: &[Value], heads: Value) -> Value {
    let mut m = manifest.clone();
    m["count"] = json!(events.len());
    m["last_tenant_seq"] = events.last().unwrap()["tenant_seq"].clone();
    m["head_hash"] = events.last().unwrap()["hash"].clone();
    match heads {
        Value::Null => {
            m.as_object_mut().unwrap().remove("heads");
        }
        heads => m["heads"] = heads,
    }
    m
}

/// Every event rewritten: message id "pay-500" becomes "pay-900" in the body and its data (the
/// text itself is sealed in the body), and every hash recomputed from there, as someone
/// holding the log (but not the key) could.
fn rewritten(events: &[Value]) -> Vec<Value> {
    let mut prev = parse_hash(events[0]["prev_hash"].as_str().unwrap()).unwrap();
    let mut changed = false;
    let out: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let mut body = decode_base64(e["body"].as_str().unwrap()).unwrap();
            if let Some(i) = body.windows(7).position(|w| w == b"pay-500") {
                body[i + 4] = b'9';
                let data = e["data"]["message_id"]
                    .as_str()
                    .unwrap()
                    .replace("pay-500", "pay-900");
                e["data"]["message_id"] = json!(data);
                changed = true;
            }
            let hash = chain_hash(&prev, &body);
            e["body"] = json!(encode_base64(&body));
            e["prev_hash"] = json!(hash_hex(&prev));
            e["hash"] = json!(hash_hex(&hash));
            prev = hash;
            e
        })
        .collect();
    assert!(changed, "the rewrite changed a message");
    out
}

#[test]
fn verify_with_the_public_key_catches_a_rewritten_chain_and_a_cut_tail() {
    let x = exported();
    let manifest = x.manifest().clone();
    let events = x.events();
    let heads = manifest["heads"].as_array().unwrap().clone();
    let last = events.last().unwrap()["tenant_seq"].as_u64().unwrap();
    assert!(
        heads.len() >= 2,
        "serve signed heads as it went: {manifest}"
    );
    assert_eq!(heads.last().unwrap()["tenant_seq"].as_u64(), Some(last));

    // The export as written verifies, with and without the key.
    let out = tenantry(
        x.dir.path(),
        &["verify", "audit.jsonl", "--pubkey", "key.pub"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("signed heads verified with the public key"));
    let out = tenantry(x.dir.path(), &["verify", "audit.jsonl"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not checked (give --pubkey)"),
        "{}",
        text(&out)
    );

    // A wholly rewritten chain with a recomputed manifest passes the chain alone ...
    let forged = rewritten(&events);
    let kept = recomputed(&manifest, &forged, json!(heads));
    let out = x.verify("forged.jsonl", &forged, &kept, &[]);
    assert!(
        out.status.success(),
        "the chain alone cannot tell: {}",
        text(&out)
    );
    // ... but not the signed heads: with them kept, or dropped.
    let out = x.verify("forged.jsonl", &forged, &kept, &["--pubkey", "key.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("head mismatch"), "{}", text(&out));
    let dropped = recomputed(&manifest, &forged, Value::Null);
    let out = x.verify("forged.jsonl", &forged, &dropped, &["--pubkey", "key.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unanchored"), "{}", text(&out));

    // The tail cut off (at least the last 2 events, ending where no head was signed), the
    // manifest recomputed: the chain alone passes.
    let signed: Vec<u64> = heads
        .iter()
        .map(|h| h["tenant_seq"].as_u64().unwrap())
        .collect();
    let keep = (1..events.len() - 1)
        .rev()
        .find(|&n| !signed.contains(&events[n - 1]["tenant_seq"].as_u64().unwrap()))
        .unwrap();
    let cut = &events[..keep];
    let kept = recomputed(&manifest, cut, json!(heads));
    let out = x.verify("cut.jsonl", cut, &kept, &[]);
    assert!(
        out.status.success(),
        "the chain alone cannot tell: {}",
        text(&out)
    );
    let out = x.verify("cut.jsonl", cut, &kept, &["--pubkey", "key.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("truncated tail") && said.contains(&format!("tenant_seq {last}")),
        "{said}"
    );
    // The heads past the cut dropped too: nothing covers the new end.
    let cut_seq = cut.last().unwrap()["tenant_seq"].as_u64().unwrap();
    let before: Vec<Value> = heads
        .iter()
        .filter(|h| h["tenant_seq"].as_u64().unwrap() <= cut_seq)
        .cloned()
        .collect();
    assert!(
        before.last().unwrap()["tenant_seq"].as_u64() < Some(cut_seq),
        "the cut is not at a signed head"
    );
    let out = x.verify(
        "cut.jsonl",
        cut,
        &recomputed(&manifest, cut, json!(before)),
        &["--pubkey", "key.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unanchored"), "{}", text(&out));
}

#[test]
fn a_wrong_or_unreadable_public_key_fails_clearly() {
    let x = exported();
    // Another Ed25519 key (a valid point: the public key of another seed).
    let other = tenantry::audit::anchor::HeadSigner::from_seed_hex(&[b'1'; 64]).unwrap();
    let other_hex = tenantry::audit::anchor::public_key_hex(&other.public_key());
    std::fs::write(x.path("other.pub"), format!("{other_hex}\n")).unwrap();
    let out = tenantry(
        x.dir.path(),
        &["verify", "audit.jsonl", "--pubkey", "other.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bad head signature") && text(&out).contains("tenant_seq"),
        "{}",
        text(&out)
    );

    std::fs::write(x.path("bad.pub"), "not a key\n").unwrap();
    let out = tenantry(
        x.dir.path(),
        &["verify", "audit.jsonl", "--pubkey", "bad.pub"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad.pub") && text(&out).contains("keys export-pubkey"),
        "{}",
        text(&out)
    );
}

#[test]
fn migrate_carries_the_signed_heads_into_the_stream() {
    // Unsealed: migrate refuses a tenant with sealed events.
    let x = exported_with("seal = false");
    let js = crate::support::JetStream::single();
    let url = js.url(0);
    let out = tenantry(
        x.dir.path(),
        &["migrate", "--to", "jetstream", "--nats", &url],
    );
    assert!(out.status.success(), "{}", text(&out));
    let node = format!(
        "{}[nats]\nurl = \"{url}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        acme_config(Path::new("./data-node"))
    );
    std::fs::write(x.path("node.toml"), node).unwrap();
    // Exported from the stream (through the offline cache of a data dir without the key):
    // the stored heads came along, and still anchor the whole chain.
    let out = tenantry(
        x.dir.path(),
        &[
            "export",
            "--tenant",
            "acme",
            "--out",
            "js.jsonl",
            "--config",
            "node.toml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not signed"), "{}", text(&out));
    let js_lines: Vec<Value> = std::fs::read_to_string(x.path("js.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(js_lines.last().unwrap()["heads"], x.manifest()["heads"]);
    let out = tenantry(x.dir.path(), &["verify", "js.jsonl", "--pubkey", "key.pub"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A single JetStream writer (no `[cluster]`) signs heads like the sled log, and they live in
/// the stream: an export through a cache rebuilt from the stream carries them, and they verify.
#[test]
fn a_single_jetstream_writer_keeps_its_signed_heads_in_the_stream() {
    let js = crate::support::JetStream::single();
    let dir = dir_with_flows();
    let config = format!(
        "{}[nats]\nurl = \"{}\"\n",
        acme_config(Path::new("./data")),
        js.url(0)
    );
    let mut serve = Serve::config(&config)
        .section(
            "audit",
            "head_sign_every_events = 3\nhead_sign_interval = \"1s\"",
        )
        .section("log", "backend = \"jetstream\"")
        .in_dir(dir.path())
        .start();
    let mut session = Value::Null;
    for i in 0..5 {
        let mut message = json!({"team": "support", "channel": "slack", "user": "ada",
                                 "text": format!("pay {i}00 to Bob")});
        if !session.is_null() {
            message["session"] = session.clone();
        }
        session = serve.post_as("acme", &message).ok()["session"].clone();
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    assert!(serve.stop().success());
    // The offline export rebuilds its own cache (log-offline) from the stream alone.
    let out = tenantry(
        dir.path(),
        &["export", "--tenant", "acme", "--out", "js.jsonl"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("js.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let heads = lines.last().unwrap()["heads"].as_array().unwrap().clone();
    let last_seq = lines[lines.len() - 2]["tenant_seq"].as_u64().unwrap();
    let stored: Vec<&Value> = heads
        .iter()
        .filter(|h| h["tenant_seq"].as_u64().unwrap() < last_seq)
        .collect();
    assert!(
        !stored.is_empty(),
        "heads signed by serve before the last event came from the stream: {heads:?}"
    );
    let out = tenantry(dir.path(), &["keys", "export-pubkey", "--out", "key.pub"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tenantry(dir.path(), &["verify", "js.jsonl", "--pubkey", "key.pub"]);
    assert!(out.status.success(), "{}", text(&out));
}
