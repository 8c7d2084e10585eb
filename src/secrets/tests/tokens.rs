//! Token claims from requests and the auth config, and minted tokens.

use super::*;

fn test_config(dir: &Path) -> Config {
    std::fs::write(
        dir.join("flow.yaml"),
        "name: f\nversion: \"1\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: hi\n",
    )
    .unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        r#"
[server]
data_dir = "data"
[auth]
issuer = "iss-test"
audience = "aud-test"
[tenants.acme]
environments = ["prod", "staging"]
[tenants.acme.teams.support]
flow = "flow.yaml"
[tenants.bigcorp.teams.helpdesk]
flow = "flow.yaml"
"#,
    )
    .unwrap();
    Config::load(&path, &LoadOptions::default()).unwrap()
}

fn request(tenant_id: &str, env: &str, team_id: Option<&str>) -> TokenRequest {
    TokenRequest {
        tenant: tenant(tenant_id),
        env: EnvId::parse(env).unwrap(),
        team: team_id.map(team),
        ttl: Duration::from_secs(3600),
        subject: "tester".to_owned(),
    }
}

fn at(unix_secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs)
}

#[test]
fn claims_come_from_the_request_and_auth_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let claims = claims_for(
        &config,
        &request("acme", "prod", Some("support")),
        at(1_000),
    )
    .unwrap();
    assert_eq!(
        claims,
        Claims {
            tenant: "acme".to_owned(),
            env: "prod".to_owned(),
            team: Some("support".to_owned()),
            exp: 4_600,
            iat: 1_000,
            nbf: 1_000,
            iss: "iss-test".to_owned(),
            aud: "aud-test".to_owned(),
            sub: "tester".to_owned(),
            scope: None,
            connector: None,
        }
    );
    // A tenant without environments has `default`; a tenant-wide token has no `team` claim.
    let claims = claims_for(&config, &request("bigcorp", "default", None), at(1_000)).unwrap();
    let json = serde_json::to_value(&claims).unwrap();
    assert!(json.get("team").is_none(), "{json}");
}

#[test]
fn claims_are_refused_for_what_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let cases = [
        (
            request("nobody", "prod", None),
            "tenant `nobody` is not configured",
        ),
        (request("acme", "dev", None), "no environment `dev`"),
        (
            request("acme", "prod", Some("helpdesk")),
            "no team `helpdesk`",
        ),
    ];
    for (req, expected) in cases {
        let err = claims_for(&config, &req, at(1_000)).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(999),
        TOKEN_TTL_MAX + Duration::from_secs(1),
    ] {
        let req = TokenRequest {
            ttl,
            ..request("acme", "prod", None)
        };
        let err = claims_for(&config, &req, at(1_000)).unwrap_err();
        assert!(matches!(err, SecretError::TokenTtl { .. }), "{err}");
    }
    let req = TokenRequest {
        ttl: TOKEN_TTL_MAX,
        ..request("acme", "prod", None)
    };
    assert_eq!(
        claims_for(&config, &req, at(0)).unwrap().exp,
        TOKEN_TTL_MAX.as_secs()
    );
    for subject in ["", "a\nb", &"s".repeat(257)] {
        let req = TokenRequest {
            subject: subject.to_owned(),
            ..request("acme", "prod", None)
        };
        let err = claims_for(&config, &req, at(1_000)).unwrap_err();
        assert!(matches!(err, SecretError::TokenSubject { .. }), "{err}");
    }
}

#[test]
fn minted_tokens_verify_with_the_same_key_and_not_another() {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let now = SystemTime::now();
    let claims = claims_for(&config, &request("acme", "staging", Some("support")), now).unwrap();
    let key = SecretValue::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let token = mint(&key, &claims, None).unwrap();

    assert_eq!(decode_header(&token).unwrap().alg, Algorithm::HS256);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["iss-test"]);
    validation.set_audience(&["aud-test"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
    let decoded =
        decode::<Claims>(&token, &DecodingKey::from_secret(key.expose()), &validation).unwrap();
    assert_eq!(decoded.claims, claims);

    let wrong = DecodingKey::from_secret(b"another key");
    assert!(decode::<Claims>(&token, &wrong, &validation).is_err());

    for len in [0, 1, 31] {
        let err = mint(&SecretValue::new(vec![b'k'; len]), &claims, None).unwrap_err();
        assert!(
            matches!(err, SecretError::WeakSigningKey { bytes, .. } if bytes == len),
            "{err}"
        );
    }
}
