//! Unit tests of the secret store, the master key, token claims and minting.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::consts::SECRET_VALUE_BYTES_MAX;
use super::error::SecretError;
use super::key::{KeySources, MASTER_KEY_FILE};
use super::name::{Namespace, SecretName};
use super::store::SecretStore;
use super::token::{claims_for, mint, Claims, TokenRequest};
use super::value::SecretValue;
use crate::cli::secrets::{run_secrets, NameArgs, NamespaceArgs, SecretsAction, SecretsArgs};
use crate::config::security::DEFAULT_TOKEN_LIFETIME_MAX as TOKEN_TTL_MAX;
use crate::config::{Config, LoadOptions};
use crate::tenancy::fixtures::team;
use crate::tenancy::fixtures::tenant;
use crate::tenancy::{EnvId, TenantCtx};

const CANARY: &[u8] = b"canary-7f3a9c1e-do-not-leak";

fn name(raw: &str) -> SecretName {
    SecretName::parse(raw).unwrap()
}

fn tenant_ns(id: &str) -> Namespace {
    Namespace::Tenant(tenant(id))
}

fn team_ns(tenant_id: &str, team_id: &str) -> Namespace {
    Namespace::Team(tenant(tenant_id), team(team_id))
}

fn ctx(tenant_id: &str, team_id: Option<&str>) -> TenantCtx {
    TenantCtx::new(tenant(tenant_id), EnvId::default_env(), team_id.map(team))
}

/// A store whose master key lives in `dir/master.key`.
fn file_keyed(dir: &Path) -> SecretStore {
    SecretStore::open_with(dir, KeySources::default()).unwrap()
}

/// A store whose master key is 32 bytes of `byte`, as if from env `TENANTRY_MASTER_KEY`.
fn env_keyed(dir: &Path, byte: u8) -> SecretStore {
    SecretStore::open_with(dir, hex_key_sources(byte)).unwrap()
}

fn hex_key_sources(byte: u8) -> KeySources {
    KeySources {
        master_key_hex: Some(SecretValue::new(
            format!("{byte:02x}").repeat(32).into_bytes(),
        )),
        signing_key: None,
    }
}

fn value(store: &SecretStore, ns: &Namespace, secret: &str) -> Option<Vec<u8>> {
    store
        .get(ns, &name(secret))
        .unwrap()
        .map(|v| v.expose().to_vec())
}

fn looked_up(store: &SecretStore, ctx: &TenantCtx, secret: &str) -> Option<Vec<u8>> {
    store
        .lookup(ctx, &name(secret))
        .unwrap()
        .map(|v| v.expose().to_vec())
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn secret_file(dir: &Path, relative: &str) -> PathBuf {
    dir.join("secrets").join(relative)
}

// ---- names and namespaces -------------------------------------------------------------------

#[test]
fn secret_names_follow_the_rule() {
    for ok in [
        "a",
        "0",
        "signing_key",
        "api.key-2",
        &"a".repeat(128),
        "a.b.c",
    ] {
        assert!(SecretName::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".hidden",
        "-x",
        "_x",
        "a..b",
        "..",
        "Upper",
        "a/b",
        "a b",
        "a\0b",
        "ä",
        &"a".repeat(129),
    ] {
        assert!(SecretName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn namespaces_display_as_design_writes_them() {
    assert_eq!(Namespace::Global.to_string(), "global/");
    assert_eq!(tenant_ns("acme").to_string(), "acme/");
    assert_eq!(
        team_ns("acme", "support").to_string(),
        "acme/teams/support/"
    );
}

#[test]
fn a_tenant_named_global_does_not_share_the_platform_directory() {
    let root = Path::new("/r");
    let global = Namespace::Global.dir(root);
    for ns in [
        tenant_ns("global"),
        team_ns("global", "global"),
        tenant_ns("teams"),
    ] {
        assert!(!ns.dir(root).starts_with(&global), "{ns}");
    }
    assert_ne!(
        tenant_ns("teams").dir(root),
        team_ns("acme", "teams").dir(root)
    );
}

// ---- values never print --------------------------------------------------------------------

#[test]
fn secret_values_are_redacted_in_debug_and_display() {
    let v = SecretValue::new(CANARY.to_vec());
    assert_eq!(format!("{v:?}"), "[redacted]");
    assert_eq!(format!("{v}"), "[redacted]");
    let sources = KeySources {
        master_key_hex: Some(SecretValue::new(CANARY.to_vec())),
        signing_key: Some(SecretValue::new(CANARY.to_vec())),
    };
    let printed = format!("{sources:?}");
    assert!(!contains(printed.as_bytes(), CANARY), "{printed}");
}

// ---- round trip ----------------------------------------------------------------------------

#[test]
fn set_get_list_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    let ns = team_ns("acme", "support");
    assert_eq!(value(&store, &ns, "api_key"), None);
    assert!(store.list(&ns).unwrap().is_empty());

    store.set(&ns, &name("api_key"), b"one").unwrap();
    store.set(&ns, &name("api_key"), b"two").unwrap();
    store.set(&ns, &name("b.token"), b"three").unwrap();
    assert_eq!(value(&store, &ns, "api_key").as_deref(), Some(&b"two"[..]));
    assert_eq!(
        store.list(&ns).unwrap(),
        vec![name("api_key"), name("b.token")]
    );

    assert!(store.delete(&ns, &name("api_key")).unwrap());
    assert!(!store.delete(&ns, &name("api_key")).unwrap());
    assert_eq!(value(&store, &ns, "api_key"), None);
    assert_eq!(store.list(&ns).unwrap(), vec![name("b.token")]);

    // A second store over the same dir (a later process) reads the same key file and values.
    let again = file_keyed(dir.path());
    assert_eq!(
        value(&again, &ns, "b.token").as_deref(),
        Some(&b"three"[..])
    );
}

#[test]
fn list_skips_what_is_not_a_secret_and_writes_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store.set(&tenant_ns("acme"), &name("a"), b"1").unwrap();
    store
        .set(&team_ns("acme", "support"), &name("b"), b"2")
        .unwrap();
    let tenant_dir = secret_file(dir.path(), "tenants/acme");
    std::fs::write(tenant_dir.join(".a.sec.tmp-123"), b"x").unwrap();
    std::fs::write(tenant_dir.join("README"), b"x").unwrap();
    std::fs::write(tenant_dir.join("Bad.sec"), b"x").unwrap();
    assert_eq!(store.list(&tenant_ns("acme")).unwrap(), vec![name("a")]);

    let leftovers: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-") && !p.ends_with(".a.sec.tmp-123"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn values_must_be_one_byte_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    let ns = Namespace::Global;
    let err = store.set(&ns, &name("x"), b"").unwrap_err();
    assert!(
        matches!(err, SecretError::ValueSize { bytes: 0, .. }),
        "{err}"
    );
    let big = vec![7u8; SECRET_VALUE_BYTES_MAX + 1];
    let err = store.set(&ns, &name("x"), &big).unwrap_err();
    assert!(matches!(err, SecretError::ValueSize { .. }), "{err}");
    store
        .set(&ns, &name("x"), &big[..SECRET_VALUE_BYTES_MAX])
        .unwrap();
    assert_eq!(
        value(&store, &ns, "x").map(|v| v.len()),
        Some(SECRET_VALUE_BYTES_MAX)
    );
}

// ---- isolation -----------------------------------------------------------------------------

#[test]
fn tenants_with_the_same_secret_names_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store
        .set(&tenant_ns("acme"), &name("api_key"), b"acme-key")
        .unwrap();
    store
        .set(&tenant_ns("bigcorp"), &name("api_key"), b"bigcorp-key")
        .unwrap();
    store
        .set(
            &team_ns("bigcorp", "support"),
            &name("team_key"),
            b"bigcorp-team",
        )
        .unwrap();

    assert_eq!(
        looked_up(&store, &ctx("acme", None), "api_key").as_deref(),
        Some(&b"acme-key"[..])
    );
    assert_eq!(
        looked_up(&store, &ctx("bigcorp", None), "api_key").as_deref(),
        Some(&b"bigcorp-key"[..])
    );
    // acme's team with the same team id as bigcorp's does not reach bigcorp's team secrets.
    assert_eq!(
        looked_up(&store, &ctx("acme", Some("support")), "team_key"),
        None
    );
    // A tenant that has nothing gets nothing, whoever else has the name.
    assert_eq!(looked_up(&store, &ctx("other", None), "api_key"), None);
}

#[test]
fn lookup_tries_the_team_then_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store
        .set(&tenant_ns("acme"), &name("k"), b"tenant")
        .unwrap();
    store
        .set(&team_ns("acme", "support"), &name("k"), b"support")
        .unwrap();
    store
        .set(&tenant_ns("acme"), &name("only_tenant"), b"shared")
        .unwrap();

    let support = ctx("acme", Some("support"));
    let sales = ctx("acme", Some("sales"));
    let tenant_wide = ctx("acme", None);
    assert_eq!(
        looked_up(&store, &support, "k").as_deref(),
        Some(&b"support"[..])
    );
    assert_eq!(
        looked_up(&store, &sales, "k").as_deref(),
        Some(&b"tenant"[..])
    );
    assert_eq!(
        looked_up(&store, &tenant_wide, "k").as_deref(),
        Some(&b"tenant"[..])
    );
    assert_eq!(
        looked_up(&store, &support, "only_tenant").as_deref(),
        Some(&b"shared"[..])
    );
    // A tenant-wide context never reads a team's namespace.
    store
        .set(&team_ns("acme", "support"), &name("team_only"), b"t")
        .unwrap();
    assert_eq!(looked_up(&store, &tenant_wide, "team_only"), None);
}

#[test]
fn lookup_never_reads_global() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store
        .set(&Namespace::Global, &name("signing_key"), b"platform")
        .unwrap();
    store
        .set(&Namespace::Global, &name("db"), b"platform-db")
        .unwrap();
    for c in [
        ctx("acme", None),
        ctx("acme", Some("support")),
        ctx("global", None),
    ] {
        assert_eq!(looked_up(&store, &c, "signing_key"), None, "{c}");
        assert_eq!(looked_up(&store, &c, "db"), None, "{c}");
    }
}

// ---- at rest ------------------------------------------------------------------------------

#[test]
fn no_file_under_the_data_dir_contains_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store.set(&Namespace::Global, &name("g"), CANARY).unwrap();
    store.set(&tenant_ns("acme"), &name("t"), CANARY).unwrap();
    store
        .set(&team_ns("acme", "support"), &name("m"), CANARY)
        .unwrap();
    let files = files_under(dir.path());
    assert_eq!(files.len(), 4, "{files:?}"); // master.key and three secrets
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, CANARY),
            "{} holds the plaintext",
            file.display()
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn each_write_uses_a_fresh_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    let path = secret_file(dir.path(), "global/x.sec");
    store.set(&Namespace::Global, &name("x"), CANARY).unwrap();
    let first = std::fs::read(&path).unwrap();
    store.set(&Namespace::Global, &name("x"), CANARY).unwrap();
    let second = std::fs::read(&path).unwrap();
    assert_eq!(first.len(), second.len());
    assert_ne!(first, second);
}

#[test]
fn a_ciphertext_copied_elsewhere_does_not_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    store
        .set(&tenant_ns("acme"), &name("api_key"), CANARY)
        .unwrap();
    store
        .set(&Namespace::Global, &name("signing_key"), CANARY)
        .unwrap();
    // Create the target namespaces so the copies land in existing directories.
    store
        .set(&tenant_ns("bigcorp"), &name("other"), b"x")
        .unwrap();
    store
        .set(&tenant_ns("global"), &name("other"), b"x")
        .unwrap();
    store
        .set(&team_ns("acme", "support"), &name("other"), b"x")
        .unwrap();

    let source = secret_file(dir.path(), "tenants/acme/api_key.sec");
    let cases = [
        (
            "tenants/bigcorp/api_key.sec",
            tenant_ns("bigcorp"),
            "api_key",
        ),
        (
            "tenants/acme/teams/support/api_key.sec",
            team_ns("acme", "support"),
            "api_key",
        ),
        ("tenants/acme/renamed.sec", tenant_ns("acme"), "renamed"),
        ("global/api_key.sec", Namespace::Global, "api_key"),
    ];
    for (target, ns, secret) in cases {
        std::fs::copy(&source, secret_file(dir.path(), target)).unwrap();
        let err = store.get(&ns, &name(secret)).unwrap_err();
        assert!(
            matches!(err, SecretError::Undecryptable { .. }),
            "{target}: {err}"
        );
        let message = format!("{err} {err:?}");
        assert!(message.contains("does not decrypt"), "{message}");
        assert!(message.contains(&ns.to_string()), "{message}");
        assert!(!contains(message.as_bytes(), CANARY), "{message}");
    }
    // The platform signing key copied to a tenant called `global` is refused too.
    std::fs::copy(
        secret_file(dir.path(), "global/signing_key.sec"),
        secret_file(dir.path(), "tenants/global/signing_key.sec"),
    )
    .unwrap();
    let err = store
        .get(&tenant_ns("global"), &name("signing_key"))
        .unwrap_err();
    assert!(matches!(err, SecretError::Undecryptable { .. }), "{err}");
    // A lookup hitting a copied file fails loudly rather than falling back or leaking.
    let err = store
        .lookup(&ctx("bigcorp", None), &name("api_key"))
        .unwrap_err();
    assert!(matches!(err, SecretError::Undecryptable { .. }), "{err}");
}

#[test]
fn tampered_truncated_and_foreign_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    let ns = tenant_ns("acme");
    store.set(&ns, &name("k"), CANARY).unwrap();
    let path = secret_file(dir.path(), "tenants/acme/k.sec");
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let err = store.get(&ns, &name("k")).unwrap_err();
    assert!(matches!(err, SecretError::Undecryptable { .. }), "{err}");

    std::fs::write(&path, &good[..20]).unwrap();
    let err = store.get(&ns, &name("k")).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err}");

    std::fs::write(&path, vec![b'x'; good.len()]).unwrap();
    let err = store.get(&ns, &name("k")).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err}");

    let mut future = good.clone();
    future[4] = 99;
    std::fs::write(&path, &future).unwrap();
    let err = store.get(&ns, &name("k")).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err}");
}

// ---- master key ---------------------------------------------------------------------------

#[test]
fn a_wrong_master_key_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    env_keyed(dir.path(), 1)
        .set(&tenant_ns("acme"), &name("k"), CANARY)
        .unwrap();
    let err = env_keyed(dir.path(), 2)
        .get(&tenant_ns("acme"), &name("k"))
        .unwrap_err();
    assert!(matches!(err, SecretError::WrongMasterKey { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("different master key"), "{message}");
    assert!(message.contains("TENANTRY_MASTER_KEY"), "{message}");
    assert!(!contains(message.as_bytes(), CANARY));
    assert!(!message.contains(&"02".repeat(32)), "{message}");
    // The env key does not create a key file; the right key still reads the value.
    assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    assert_eq!(
        value(&env_keyed(dir.path(), 1), &tenant_ns("acme"), "k").as_deref(),
        Some(CANARY)
    );
    // The key file's key is another key again.
    let err = file_keyed(dir.path())
        .get(&tenant_ns("acme"), &name("k"))
        .unwrap_err();
    assert!(err.to_string().contains("master.key"), "{err}");
}

#[test]
fn an_invalid_env_master_key_is_a_clear_error_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "abc".to_owned(),
        "zz".repeat(32),
        "0".repeat(66),
        format!("{}é", "0".repeat(62)),
    ] {
        let sources = KeySources {
            master_key_hex: Some(SecretValue::new(bad.clone().into_bytes())),
            signing_key: None,
        };
        let err = SecretStore::open_with(dir.path(), sources).unwrap_err();
        assert!(matches!(err, SecretError::MasterKeyEnv { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("TENANTRY_MASTER_KEY"), "{message}");
        assert!(message.contains("64 hex"), "{message}");
        assert!(!message.contains(&bad), "{message}");
    }
    // Upper-case hex and a trailing newline (as `openssl rand -hex 32` prints) are fine.
    let sources = KeySources {
        master_key_hex: Some(SecretValue::new(
            format!("{}\n", "AB".repeat(32)).into_bytes(),
        )),
        signing_key: None,
    };
    SecretStore::open_with(dir.path(), sources).unwrap();
}

#[test]
fn the_key_file_is_created_0600_and_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data"); // does not exist yet
    let store = file_keyed(&data_dir);
    store.set(&tenant_ns("acme"), &name("k"), CANARY).unwrap();
    let key_file = data_dir.join(MASTER_KEY_FILE);
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.len(), 65);
    assert!(
        text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    // No staging copy of the key is left behind.
    assert_eq!(
        files_under(&data_dir).len(),
        2,
        "{:?}",
        files_under(&data_dir)
    );

    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = SecretStore::open_with(&data_dir, KeySources::default()).unwrap_err();
        assert!(
            matches!(err, SecretError::MasterKeyFilePermissions { .. }),
            "{mode:o}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(!message.contains(text.trim_end()), "{message}");
    }
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(
        value(&file_keyed(&data_dir), &tenant_ns("acme"), "k").as_deref(),
        Some(CANARY)
    );
}

#[test]
fn a_key_file_that_is_not_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join(MASTER_KEY_FILE);
    for content in [&b""[..], b"short\n", &[b'g'; 64][..], &[b'0'; 300][..]] {
        std::fs::write(&key_file, content).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretStore::open_with(dir.path(), KeySources::default()).unwrap_err();
        assert!(matches!(err, SecretError::MasterKeyFile { .. }), "{err}");
        assert!(err.to_string().contains("master.key"), "{err}");
    }
}

#[test]
fn racing_first_opens_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let stores: Vec<SecretStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| file_keyed(&data_dir)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stores[0]
        .set(&Namespace::Global, &name("k"), CANARY)
        .unwrap();
    for store in &stores {
        assert_eq!(
            value(store, &Namespace::Global, "k").as_deref(),
            Some(CANARY)
        );
    }
    assert_eq!(
        files_under(&data_dir).len(),
        2,
        "{:?}",
        files_under(&data_dir)
    );
}

// ---- signing key --------------------------------------------------------------------------

#[test]
fn the_signing_key_comes_from_env_first_then_global() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    assert!(store.signing_key().unwrap().is_none());
    store
        .set(&Namespace::Global, &SecretName::signing_key(), b"stored")
        .unwrap();
    assert_eq!(store.signing_key().unwrap().unwrap().expose(), b"stored");
    // A tenant's `signing_key` is not the platform's.
    let other = tempfile::tempdir().unwrap();
    let tenant_only = file_keyed(other.path());
    tenant_only
        .set(&tenant_ns("acme"), &SecretName::signing_key(), b"tenant")
        .unwrap();
    assert!(tenant_only.signing_key().unwrap().is_none());

    let sources = KeySources {
        master_key_hex: None,
        signing_key: Some(SecretValue::new(b"from-env".to_vec())),
    };
    let with_env = SecretStore::open_with(dir.path(), sources).unwrap();
    assert_eq!(
        with_env.signing_key().unwrap().unwrap().expose(),
        b"from-env"
    );
}

// ---- CLI actions ---------------------------------------------------------------------------

fn ns_args(tenant_id: Option<&str>, team_id: Option<&str>) -> NamespaceArgs {
    NamespaceArgs {
        tenant: tenant_id.map(tenant),
        team: team_id.map(team),
        global: tenant_id.is_none(),
    }
}

fn run(store: &SecretStore, action: SecretsAction, stdin: &[u8]) -> Result<Vec<u8>, SecretError> {
    let mut out = Vec::new();
    run_secrets(&SecretsArgs { action }, store, &mut &stdin[..], &mut out)?;
    Ok(out)
}

fn name_args(tenant_id: Option<&str>, team_id: Option<&str>, secret: &str) -> NameArgs {
    NameArgs {
        namespace: ns_args(tenant_id, team_id),
        name: name(secret),
    }
}

#[test]
fn cli_set_strips_one_trailing_newline_and_get_prints_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_keyed(dir.path());
    let set = |input: &[u8]| {
        run(
            &store,
            SecretsAction::Set(name_args(Some("acme"), Some("support"), "k")),
            input,
        )
    };
    let ns = team_ns("acme", "support");
    for (input, stored) in [
        (&b"v\n"[..], &b"v"[..]),
        (b"v\r\n", b"v"),
        (b"v\n\n", b"v\n"),
        (b"v", b"v"),
    ] {
        assert!(set(input).unwrap().is_empty());
        assert_eq!(value(&store, &ns, "k").as_deref(), Some(stored));
    }
    for input in [&b""[..], b"\n"] {
        let err = set(input).unwrap_err();
        assert!(
            matches!(err, SecretError::ValueSize { bytes: 0, .. }),
            "{err}"
        );
    }
    let too_long = vec![b'x'; SECRET_VALUE_BYTES_MAX + 10];
    let err = set(&too_long).unwrap_err();
    assert!(matches!(err, SecretError::ValueSize { .. }), "{err}");
    let mut max = vec![b'x'; SECRET_VALUE_BYTES_MAX];
    max.extend_from_slice(b"\r\n");
    set(&max).unwrap();

    set(CANARY).unwrap();
    let out = run(
        &store,
        SecretsAction::Get(name_args(Some("acme"), Some("support"), "k")),
        b"",
    )
    .unwrap();
    assert_eq!(out, [CANARY, b"\n"].concat());
    let out = run(
        &store,
        SecretsAction::List(ns_args(Some("acme"), Some("support"))),
        b"",
    )
    .unwrap();
    assert_eq!(out, b"k\n");
    let err = run(
        &store,
        SecretsAction::Get(name_args(Some("acme"), None, "k")),
        b"",
    )
    .unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("`k` not found in `acme/`"),
        "{err}"
    );
    run(
        &store,
        SecretsAction::Delete(name_args(Some("acme"), Some("support"), "k")),
        b"",
    )
    .unwrap();
    let err = run(
        &store,
        SecretsAction::Delete(name_args(Some("acme"), Some("support"), "k")),
        b"",
    )
    .unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err}");
    run(
        &store,
        SecretsAction::Set(name_args(None, None, "g")),
        b"x\n",
    )
    .unwrap();
    assert_eq!(
        value(&store, &Namespace::Global, "g").as_deref(),
        Some(&b"x"[..])
    );
}

#[test]
fn a_kid_names_its_key_secret_or_is_refused() {
    use crate::secrets::kids::{kid_of, kid_secret_name};
    let name = kid_secret_name("2026-11").unwrap();
    assert_eq!(name.as_str(), "signing_key.2026-11");
    assert_eq!(kid_of(&name), Some("2026-11"));
    assert_eq!(kid_of(&SecretName::signing_key()), None);
    for bad in ["", "UPPER", "a/b", "../x", "sp ace"] {
        let err = kid_secret_name(bad).unwrap_err().to_string();
        assert!(err.contains("cannot name an HS256 key"), "{bad}: {err}");
    }
}

mod tokens;
