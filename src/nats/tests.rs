use super::*;

#[test]
fn a_storage_failure_is_answered_without_its_internal_detail() {
    let detail = "appending to /srv/tenantry/data/log/db: tenant_seq 41 conflicts with 42";
    let body = runtime_error_body(&RuntimeError::Storage(detail.to_owned()));
    let text = String::from_utf8(body).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["error"]["code"], "internal", "{text}");
    assert_eq!(json["error"]["message"], "internal error", "{text}");
    for leak in ["/srv", "log/db", "tenant_seq", "41"] {
        assert!(!text.contains(leak), "{leak:?} leaked in {text}");
    }
}

#[test]
fn a_rejection_names_the_callers_own_ids_as_http_does() {
    let e = RuntimeError::UnknownChannel {
        team: crate::tenancy::TeamId::parse("support").unwrap(),
        channel: crate::tenancy::ChannelId::parse("fax").unwrap(),
    };
    let json: serde_json::Value = serde_json::from_slice(&runtime_error_body(&e)).unwrap();
    let (code, message) = e.public();
    assert_eq!(json["error"]["code"], code);
    assert_eq!(json["error"]["message"], message.as_str());
    assert_eq!(code, "unknown_channel");
    assert_eq!(message, "team support has no channel fax");
}

#[test]
fn a_secret_is_read_from_where_the_config_says_and_a_missing_one_names_the_fix() {
    use crate::config::SecretSource;
    use crate::secrets::name::{Namespace, SecretName};
    let dir = tempfile::tempdir().unwrap();
    let inline = SecretSource::Inline("pw".into());
    assert_eq!(
        connect::secret("nats.password", &inline, dir.path()).unwrap(),
        "pw"
    );

    let unset = SecretSource::Env("TENANTRY_TEST_NATS_PASSWORD_NEVER_SET".into());
    let e = connect::secret("nats.password", &unset, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nats.password")
            && e.contains("TENANTRY_TEST_NATS_PASSWORD_NEVER_SET is not set"),
        "{e}"
    );

    let name = SecretName::parse("nats_password").unwrap();
    let stored = SecretSource::Store(name.clone());
    let e = connect::secret("nats.password", &stored, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tenantry secrets set --global nats_password"),
        "{e}"
    );
    let store = crate::secrets::store::SecretStore::open(dir.path()).unwrap();
    store
        .set(&Namespace::Global, &name, b"from-the-store")
        .unwrap();
    assert_eq!(
        connect::secret("nats.password", &stored, dir.path()).unwrap(),
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
        rt.block_on(connect::with_credentials(
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
fn refusals_are_counted_per_tenant_and_code_on_the_metrics_page() {
    let metrics = NatsMetrics::default();
    let (t1, t2) = (
        TenantId::parse("t1").unwrap(),
        TenantId::parse("t2").unwrap(),
    );
    metrics.count_refused(&t1, "quota_exceeded");
    metrics.count_refused(&t1, "quota_exceeded");
    metrics.count_refused(&t2, "overloaded");
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for series in [
        r#"tenantry_nats_refused_total{tenant="t1",code="quota_exceeded"} 2"#,
        r#"tenantry_nats_refused_total{tenant="t2",code="overloaded"} 1"#,
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
    assert!(
        !text.contains(r#"tenant="t2",code="quota_exceeded""#),
        "{text}"
    );
}
