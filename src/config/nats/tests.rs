use std::path::Path;

use super::*;
use crate::config::raw::ConfigFile;

const PATH: &str = "/etc/tenantry/config.toml";

fn load(nats: &str) -> Result<NatsConfig, ConfigError> {
    let text = format!("[nats]\nurl = \"nats://127.0.0.1:4222\"\n{nats}");
    let file: ConfigFile = toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: PATH.into(),
        source: Box::new(source),
    })?;
    nats_config(Path::new(PATH), file.nats.unwrap())
}

fn error(nats: &str) -> String {
    load(nats).unwrap_err().to_string()
}

#[test]
fn each_way_to_authenticate_is_read_with_its_secret_source() {
    assert_eq!(load("").unwrap().auth, NatsAuth::None);
    assert_eq!(
        load("user = \"tenantry\"\npassword = { env = \"TENANTRY_NATS_PASSWORD\" }")
            .unwrap()
            .auth,
        NatsAuth::UserPassword {
            user: "tenantry".into(),
            password: SecretSource::Env("TENANTRY_NATS_PASSWORD".into()),
        }
    );
    assert_eq!(
        load("token = { secret = \"nats_token\" }").unwrap().auth,
        NatsAuth::Token(SecretSource::Store(
            SecretName::parse("nats_token").unwrap()
        ))
    );
    assert_eq!(
        load("nkey_seed = \"SUAEXAMPLE\"").unwrap().auth,
        NatsAuth::NkeySeed(SecretSource::Inline("SUAEXAMPLE".into()))
    );
    assert_eq!(
        load("creds_file = \"nats/tenantry.creds\"").unwrap().auth,
        NatsAuth::CredsFile("/etc/tenantry/nats/tenantry.creds".into())
    );
}

#[test]
fn an_inline_secret_never_prints() {
    let config = load("user = \"tenantry\"\npassword = \"hunter2-canary\"").unwrap();
    let shown = format!("{config:?} {} {}", config.auth, config.url_for_display());
    assert!(!shown.contains("hunter2-canary"), "{shown}");
    assert!(shown.contains("user tenantry"), "{shown}");
}

#[test]
fn user_info_in_the_url_is_hidden_when_shown() {
    assert_eq!(
        redact_url("nats://ops:s3cret@nats.internal:4222"),
        "nats://***@nats.internal:4222"
    );
    assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    assert_eq!(redact_url("tls://h:1/a@b"), "tls://h:1/a@b");
}

#[test]
fn bad_credentials_config_is_an_error_naming_the_field_and_the_fix() {
    for (nats, field, fix) in [
        ("user = \"u\"", "nats.password", "give both"),
        ("password = \"p\"", "nats.user", "give both"),
        (
            "token = \"t\"\ncreds_file = \"c.creds\"",
            "nats",
            "only one of",
        ),
        (
            "token = { env = \"A\", secret = \"b\" }",
            "nats.token",
            "exactly one",
        ),
        ("token = {}", "nats.token", "exactly one"),
        ("token = \"\"", "nats.token", "must not be empty"),
        ("token = { env = \"A=B\" }", "nats.token", "variable name"),
        (
            "nkey_seed = { secret = \"../x\" }",
            "nats.nkey_seed",
            "invalid secret name",
        ),
    ] {
        let e = error(nats);
        assert!(e.contains(field) && e.contains(fix), "{nats}: {e}");
    }
    // A wrong shape is refused by the parser, which names the key and the accepted shapes.
    let e = error("password = 42\nuser = \"u\"");
    assert!(e.contains("password") && e.contains("env ="), "{e}");
}

fn load_url(url: &str) -> Result<NatsConfig, ConfigError> {
    let text = format!("[nats]\nurl = {}\n", toml::Value::String(url.to_owned()));
    let file: ConfigFile = toml::from_str(&text).unwrap();
    nats_config(Path::new(PATH), file.nats.unwrap())
}

#[test]
fn a_url_list_is_split_in_order_trimmed_and_shown_with_every_user_info_hidden() {
    let one = load_url("nats://127.0.0.1:4222").unwrap();
    assert_eq!(one.urls(), ["nats://127.0.0.1:4222"]);
    let list = load_url(
        " nats://a:pw-one@n1.internal:4222 ,tls://n2.internal:4223, nats://ops:pw-two@[::1]:4224",
    )
    .unwrap();
    assert_eq!(
        list.urls(),
        [
            "nats://a:pw-one@n1.internal:4222",
            "tls://n2.internal:4223",
            "nats://ops:pw-two@[::1]:4224"
        ]
    );
    assert_eq!(
        list.url_for_display(),
        "nats://***@n1.internal:4222,tls://n2.internal:4223,nats://***@[::1]:4224"
    );
}

#[test]
fn a_bad_url_entry_is_refused_naming_nats_url_the_entry_and_the_fix() {
    let many = vec!["nats://h:4222"; NATS_URLS_MAX + 1].join(",");
    for (url, problem) in [
        ("", "must not be empty"),
        (" , ", "entry 1 \"\" is empty"),
        ("nats://a:4222,", "entry 2 \"\" is empty"),
        ("nats://a:4222,,nats://b:4222", "entry 2 \"\" is empty"),
        ("nats://a", "entry 1 \"nats://a\" has no port"),
        (
            "nats://a:4222,127.0.0.1:4223",
            "entry 2 \"127.0.0.1:4223\" has no scheme",
        ),
        ("http://a:4222", "scheme \"http\", not nats or tls"),
        ("ws://a:4222", "scheme \"ws\", not nats or tls"),
        ("nats://a:0", "has port 0"),
        ("nats://a:99999", "is not a URL"),
        ("nats://:4222", "entry 1 \"nats://:4222\""),
        ("nats://a b:4222", "is not a URL"),
        (many.as_str(), "more than 16"),
    ] {
        let e = load_url(url).unwrap_err().to_string();
        assert!(
            e.contains("nats.url") && e.contains(problem),
            "{url:?}: {e}"
        );
        if url.contains("://") && url.len() < 100 {
            assert!(e.contains("nats://host:port"), "{url:?}: the fix: {e}");
        }
    }
    // The entry is named with its user info hidden.
    let e = load_url("nats://h:4222,nats://ops:pw-canary@h")
        .unwrap_err()
        .to_string();
    assert!(e.contains("entry 2 \"nats://***@h\" has no port"), "{e}");
    assert!(!e.contains("pw-canary"), "the password leaked: {e}");
}
