use actix_web::http::header::{HeaderName, HeaderValue};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const KEY: &[u8] = b"unit-test-key-unit-test-key-0123";
/// The lifetime bound of [`authenticator`]: one day.
const LIFETIME_MAX_S: u64 = 24 * 60 * 60;

fn authenticator() -> Authenticator {
    let auth = AuthConfig {
        issuer: "tenantry".to_owned(),
        audience: "tenantry-api".to_owned(),
        token_lifetime_max: Duration::from_secs(LIFETIME_MAX_S),
        jwks: None,
    };
    Authenticator::new(
        HsKeys::single(SigningKey::new(KEY.to_vec()).unwrap()),
        None,
        &auth,
    )
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

fn claims() -> Value {
    json!({"tenant": "acme", "env": "prod", "iss": "tenantry", "aud": "tenantry-api",
           "exp": now() + 60})
}

fn sign(alg: Algorithm, key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Unpadded base64url, to hand-craft a token header.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn a_valid_token_yields_its_claims() {
    let token = sign(Algorithm::HS256, KEY, &claims());
    let got = authenticator().verify(&token).unwrap();
    assert_eq!(got.tenant.as_str(), "acme");
    assert_eq!(got.env.as_str(), "prod");
    assert_eq!(got.team, None);
    let token = sign(
        Algorithm::HS256,
        KEY,
        &with(claims(), "team", json!("support")),
    );
    assert_eq!(
        authenticator()
            .verify(&token)
            .unwrap()
            .team
            .unwrap()
            .as_str(),
        "support"
    );
}

#[test]
fn bad_tokens_are_refused() {
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims().to_string().as_bytes())
    );
    let cases = [
        ("alg none", none),
        ("HS384", sign(Algorithm::HS384, KEY, &claims())),
        ("wrong key", sign(Algorithm::HS256, b"other", &claims())),
        (
            "expired",
            sign(
                Algorithm::HS256,
                KEY,
                &with(claims(), "exp", json!(now() - 60)),
            ),
        ),
        (
            "nbf in the future",
            sign(
                Algorithm::HS256,
                KEY,
                &with(claims(), "nbf", json!(now() + 60)),
            ),
        ),
        (
            "string exp",
            sign(
                Algorithm::HS256,
                KEY,
                &with(claims(), "exp", json!((now() + 60).to_string())),
            ),
        ),
        (
            "wrong iss",
            sign(Algorithm::HS256, KEY, &with(claims(), "iss", json!("x"))),
        ),
        (
            "wrong aud",
            sign(Algorithm::HS256, KEY, &with(claims(), "aud", json!("x"))),
        ),
        (
            "no exp",
            sign(Algorithm::HS256, KEY, &without(claims(), "exp")),
        ),
        (
            "no iss",
            sign(Algorithm::HS256, KEY, &without(claims(), "iss")),
        ),
        (
            "no aud",
            sign(Algorithm::HS256, KEY, &without(claims(), "aud")),
        ),
        (
            "no tenant",
            sign(Algorithm::HS256, KEY, &without(claims(), "tenant")),
        ),
        (
            "no env",
            sign(Algorithm::HS256, KEY, &without(claims(), "env")),
        ),
        (
            "invalid tenant",
            sign(
                Algorithm::HS256,
                KEY,
                &with(claims(), "tenant", json!("../x")),
            ),
        ),
        (
            "invalid team",
            sign(Algorithm::HS256, KEY, &with(claims(), "team", json!("A B"))),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let err = authenticator().verify(&token).expect_err(what);
        assert!(matches!(err, AuthError::InvalidToken(_)), "{what}: {err:?}");
        assert!(!err.to_string().contains(&token), "{what}: token echoed");
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn acme(team: Option<&str>) -> Claims {
    Claims {
        tenant: TenantId::parse("acme").unwrap(),
        env: EnvId::parse("prod").unwrap(),
        team: team.map(|t| TeamId::parse(t).unwrap()),
        scope: Scopes::DEFAULT,
        connector: None,
    }
}

/// The reason `token` is refused with; panics when it is accepted.
fn refusal(token: &str) -> &'static str {
    match authenticator().verify(token) {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[test]
fn tokens_living_longer_than_the_bound_or_issued_in_the_future_are_refused() {
    let max = i64::try_from(LIFETIME_MAX_S).unwrap();
    let iat = now();
    let lives = |iat: Option<i64>, exp: i64| {
        let claims = with(claims(), "exp", json!(exp));
        let claims = match iat {
            Some(iat) => with(claims, "iat", json!(iat)),
            None => claims,
        };
        sign(Algorithm::HS256, KEY, &claims)
    };
    // Centuries ahead, with and without `iat`; a day and a second; from 1970.
    let centuries = 100 * 365 * 24 * 3600;
    assert!(refusal(&lives(Some(iat), iat + centuries)).contains("lives longer"));
    assert!(refusal(&lives(None, now() + centuries)).contains("lives longer"));
    assert!(refusal(&lives(Some(iat), iat + max + 1)).contains("lives longer"));
    assert!(refusal(&lives(Some(0), iat + 60)).contains("lives longer"));
    assert!(refusal(&lives(Some(iat + 3600), iat + 7200)).contains("iat"));
    // A string `iat` is not a time.
    let string_iat = sign(
        Algorithm::HS256,
        KEY,
        &with(claims(), "iat", json!(iat.to_string())),
    );
    assert!(authenticator().verify(&string_iat).is_err());
    // Exactly the bound, and an `iat` within the leeway, are fine.
    authenticator()
        .verify(&lives(Some(iat), iat + max))
        .unwrap();
    authenticator()
        .verify(&lives(Some(iat + 2), iat + 60))
        .unwrap();
}

#[test]
fn lifetime_bounds_are_exact() {
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let max = Duration::from_secs(100);
    let now = 10_000;
    assert!(check_times(Some(now), now + 100, max, at(now)).is_ok());
    assert!(check_times(Some(now), now + 101, max, at(now)).is_err());
    assert!(check_times(None, now + 100, max, at(now)).is_ok());
    assert!(check_times(None, now + 101, max, at(now)).is_err());
    assert!(check_times(Some(now + LEEWAY_S), now + 50, max, at(now)).is_ok());
    assert!(check_times(Some(now + LEEWAY_S + 1), now + 50, max, at(now)).is_err());
    // An `iat` long ago counts from then, not from now.
    assert!(check_times(Some(now - 101), now + 1, max, at(now)).is_err());
}

#[test]
fn a_crit_header_is_refused() {
    for crit in [
        vec!["exp".to_owned()],
        vec!["x-unknown".to_owned()],
        Vec::new(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(crit.clone());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(KEY)).unwrap();
        assert!(refusal(&token).contains("crit"), "{crit:?}");
    }
}

#[test]
fn signing_keys_shorter_than_32_bytes_are_refused() {
    for len in [0, 1, 16, SIGNING_KEY_BYTES_MIN - 1] {
        let err = SigningKey::new(vec![b'k'; len]).unwrap_err();
        assert!(
            matches!(err, KeyError::TooShort { bytes } if bytes == len),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("at least 32 bytes") && text.contains("tenantry keygen"));
    }
    assert!(SigningKey::new(vec![b'k'; SIGNING_KEY_BYTES_MIN]).is_ok());
}

#[test]
fn tenancy_headers_must_agree_with_the_token() {
    let served = |t: &TenantId| t.as_str() == "acme";
    let check = |pairs: &[(&str, &str)], team: Option<&str>| {
        check_headers(&headers(pairs), acme(team), served)
    };
    assert!(matches!(
        check(&[], None),
        Err(AuthError::MissingTenantHeader)
    ));
    assert!(matches!(
        check(&[("X-Tenant-ID", "acme"), ("X-Tenant-ID", "acme")], None),
        Err(AuthError::AmbiguousHeader(_))
    ));
    assert!(matches!(
        check(&[("X-Tenant-ID", "bigcorp")], None),
        Err(AuthError::TenantMismatch)
    ));
    assert!(matches!(
        check(&[("X-Tenant-ID", "a/b")], None),
        Err(AuthError::TenantMismatch)
    ));
    assert!(matches!(
        check(&[("X-Tenant-ID", "acme"), ("X-Team-ID", "a/b")], None),
        Err(AuthError::InvalidHeader { .. })
    ));
    assert!(matches!(
        check(
            &[("X-Tenant-ID", "acme"), ("X-Team-ID", "Support")],
            Some("support")
        ),
        Err(AuthError::TeamMismatch)
    ));
    assert!(matches!(
        check(
            &[("X-Tenant-ID", "acme"), ("X-Team-ID", "sales")],
            Some("support")
        ),
        Err(AuthError::TeamMismatch)
    ));
    let caller = check(&[("X-Tenant-ID", "acme"), ("X-Team-ID", "sales")], None).unwrap();
    assert_eq!(caller.team().unwrap().as_str(), "sales");
    let caller = check(&[("X-Tenant-ID", "acme")], Some("support")).unwrap();
    assert_eq!(caller.team().unwrap().as_str(), "support");
    let other = Claims {
        tenant: TenantId::parse("zeta").unwrap(),
        ..acme(None)
    };
    assert!(matches!(
        check_headers(&headers(&[("X-Tenant-ID", "zeta")]), other, served),
        Err(AuthError::UnknownTenant(_))
    ));
}

#[test]
fn only_a_single_bearer_header_is_read() {
    assert!(matches!(
        bearer_token(&headers(&[])),
        Err(AuthError::MissingToken)
    ));
    assert_eq!(
        bearer_token(&headers(&[("Authorization", "Bearer abc")])).unwrap(),
        "abc"
    );
    for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
        assert!(
            bearer_token(&headers(&[("Authorization", bad)])).is_err(),
            "{bad}"
        );
    }
    let twice = headers(&[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]);
    assert!(bearer_token(&twice).is_err());
}

#[test]
fn the_scope_claim_is_parsed_and_an_unknown_word_refuses_the_token() {
    let verify = |scope: Value| {
        authenticator().verify(&sign(
            Algorithm::HS256,
            KEY,
            &with(claims(), "scope", scope),
        ))
    };
    let plain = authenticator()
        .verify(&sign(Algorithm::HS256, KEY, &claims()))
        .unwrap();
    assert_eq!(plain.scope, Scopes::DEFAULT);
    assert!(
        !plain.scope.allows(Scope::Admin),
        "no scope claim: no admin"
    );
    let admin = verify(json!("read admin")).unwrap();
    assert!(admin.scope.allows(Scope::Admin));
    match verify(json!("admin superuser")) {
        Err(e @ AuthError::InvalidScope(_)) => {
            assert!(e.to_string().contains("\"superuser\""), "{e}")
        }
        other => panic!("expected an unknown scope, got {other:?}"),
    }
    assert!(matches!(
        verify(json!("")),
        Err(AuthError::InvalidScope(ScopeError::Empty))
    ));
    assert!(matches!(
        verify(json!(["admin"])),
        Err(AuthError::InvalidToken(_))
    ));
}

#[test]
fn a_connector_token_needs_its_connector_and_team_claims_and_no_other_token_has_one() {
    let verify = |claims: Value| authenticator().verify(&sign(Algorithm::HS256, KEY, &claims));
    let connector = with(
        with(
            with(claims(), "scope", json!("connector")),
            "team",
            json!("support"),
        ),
        "connector",
        json!("slack-1"),
    );
    let ok = verify(connector.clone()).unwrap();
    assert!(ok.scope.is_connector());
    assert_eq!(ok.connector.unwrap().as_str(), "slack-1");
    let reason = |r: Result<Claims, AuthError>| match r {
        Err(AuthError::InvalidToken(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    };
    let mut no_team = connector.clone();
    no_team.as_object_mut().unwrap().remove("team");
    assert!(reason(verify(no_team)).contains("connector and team claims"));
    let mut no_id = connector.clone();
    no_id.as_object_mut().unwrap().remove("connector");
    assert!(reason(verify(no_id)).contains("connector and team claims"));
    assert!(reason(verify(with(connector, "connector", json!("Bad.Id")))).contains("connector"));
    let stray = with(claims(), "connector", json!("slack-1"));
    assert!(reason(verify(stray.clone())).contains("only valid with scope connector"));
    assert!(reason(verify(with(stray, "scope", json!("admin")))).contains("scope connector"));
    assert!(matches!(
        verify(with(claims(), "scope", json!("connector admin"))),
        Err(AuthError::InvalidScope(ScopeError::ConnectorNotAlone))
    ));
}

// --- keys by kid: HS256 rotation and the JWKS file ---

const OLD: &[u8] = b"old-unit-test-key-0123456789abcdef";
const NEW: &[u8] = b"new-unit-test-key-0123456789abcdef";
/// A fixed Ed25519 seed for the JWKS unit tests.
const ED_SEED: [u8; 32] = [7; 32];

fn auth_config() -> AuthConfig {
    AuthConfig {
        issuer: "tenantry".to_owned(),
        audience: "tenantry-api".to_owned(),
        token_lifetime_max: Duration::from_secs(LIFETIME_MAX_S),
        jwks: None,
    }
}

fn ed_public_x() -> String {
    b64(ed25519_dalek::SigningKey::from_bytes(&ED_SEED)
        .verifying_key()
        .as_bytes())
}

/// A JWKS file holding the Ed25519 key `ed-1`; the dir keeps it alive.
fn jwks_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
                               "x": ed_public_x()}]});
    std::fs::write(&path, set.to_string()).unwrap();
    (dir, path)
}

fn rotating_authenticator(jwks: Option<&std::path::Path>) -> Authenticator {
    let mut keys = HsKeys::single(SigningKey::new(KEY.to_vec()).unwrap());
    keys.by_kid
        .insert("old".to_owned(), SigningKey::new(OLD.to_vec()).unwrap());
    keys.by_kid
        .insert("new".to_owned(), SigningKey::new(NEW.to_vec()).unwrap());
    let jwks = jwks.map(|p| JwksFile::open(p).unwrap());
    Authenticator::new(keys, jwks, &auth_config())
}

fn sign_kid(alg: Algorithm, kid: &str, key: &[u8], claims: &Value) -> String {
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A token with this header, signed by the Ed25519 key `ED_SEED` (crafted by hand, so the
/// header may lie about the algorithm).
fn ed_signed(header: &Value, claims: &Value) -> String {
    use ed25519_dalek::Signer;
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn reason(result: Result<Claims, AuthError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn an_hs256_kid_is_checked_with_its_key_only() {
    let auth = rotating_authenticator(None);
    for (kid, key) in [("old", OLD), ("new", NEW)] {
        let token = sign_kid(Algorithm::HS256, kid, key, &claims());
        assert_eq!(auth.verify(&token).unwrap().tenant.as_str(), "acme");
    }
    assert!(auth.verify(&sign(Algorithm::HS256, KEY, &claims())).is_ok());
    let crossed = sign_kid(Algorithm::HS256, "new", OLD, &claims());
    assert!(reason(auth.verify(&crossed)).contains("bad signature"));
    let default_as_kid = sign_kid(Algorithm::HS256, "old", KEY, &claims());
    assert!(reason(auth.verify(&default_as_kid)).contains("bad signature"));
    let kid_key_without_kid = sign(Algorithm::HS256, NEW, &claims());
    assert!(reason(auth.verify(&kid_key_without_kid)).contains("bad signature"));
    let unknown = sign_kid(Algorithm::HS256, "gone", OLD, &claims());
    assert_eq!(
        reason(auth.verify(&unknown)),
        "invalid token: unknown key id (kid) \"gone\""
    );
    let long = "k".repeat(500);
    let quoted = reason(auth.verify(&sign_kid(Algorithm::HS256, &long, OLD, &claims())));
    assert!(quoted.len() < KID_QUOTED_CHARS_MAX + 60, "{quoted}");
}

#[test]
fn a_jwks_kid_accepts_only_its_key_types_algorithm() {
    let (_dir, path) = jwks_file();
    let auth = rotating_authenticator(Some(&path));
    let good = ed_signed(&json!({"alg": "EdDSA", "kid": "ed-1"}), &claims());
    assert_eq!(auth.verify(&good).unwrap().env.as_str(), "prod");
    // The same claims checks apply to a JWKS token.
    let other_issuer = ed_signed(
        &json!({"alg": "EdDSA", "kid": "ed-1"}),
        &with(claims(), "iss", json!("other")),
    );
    assert!(reason(auth.verify(&other_issuer)).contains("wrong issuer"));
    let bad_scope = ed_signed(
        &json!({"alg": "EdDSA", "kid": "ed-1"}),
        &with(claims(), "scope", json!("root")),
    );
    assert!(reason(auth.verify(&bad_scope)).contains("root"));
    // A header naming another algorithm than the key's type: refused before any check.
    let none = ed_signed(&json!({"alg": "none", "kid": "ed-1"}), &claims());
    assert!(reason(auth.verify(&none)).contains("malformed token"));
    for alg in ["ES256", "RS256", "HS256"] {
        let lying = ed_signed(&json!({"alg": alg, "kid": "ed-1"}), &claims());
        assert!(
            reason(auth.verify(&lying)).contains("algorithm not allowed"),
            "{alg}"
        );
    }
    // HS256 keyed with the public key's own bytes, naming its kid.
    let x = ed_public_x();
    let confused = sign_kid(Algorithm::HS256, "ed-1", x.as_bytes(), &claims());
    assert!(reason(auth.verify(&confused)).contains("algorithm not allowed"));
    // An HS256 kid never reaches the JWKS, and a JWKS kid never an HS256 key.
    let ed_as_hs = ed_signed(&json!({"alg": "EdDSA", "kid": "old"}), &claims());
    assert!(reason(auth.verify(&ed_as_hs)).contains("algorithm not allowed"));
}

#[test]
fn a_jwks_file_is_checked_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idp.json");
    let x = ed_public_x();
    let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": x});
    let cases = [
        (json!([1, 2]), "not a JWK Set"),
        (
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}),
            "keys[0] (kid none): no kid",
        ),
        (
            json!({"keys": [ed, ed]}),
            "keys[1] (kid \"ed-1\"): another key has the same kid",
        ),
        (
            json!({"keys": [ed, {"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}),
            "keys[1] (kid \"s\"): symmetric keys",
        ),
        (
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e", "alg": "ES256", "x": x}]}),
            "alg ES256 does not fit the key type, which implies EdDSA",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "p", "x": x, "y": x}]}),
            "keys[0] (kid \"p\"): unsupported curve",
        ),
        (
            json!({"keys": [{"kty": "RSA", "kid": "r", "n": b64(&[0xC5; 128]), "e": "AQAB"}]}),
            "keys[0] (kid \"r\"): the RSA modulus has about 1024 bits",
        ),
        (
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "u", "use": "enc", "x": x}]}),
            "keys[0] (kid \"u\"): \"use\" is not \"sig\"",
        ),
        (
            json!({"keys": [{"kty": "XYZ", "kid": "z"}]}),
            "keys[0] (kid \"z\"): not a supported JWK",
        ),
    ];
    for (set, needle) in cases {
        std::fs::write(&path, set.to_string()).unwrap();
        let err = jwks::load(&path).unwrap_err().to_string();
        assert!(err.contains("idp.json"), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
    std::fs::write(&path, json!({"keys": [ed]}).to_string()).unwrap();
    assert_eq!(jwks::load(&path).unwrap().0.len(), 1);
}

#[test]
fn a_verified_token_is_answered_from_the_cache_and_a_refused_one_never_is() {
    let auth = authenticator();
    let token = sign(Algorithm::HS256, KEY, &claims());
    let first = auth.verify(&token).unwrap();
    assert_eq!(auth.verified.len(), 1);
    assert_eq!(auth.verify(&token).unwrap(), first);
    assert_eq!(auth.verified.len(), 1);
    let forged = sign(Algorithm::HS256, OLD, &claims());
    assert!(reason(auth.verify(&forged)).contains("bad signature"));
    assert!(reason(auth.verify(&forged)).contains("bad signature"));
    assert_eq!(auth.verified.len(), 1);
    // An nbf that is not whole seconds: answered as before, checked in full every time.
    let fractional = sign(Algorithm::HS256, KEY, &with(claims(), "nbf", json!(1.5)));
    assert_eq!(auth.verify(&fractional).unwrap(), first);
    assert_eq!(auth.verified.len(), 1);
}

#[test]
fn a_cached_token_past_its_expiry_is_refused_as_expired() {
    let auth = authenticator();
    let exp = now() + 2;
    let token = sign(Algorithm::HS256, KEY, &with(claims(), "exp", json!(exp)));
    assert!(auth.verify(&token).is_ok());
    assert_eq!(auth.verified.len(), 1);
    // Past exp and the leeway: the cache must not answer for it.
    let past = u64::try_from(exp).unwrap() + LEEWAY_S + 1;
    while jsonwebtoken::get_current_timestamp() <= past {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reason(auth.verify(&token)), "invalid token: expired");
    assert_eq!(auth.verified.len(), 0);
}

#[test]
fn a_cached_jwks_token_stops_when_its_key_leaves_the_file() {
    let (_dir, path) = jwks_file();
    let auth = rotating_authenticator(Some(&path));
    let token = ed_signed(&json!({"alg": "EdDSA", "kid": "ed-1"}), &claims());
    assert!(auth.verify(&token).is_ok());
    assert_eq!(auth.verified.len(), 1);
    // The identity provider rotates: the same public key under another kid only.
    let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed-2", "alg": "EdDSA",
                               "x": ed_public_x()}]});
    std::fs::write(&path, set.to_string()).unwrap();
    std::thread::sleep(jwks::JWKS_CHECK_INTERVAL + Duration::from_millis(100));
    assert_eq!(
        reason(auth.verify(&token)),
        "invalid token: unknown key id (kid) \"ed-1\""
    );
    assert_eq!(auth.verified.len(), 0);
}
