//! `tenantry secrets` and `tenantry token` as an operator runs them: isolation, encryption at
//! rest, key handling, and values that never leak outside `secrets get`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use tenantry::secrets::token::Claims;

use crate::support::Serve;

const CANARY: &str = "canary-secret-5be1d0f2";
const SIGNING_KEY: &str = "it-signing-key-0123456789abcdef0123";

/// The fixture's config.toml.
const CONFIG: &str = r#"
[server]
data_dir = "data"
[auth]
issuer = "it-issuer"
audience = "it-audience"
[tenants.acme]
environments = ["prod", "staging"]
[tenants.acme.teams.support]
flow = "flow.yaml"
[tenants.acme.teams.sales]
flow = "flow.yaml"
[tenants.bigcorp.teams.helpdesk]
flow = "flow.yaml"
"#;

/// A config dir with tenants acme (envs prod, staging; teams support, sales) and bigcorp
/// (team helpdesk), and a data dir that does not exist yet.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("flow.yaml"),
            "name: f\nversion: \"1\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      \
             message: hi\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
        Fixture { dir }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The binary with this fixture's config and no key from the caller's environment.
    fn tenantry(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        cmd.arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env_remove("TENANTRY_MASTER_KEY")
            .env_remove("TENANTRY_SIGNING_KEY")
            .env_remove("TENANTRY_TENANT_ID")
            .env_remove("TENANTRY_CONFIG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_cmd(self.tenantry(args), None)
    }

    fn run_cmd(&self, mut cmd: Command, stdin: Option<&str>) -> Output {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    /// `secrets set` with `value` and a newline on stdin; asserts success.
    fn set(&self, ns: &[&str], name: &str, value: &str) -> Output {
        let mut args = vec!["secrets", "set"];
        args.extend_from_slice(ns);
        args.push(name);
        let out = self.run_cmd(self.tenantry(&args), Some(&format!("{value}\n")));
        assert_ok(&out);
        out
    }

    /// `secrets get`; `None` when it fails.
    fn get(&self, ns: &[&str], name: &str) -> (Option<String>, Output) {
        let mut args = vec!["secrets", "get"];
        args.extend_from_slice(ns);
        args.push(name);
        let out = self.run(&args);
        let value = out
            .status
            .success()
            .then(|| String::from_utf8(out.stdout.clone()).unwrap());
        (value, out)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_failed_with(out: &Output, expected: &str) {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(expected),
        "stderr lacks {expected:?}:\n{stderr}"
    );
}

fn assert_no_canary(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(CANARY), "leaked: {}", text(stream));
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn secrets_round_trip_isolated_per_tenant_and_team_and_encrypted_at_rest() {
    let fx = Fixture::new();
    let acme = ["--tenant", "acme"];
    let bigcorp = ["--tenant", "bigcorp"];
    let support = ["--tenant", "acme", "--team", "support"];
    let mut outputs = Vec::new();

    outputs.push(fx.set(&acme, "api_key", &format!("{CANARY}-acme")));
    outputs.push(fx.set(&bigcorp, "api_key", &format!("{CANARY}-bigcorp")));
    outputs.push(fx.set(&support, "api_key", &format!("{CANARY}-support")));
    // A signing key must be 32 bytes or more; the canary inside it is what must never leak.
    outputs.push(fx.set(
        &["--global"],
        "signing_key",
        &format!("{CANARY}-global-signing-key"),
    ));

    for (ns, expected) in [
        (&acme[..], "acme"),
        (&bigcorp[..], "bigcorp"),
        (&support[..], "support"),
    ] {
        let (value, _) = fx.get(ns, "api_key");
        assert_eq!(value, Some(format!("{CANARY}-{expected}\n")));
    }
    // A team with nothing of its own has nothing in its namespace (no fallback for `get`).
    let (value, out) = fx.get(&["--tenant", "acme", "--team", "sales"], "api_key");
    assert_eq!(value, None);
    assert_failed_with(&out, "`api_key` not found in `acme/teams/sales/`");
    outputs.push(out);

    let list = fx.run(&["secrets", "list", "--tenant", "acme"]);
    assert_ok(&list);
    assert_eq!(text(&list.stdout), "api_key\n");
    outputs.push(list);
    let list = fx.run(&["secrets", "list", "--global"]);
    assert_eq!(text(&list.stdout), "signing_key\n");
    outputs.push(list);

    // Nothing under the data dir holds a value in clear.
    let files = files_under(&fx.data_dir());
    assert_eq!(files.len(), 5, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds a value in clear",
            file.display()
        );
    }

    let delete = fx.run(&["secrets", "delete", "--tenant", "bigcorp", "api_key"]);
    assert_ok(&delete);
    outputs.push(delete);
    let (value, out) = fx.get(&bigcorp, "api_key");
    assert_eq!(value, None);
    outputs.push(out);
    let delete = fx.run(&["secrets", "delete", "--tenant", "bigcorp", "api_key"]);
    assert_failed_with(&delete, "not found in `bigcorp/`");
    outputs.push(delete);

    for out in &outputs {
        assert_no_canary(out);
    }
}

#[test]
fn a_ciphertext_copied_to_another_tenant_fails_with_a_clear_error() {
    let fx = Fixture::new();
    fx.set(&["--tenant", "acme"], "api_key", CANARY);
    fx.set(&["--tenant", "bigcorp"], "placeholder", "x");
    let secrets = fx.data_dir().join("secrets/tenants");
    std::fs::copy(
        secrets.join("acme/api_key.sec"),
        secrets.join("bigcorp/api_key.sec"),
    )
    .unwrap();
    let (value, out) = fx.get(&["--tenant", "bigcorp"], "api_key");
    assert_eq!(value, None);
    assert_failed_with(&out, "secret `api_key` in `bigcorp/` does not decrypt");
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert_no_canary(&out);
}

#[test]
fn master_key_problems_are_clear_errors() {
    let fx = Fixture::new();
    fx.set(&["--tenant", "acme"], "k", CANARY);
    let key_file = fx.data_dir().join("master.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The wrong key (from env) is named as such.
    let mut cmd = fx.tenantry(&["secrets", "get", "--tenant", "acme", "k"]);
    cmd.env("TENANTRY_MASTER_KEY", "11".repeat(32));
    let out = fx.run_cmd(cmd, None);
    assert_failed_with(&out, "different master key");
    assert_no_canary(&out);

    // A malformed env key is refused without echoing it.
    let bad = "not-a-hex-key-but-looks-secret";
    let mut cmd = fx.tenantry(&["secrets", "list", "--tenant", "acme"]);
    cmd.env("TENANTRY_MASTER_KEY", bad);
    let out = fx.run_cmd(cmd, None);
    assert_failed_with(&out, "TENANTRY_MASTER_KEY is invalid");
    assert!(!text(&out.stderr).contains(bad), "{}", text(&out.stderr));

    // A key file others can read is refused.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (value, out) = fx.get(&["--tenant", "acme"], "k");
    assert_eq!(value, None);
    assert_failed_with(&out, "chmod 600");
    assert_no_canary(&out);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (value, _) = fx.get(&["--tenant", "acme"], "k");
    assert_eq!(value, Some(format!("{CANARY}\n")));
}

#[test]
fn namespace_flags_are_checked_by_the_cli() {
    let fx = Fixture::new();
    for args in [
        &["secrets", "get", "k"][..],
        &["secrets", "get", "--global", "--tenant", "acme", "k"],
        &["secrets", "get", "--team", "support", "k"],
        &["secrets", "get", "--global", "--team", "support", "k"],
    ] {
        let out = fx.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = fx.run(&["secrets", "get", "--tenant", "Bad.Tenant", "k"]);
    assert_failed_with(&out, "invalid tenant id");
    let out = fx.run(&["secrets", "get", "--tenant", "acme", "../etc/passwd"]);
    assert_failed_with(&out, "invalid secret name");
}

fn decode_token(token: &str, key: &[u8]) -> Claims {
    assert_eq!(decode_header(token).unwrap().alg, Algorithm::HS256);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["it-issuer"]);
    validation.set_audience(&["it-audience"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
    decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .unwrap()
        .claims
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_signs_with_the_stored_signing_key_and_prints_only_the_token() {
    let fx = Fixture::new();
    fx.set(&["--global"], "signing_key", SIGNING_KEY);
    let before = now_secs();
    let out = fx.run(&[
        "token", "--tenant", "acme", "--env", "prod", "--team", "support", "--ttl", "2h",
    ]);
    assert_ok(&out);
    let after = now_secs();
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let token = stdout.trim_end();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert!(!stdout.contains(SIGNING_KEY) && !text(&out.stderr).contains(SIGNING_KEY));

    let claims = decode_token(token, SIGNING_KEY.as_bytes());
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.env, "prod");
    assert_eq!(claims.team.as_deref(), Some("support"));
    assert_eq!(claims.iss, "it-issuer");
    assert_eq!(claims.aud, "it-audience");
    assert_eq!(claims.sub, "tenantry-cli");
    assert!((before..=after).contains(&claims.iat), "{claims:?}");
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.exp, claims.iat + 2 * 60 * 60);
}

#[test]
fn token_prefers_the_env_signing_key_and_omits_team_when_not_given() {
    let fx = Fixture::new();
    fx.set(&["--global"], "signing_key", SIGNING_KEY);
    let env_key = "env-signing-key-abcdefabcdefabcdef";
    let mut cmd = fx.tenantry(&[
        "token", "--tenant", "bigcorp", "--env", "default", "--sub", "ci-bot",
    ]);
    cmd.env("TENANTRY_SIGNING_KEY", env_key);
    let out = fx.run_cmd(cmd, None);
    assert_ok(&out);
    let claims = decode_token(text(&out.stdout).trim_end(), env_key.as_bytes());
    assert_eq!(claims.tenant, "bigcorp");
    assert_eq!(claims.env, "default");
    assert_eq!(claims.team, None);
    assert_eq!(claims.sub, "ci-bot");
    assert_eq!(claims.exp - claims.iat, 60 * 60);
    let payload = text(&out.stdout);
    assert!(!payload.contains(env_key) && !text(&out.stderr).contains(env_key));
}

#[test]
fn token_without_a_signing_key_says_how_to_set_one() {
    let fx = Fixture::new();
    let out = fx.run(&["token", "--tenant", "acme", "--env", "prod"]);
    assert_failed_with(&out, "tenantry secrets set --global signing_key");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn token_refuses_what_the_config_does_not_have() {
    let fx = Fixture::new();
    fx.set(&["--global"], "signing_key", SIGNING_KEY);
    let cases: [(&[&str], &str); 6] = [
        (
            &["--tenant", "nobody", "--env", "prod"],
            "tenant `nobody` is not configured",
        ),
        (
            &["--tenant", "acme", "--env", "dev"],
            "no environment `dev`",
        ),
        (
            &["--tenant", "acme", "--env", "prod", "--team", "helpdesk"],
            "no team `helpdesk`",
        ),
        (
            &["--tenant", "acme", "--env", "prod", "--ttl", "31days"],
            "out of range",
        ),
        (
            &["--tenant", "acme", "--env", "prod", "--ttl", "0s"],
            "out of range",
        ),
        (&["--tenant", "ACME", "--env", "prod"], "invalid tenant id"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["token"];
        all.extend_from_slice(args);
        let out = fx.run(&all);
        assert_failed_with(&out, expected);
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}

/// Runs `serve` on the fixture, which must refuse to start within a few seconds; a server that
/// starts anyway is killed and the test fails.
fn serve_refused(fx: &Fixture, key: Option<&str>) -> Output {
    // Ports of their own, should the refusal be missing and the server start.
    let mut server = Serve::config(CONFIG)
        .in_dir(fx.dir.path())
        .signing_key(key)
        .spawn();
    server
        .exit_within(std::time::Duration::from_secs(20))
        .unwrap_or_else(|| panic!("serve started with signing key {key:?} instead of refusing"))
}

#[test]
fn serve_refuses_a_short_or_missing_signing_key_and_creates_nothing() {
    let fx = Fixture::new();
    let out = serve_refused(&fx, Some("q"));
    for expected in [
        "TENANTRY_SIGNING_KEY",
        "1 bytes",
        "at least 32 bytes",
        "tenantry keygen",
    ] {
        assert_failed_with(&out, expected);
    }
    // 31 bytes is still too short; the key itself is never echoed.
    let short = "k".repeat(31);
    let out = serve_refused(&fx, Some(&short));
    assert_failed_with(&out, "31 bytes");
    assert!(!text(&out.stderr).contains(&short));

    let out = serve_refused(&fx, None);
    assert_failed_with(&out, "tenantry keygen");
    assert_failed_with(&out, "TENANTRY_SIGNING_KEY");
    assert!(
        !fx.data_dir().exists(),
        "serve without a usable key created {}",
        fx.data_dir().display()
    );

    // A short key stored as the secret is refused too, naming the secret.
    std::fs::create_dir_all(fx.data_dir()).unwrap();
    let stored_short = "s".repeat(20);
    let out = fx.run_cmd(
        fx.tenantry(&["secrets", "set", "--global", "signing_key"]),
        Some(&stored_short),
    );
    assert_failed_with(&out, "secret global/signing_key is 20 bytes");
    assert_failed_with(
        &out,
        "tenantry keygen | tenantry secrets set --global signing_key",
    );
    assert!(!text(&out.stderr).contains(&stored_short));
    let list = fx.run(&["secrets", "list", "--global"]);
    assert_ok(&list);
    assert_eq!(text(&list.stdout), "", "a refused key was stored");
    // Other secrets and other namespaces have no length rule.
    fx.set(&["--global"], "short", "x");
    fx.set(&["--tenant", "acme"], "signing_key", "x");
}

#[test]
fn token_refuses_a_short_signing_key() {
    let fx = Fixture::new();
    let mut cmd = fx.tenantry(&["token", "--tenant", "acme", "--env", "prod"]);
    cmd.env("TENANTRY_SIGNING_KEY", "change-me");
    let out = fx.run_cmd(cmd, None);
    assert_failed_with(&out, "env TENANTRY_SIGNING_KEY is 9 bytes");
    assert_failed_with(&out, "at least 32 bytes");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(!fx.data_dir().join("master.key").exists());
}

#[test]
fn keygen_prints_fresh_keys_that_token_signs_with() {
    let fx = Fixture::new();
    let first = fx.run(&["keygen"]);
    assert_ok(&first);
    let second = fx.run(&["keygen"]);
    let (first, second) = (text(&first.stdout), text(&second.stdout));
    let key = first.strip_suffix('\n').unwrap();
    assert_eq!(key.len(), 43, "{key:?}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{key:?} is not safe in an env variable"
    );
    assert_ne!(first, second, "two keys from keygen are equal");

    let mut cmd = fx.tenantry(&["token", "--tenant", "acme", "--env", "prod"]);
    cmd.env("TENANTRY_SIGNING_KEY", key);
    let out = fx.run_cmd(cmd, None);
    assert_ok(&out);
    let claims = decode_token(text(&out.stdout).trim_end(), key.as_bytes());
    assert_eq!(claims.tenant, "acme");

    // And as the stored secret, piped straight from keygen's output.
    let out = fx.run_cmd(
        fx.tenantry(&["secrets", "set", "--global", "signing_key"]),
        Some(&second),
    );
    assert_ok(&out);
    let (stored, _) = fx.get(&["--global"], "signing_key");
    assert_eq!(stored.as_deref(), Some(second.as_str()));
}

#[test]
fn token_ttl_is_capped_by_the_configured_lifetime_max() {
    let fx = Fixture::new();
    let config = std::fs::read_to_string(fx.dir.path().join("config.toml")).unwrap();
    let config = config.replace(
        "audience = \"it-audience\"\n",
        "audience = \"it-audience\"\ntoken_lifetime_max = \"2h\"\n",
    );
    std::fs::write(fx.dir.path().join("config.toml"), config).unwrap();
    fx.set(&["--global"], "signing_key", SIGNING_KEY);
    let out = fx.run(&["token", "--tenant", "acme", "--env", "prod", "--ttl", "3h"]);
    assert_failed_with(&out, "at most 2h (auth.token_lifetime_max)");
    let out = fx.run(&["token", "--tenant", "acme", "--env", "prod", "--ttl", "2h"]);
    assert_ok(&out);
}

#[test]
fn token_mints_a_connector_token_only_with_its_connector_and_team() {
    let fx = Fixture::new();
    fx.set(&["--global"], "signing_key", SIGNING_KEY);
    let base = ["token", "--tenant", "acme", "--env", "prod"];
    let with = |extra: &[&str]| fx.run(&[&base[..], extra].concat());
    let out = with(&[
        "--team",
        "support",
        "--scope",
        "connector",
        "--connector",
        "slack-1",
    ]);
    assert_ok(&out);
    let claims = decode_token(text(&out.stdout).trim_end(), SIGNING_KEY.as_bytes());
    assert_eq!(claims.scope.as_deref(), Some("connector"));
    assert_eq!(claims.connector.as_deref(), Some("slack-1"));
    assert_eq!(claims.team.as_deref(), Some("support"));

    let plain = with(&[]);
    assert_ok(&plain);
    let claims = decode_token(text(&plain.stdout).trim_end(), SIGNING_KEY.as_bytes());
    assert_eq!((claims.scope, claims.connector), (None, None));

    assert_failed_with(
        &with(&["--team", "support", "--scope", "connector"]),
        "--connector is missing",
    );
    assert_failed_with(
        &with(&["--scope", "connector", "--connector", "slack-1"]),
        "--team is missing",
    );
    assert_failed_with(
        &with(&["--team", "support", "--connector", "slack-1"]),
        "only for --scope connector",
    );
    assert_failed_with(
        &with(&["--scope", "admin connector", "--connector", "slack-1"]),
        "connector scope stands alone",
    );
    let bad_id = with(&["--scope", "connector", "--connector", "Bad.Id"]);
    assert!(!bad_id.status.success());
    assert!(
        text(&bad_id.stderr).contains("invalid connector id"),
        "{}",
        text(&bad_id.stderr)
    );
}
