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
