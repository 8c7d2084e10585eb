use super::*;
use proptest::prelude::*;

const HOSTILE: &[&str] = &[
    "",
    ".",
    "..",
    "a/b",
    "a.b",
    "*",
    ">",
    "A",
    "a b",
    "a\0b",
    "\0",
    "é",
    "ab\u{202e}",
    "%2e%2e",
    "a\\b",
    "-a",
    "_a",
    "a\n",
    " a",
    "a>",
    "a*",
];

#[test]
fn hostile_scope_ids_are_rejected_naming_the_field() {
    let too_long = "a".repeat(SCOPE_ID_LEN_MAX + 1);
    let cases = HOSTILE.iter().copied().chain([too_long.as_str()]);
    for raw in cases {
        let checks: [(IdField, Result<(), InvalidId>); 4] = [
            (IdField::Tenant, TenantId::parse(raw).map(drop)),
            (IdField::Env, EnvId::parse(raw).map(drop)),
            (IdField::Team, TeamId::parse(raw).map(drop)),
            (IdField::Channel, ChannelId::parse(raw).map(drop)),
        ];
        for (field, result) in checks {
            let err = result.expect_err(&format!("{field:?} accepted {raw:?}"));
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field.name()), "{err}");
        }
    }
}

#[test]
fn hostile_session_ids_are_rejected() {
    let too_long = "a".repeat(SessionId::LEN_MAX + 1);
    let session_ok = ["A", "-a", "_a"]; // uppercase is fine for sessions; a leading sign is not
    for raw in HOSTILE.iter().copied().chain([too_long.as_str()]) {
        let result = SessionId::parse(raw);
        if raw == "A" {
            assert!(result.is_ok());
            continue;
        }
        let err = result.expect_err(&format!("session accepted {raw:?}"));
        assert_eq!(err.field, IdField::Session);
        assert!(err.to_string().contains("session"));
    }
    assert!(session_ok[1..]
        .iter()
        .all(|raw| SessionId::parse(raw).is_err()));
}

#[test]
fn boundary_lengths() {
    assert!(TenantId::parse(&"a".repeat(SCOPE_ID_LEN_MAX)).is_ok());
    assert!(SessionId::parse(&"A".repeat(SessionId::LEN_MAX)).is_ok());
    assert!(TenantId::parse("0").is_ok());
    assert!(TenantId::parse("a-b_c9").is_ok());
}

#[test]
fn long_hostile_input_is_truncated_in_the_error() {
    let raw = "x".repeat(10_000) + ".";
    let err = TenantId::parse(&raw).unwrap_err();
    assert!(err.to_string().len() < 300);
}

#[test]
fn deserializing_validates() {
    let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
    assert_eq!(ok.as_str(), "acme");
    let bad = serde_json::from_str::<TenantId>("\"../etc\"");
    assert!(bad.is_err());
}

#[test]
fn state_key_matches_the_seed_format() {
    let tenant = TenantId::parse("acme").unwrap();
    let env = EnvId::parse("prod").unwrap();
    let session = SessionId::parse("session_001").unwrap();
    let with_team = TenantCtx::new(
        tenant.clone(),
        env.clone(),
        Some(TeamId::parse("support").unwrap()),
    );
    assert_eq!(
        with_team.state_key(&session),
        "state:acme:prod:support:session_001"
    );
    let without = TenantCtx::new(tenant, env, None);
    assert_eq!(
        without.state_key(&session),
        "state:acme:prod:default:session_001"
    );
}

#[test]
fn generated_sessions_are_valid() {
    let s = SessionId::generate();
    assert_eq!(SessionId::parse(s.as_str()).unwrap(), s);
}

fn is_nats_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

fn is_path_segment(s: &str) -> bool {
    let path = std::path::Path::new(s);
    let mut parts = path.components();
    s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\\')
        && !s.contains('\0')
        && matches!(parts.next(), Some(std::path::Component::Normal(p)) if p == s)
        && parts.next().is_none()
}

proptest! {
    #[test]
    fn accepted_scope_ids_are_nats_tokens_and_path_segments(raw in "\\PC{0,70}|[a-z0-9_.*>/ -]{0,70}") {
        if let Ok(id) = TenantId::parse(&raw) {
            prop_assert!(is_nats_token(id.as_str()), "{raw:?}");
            prop_assert!(is_path_segment(id.as_str()), "{raw:?}");
            prop_assert!(!id.as_str().chars().any(|c| c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn accepted_session_ids_are_nats_tokens_and_path_segments(raw in "\\PC{0,140}|[A-Za-z0-9_.*>/ -]{0,140}") {
        if let Ok(id) = SessionId::parse(&raw) {
            prop_assert!(is_nats_token(id.as_str()), "{raw:?}");
            prop_assert!(is_path_segment(id.as_str()), "{raw:?}");
        }
    }

    #[test]
    fn parse_is_identity_on_valid_ids(raw in "[a-z0-9][a-z0-9_-]{0,62}") {
        let id = TenantId::parse(&raw).unwrap();
        prop_assert_eq!(id.as_str(), raw.as_str());
    }
}

#[test]
fn a_clone_shares_the_text_and_the_wire_form_is_the_plain_string() {
    let tenant = TenantId::parse("acme").unwrap();
    let session = SessionId::parse("s-1").unwrap();
    assert_eq!(tenant.clone().as_str().as_ptr(), tenant.as_str().as_ptr());
    assert_eq!(session.clone().as_str().as_ptr(), session.as_str().as_ptr());
    assert_eq!(
        TeamId::default_team().as_str().as_ptr(),
        TeamId::default_team().as_str().as_ptr()
    );
    // A pointer and a length, so that every holder of an id pays 16 bytes.
    assert_eq!(std::mem::size_of::<SessionId>(), 16);
    assert_eq!(serde_json::to_string(&tenant).unwrap(), "\"acme\"");
    assert_eq!(
        rmp_serde::to_vec(&session).unwrap(),
        rmp_serde::to_vec("s-1").unwrap()
    );
}
