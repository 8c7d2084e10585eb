//! `[auth] jwks` and HS256 keys by `kid` over real HTTP with the real binary, every token minted
//! by an outside JWT library: PyJWT with `cryptography` from `target/console-venv`
//! (tests/jwks/mint.py; `scripts/test.sh` installs both). A missing venv fails the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tenantry::edge::auth::jwks::JWKS_CHECK_INTERVAL;

use crate::support::{claims, dir_with_flows, Serve, ServeProcess, SIGNING_KEY};

/// The venv with PyJWT and cryptography, under the workspace (made by `scripts/test.sh`).
const VENV_PYTHON: &str = "target/console-venv/bin/python";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs tests/jwks/mint.py: writes `dir/jwks.json` and `dir/jwks_rotated.json`; the tokens by
/// case name, with claims for acme/prod and the HS256 keys `hs` (kid → key, "" for no kid).
fn mint(dir: &Path, hs: &Value) -> Value {
    let python = root().join(VENV_PYTHON);
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh makes it (python3 -m venv target/console-venv && \
         target/console-venv/bin/python -m pip install PyJWT==<pinned> cryptography==<pinned>)",
        python.display()
    );
    let out = Command::new(python)
        .arg(root().join("tests/jwks/mint.py"))
        .arg(dir)
        .arg(claims("acme").to_string())
        .arg(hs.to_string())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mint.py failed (is PyJWT with cryptography installed in the venv?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// GET /api/v1/sessions as acme with `token`.
fn sessions(server: &ServeProcess, token: &Value) -> crate::support::Reply {
    let bearer = format!("Bearer {}", token.as_str().unwrap());
    server.get(
        "/api/v1/sessions",
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
    )
}

/// Asserts a 401 `invalid_token` whose message contains `needle`.
#[track_caller]
fn refused(reply: &crate::support::Reply, needle: &str) {
    assert_eq!(reply.error(401), "invalid_token", "{}", reply.body);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// Replaces `to` by `from` atomically (as a deployment tool would).
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Polls until `check` holds, for a few reload intervals.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + JWKS_CHECK_INTERVAL * 5 + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {:?}", deadline.elapsed());
}

#[test]
fn jwks_tokens_of_each_algorithm_and_the_refusals() {
    let dir = dir_with_flows();
    let tokens = mint(dir.path(), &json!({"": SIGNING_KEY}));
    let server = Serve::shipped()
        .section("auth", "jwks = \"jwks.json\"")
        .in_dir(dir.path())
        .start();

    for case in ["rs256", "es256", "eddsa", "hs256"] {
        let reply = sessions(&server, &tokens[case]);
        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
    }
    refused(
        &sessions(&server, &tokens["unknown_kid"]),
        "unknown key id (kid) \"nope-9\"",
    );
    refused(
        &sessions(&server, &tokens["rs256_with_ec_kid"]),
        "algorithm not allowed",
    );
    refused(
        &sessions(&server, &tokens["es256_with_ed_kid"]),
        "algorithm not allowed",
    );
    // HS256 keyed with the RSA public key's PEM: naming the RSA key's kid, and with no kid
    // (then the default HS256 key checks it).
    refused(
        &sessions(&server, &tokens["hs256_rsa_pem_kid"]),
        "algorithm not allowed",
    );
    refused(
        &sessions(&server, &tokens["hs256_rsa_pem"]),
        "bad signature",
    );
    refused(
        &sessions(&server, &tokens["none_rsa_kid"]),
        "malformed token",
    );
    refused(
        &sessions(&server, &tokens["rs256_wrong_issuer"]),
        "wrong issuer",
    );
    refused(&sessions(&server, &tokens["rs256_expired"]), "expired");
    refused(&sessions(&server, &tokens["rs256_bad_env"]), "invalid env");
    // A JWKS token of another tenant does not open acme.
    let other = sessions(&server, &tokens["rs256_other_tenant"]);
    assert_eq!(other.error(403), "tenant_mismatch", "{}", other.body);

    // The file replaced at runtime: rsa-2 is accepted and rsa-1 refused after a reload.
    replace(
        &dir.path().join("jwks_rotated.json"),
        &dir.path().join("jwks.json"),
    );
    eventually("the new key accepted", || {
        sessions(&server, &tokens["rs256_new"]).status == 200
    });
    refused(
        &sessions(&server, &tokens["rs256"]),
        "unknown key id (kid) \"rsa-1\"",
    );
    assert_eq!(sessions(&server, &tokens["es256"]).status, 200);

    // A replacement that does not parse keeps the keys, warned about once.
    std::fs::write(
        dir.path().join("jwks.tmp"),
        b"{\"keys\": [{\"kty\": \"RSA\"}]}",
    )
    .unwrap();
    std::fs::rename(dir.path().join("jwks.tmp"), dir.path().join("jwks.json")).unwrap();
    std::thread::sleep(JWKS_CHECK_INTERVAL + Duration::from_millis(500));
    assert_eq!(sessions(&server, &tokens["rs256_new"]).status, 200);
    server.wait_for_line("JWKS file changed but cannot be used");
}

#[test]
fn a_bad_jwks_file_stops_the_load_naming_the_key() {
    let dir = dir_with_flows();
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "RS256",
             "x": "Z2_WIxfskM4Kysw8I2L3URXxbp9-U2A9WtQtep_h7h0",
             "y": "50iRmZslRXwgrdJ_zQzJFpT3DL2Ra9RvWJAesfA-wtE"}]}"#,
    )
    .unwrap();
    Serve::shipped()
        .section("auth", "jwks = \"jwks.json\"")
        .in_dir(dir.path())
        .write_config();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["check-config", "--config"])
        .arg(dir.path().join("config.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for needle in [
        "auth.jwks",
        "jwks.json",
        "keys[0] (kid \"ec-1\")",
        "implies ES256",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

/// `tenantry` with the config of `dir` and no key from the caller's environment; asserts
/// success.
fn tenantry(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let out = tenantry_output(dir, args, stdin);
    assert!(
        out.status.success(),
        "tenantry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tenantry` with the config of `dir` and no key from the caller's environment.
fn tenantry_output(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(args)
        .env_remove("TENANTRY_MASTER_KEY")
        .env_remove("TENANTRY_SIGNING_KEY")
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hs256_keys_rotate_by_kid() {
    const OLD: &str = "old-hs256-key-0123456789abcdef0123456789";
    const NEW: &str = "new-hs256-key-0123456789abcdef0123456789";
    let dir = dir_with_flows();
    let serve = Serve::shipped().in_dir(dir.path());
    serve.write_config();
    tenantry(
        dir.path(),
        &["secrets", "set", "--global", "signing_key.2026-old"],
        OLD,
    );
    tenantry(
        dir.path(),
        &["secrets", "set", "--global", "signing_key.2026-new"],
        NEW,
    );
    let tokens = mint(
        dir.path(),
        &json!({"": SIGNING_KEY, "2026-old": OLD, "2026-new": NEW}),
    );
    let server = serve.start();

    // Old and new kid valid together, and the default key without kid.
    for case in ["hs256", "hs256_2026-old", "hs256_2026-new"] {
        let reply = sessions(&server, &tokens[case]);
        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
    }
    // `tenantry token --kid` mints with the kid's key.
    let out = tenantry(
        dir.path(),
        &[
            "token", "--tenant", "acme", "--env", "prod", "--kid", "2026-new",
        ],
        "",
    );
    let minted = String::from_utf8(out.stdout).unwrap();
    assert_eq!(sessions(&server, &json!(minted.trim())).status, 200);

    // A kid checks with its key only: the old key under the new kid, or a kid-less token
    // signed by a kid's key, is a bad signature.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("2026-new".to_owned()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims("acme"),
        &jsonwebtoken::EncodingKey::from_secret(OLD.as_bytes()),
    )
    .unwrap();
    refused(&sessions(&server, &json!(forged)), "bad signature");
    let no_kid = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("acme"),
        &jsonwebtoken::EncodingKey::from_secret(NEW.as_bytes()),
    )
    .unwrap();
    refused(&sessions(&server, &json!(no_kid)), "bad signature");
    refused(
        &sessions(
            &server,
            &json!(jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some("2025-gone".to_owned()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                },
                &claims("acme"),
                &jsonwebtoken::EncodingKey::from_secret(OLD.as_bytes()),
            )
            .unwrap()),
        ),
        "unknown key id (kid) \"2025-gone\"",
    );
}

#[test]
fn short_kid_keys_and_a_kid_in_both_places_are_refused() {
    let dir = dir_with_flows();
    mint(dir.path(), &json!({}));
    let serve = Serve::shipped()
        .section("auth", "jwks = \"jwks.json\"")
        .in_dir(dir.path());
    serve.write_config();
    let short = tenantry_output(
        dir.path(),
        &["secrets", "set", "--global", "signing_key.2026-short"],
        "too-short",
    );
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success());
    assert!(
        stderr.contains("secret global/signing_key.2026-short is 9 bytes"),
        "{stderr}"
    );
    let missing = tenantry_output(
        dir.path(),
        &[
            "token",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--kid",
            "2026-none",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("secrets set --global signing_key.2026-none"),
        "{stderr}"
    );
    // "ec-1" is a key of the JWKS file too: the server refuses to start.
    tenantry(
        dir.path(),
        &["secrets", "set", "--global", "signing_key.ec-1"],
        "an-hs256-key-0123456789abcdef0123456789",
    );
    let out = serve.spawn().exit_within(Duration::from_secs(30)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("kid \"ec-1\" names both an HS256 key"),
        "{stderr}"
    );
}
