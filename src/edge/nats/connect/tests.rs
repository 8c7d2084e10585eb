use super::*;

#[test]
fn a_secret_is_read_from_where_the_config_says_and_a_missing_one_names_the_fix() {
    use crate::config::SecretSource;
    use crate::secrets::name::{Namespace, SecretName};
    let dir = tempfile::tempdir().unwrap();
    let inline = SecretSource::Inline("pw".into());
    assert_eq!(secret("nats.password", &inline, dir.path()).unwrap(), "pw");

    let unset = SecretSource::Env("TENANTRY_TEST_NATS_PASSWORD_NEVER_SET".into());
    let e = secret("nats.password", &unset, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nats.password")
            && e.contains("TENANTRY_TEST_NATS_PASSWORD_NEVER_SET is not set"),
        "{e}"
    );

    let name = SecretName::parse("nats_password").unwrap();
    let stored = SecretSource::Store(name.clone());
    let e = secret("nats.password", &stored, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tenantry secrets set --global nats_password"),
        "{e}"
    );
    // Looking up a missing secret created nothing: no master key, no secrets dir.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let store = crate::secrets::store::SecretStore::open(dir.path()).unwrap();
    store
        .set(&Namespace::Global, &name, b"from-the-store")
        .unwrap();
    assert_eq!(
        secret("nats.password", &stored, dir.path()).unwrap(),
        "from-the-store"
    );
}

#[test]
fn an_nkey_seed_is_checked_before_connecting() {
    use crate::config::{NatsAuth, SecretSource};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |seed: String| {
        let auth = NatsAuth::NkeySeed(SecretSource::Inline(seed));
        rt.block_on(with_credentials(
            async_nats::ConnectOptions::new(),
            &auth,
            dir.path(),
        ))
        .map(drop)
    };
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    check(seed).unwrap();
    let e = check("SUNOTASEED-canary".into()).unwrap_err().to_string();
    assert!(
        e.contains("nats.nkey_seed") && e.contains("not a valid NKey seed"),
        "{e}"
    );
    assert!(!e.contains("canary"), "the seed leaked: {e}");
}

#[test]
fn every_server_of_the_url_list_is_given_to_the_client_in_order() {
    use crate::config::{NatsAuth, NatsConfig};
    let config = NatsConfig {
        url: "nats://127.0.0.1:4222, tls://ops:pw@n2.internal:4223".into(),
        subject_prefix: "p".into(),
        auth: NatsAuth::None,
    };
    let addrs = server_addrs(&config).unwrap();
    let shown: Vec<(&str, &str, u16)> = addrs
        .iter()
        .map(|addr| (addr.scheme(), addr.host(), addr.port()))
        .collect();
    assert_eq!(
        shown,
        [("nats", "127.0.0.1", 4222), ("tls", "n2.internal", 4223)]
    );
    assert!(addrs[1].has_user_pass());

    // A config built past the load's checks is an error naming the key, never a panic.
    let bad = NatsConfig {
        url: "nats://ops:pw-canary@h:4222,nats://h:bad".into(),
        ..config
    };
    let e = server_addrs(&bad).unwrap_err().to_string();
    assert!(e.contains("nats.url"), "{e}");
    assert!(!e.contains("pw-canary"), "the password leaked: {e}");
}
