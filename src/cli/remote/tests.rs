use super::*;

#[test]
fn the_last_line_is_kept_across_chunks() {
    let mut last = Vec::new();
    for chunk in [&b"{\"a\":1}\n{\"type\":\"man"[..], b"ifest\"}", b"\n"] {
        remember_last_line(&mut last, chunk);
    }
    assert_eq!(last, b"{\"type\":\"manifest\"}\n");
    let mut last = Vec::new();
    remember_last_line(&mut last, b"one\ntwo\nthree\n");
    assert_eq!(last, b"three\n");
}

#[test]
fn a_csv_export_has_no_manifest_and_a_cut_jsonl_one_is_an_error() {
    assert!(manifest_of(ExportFormat::Csv, b"a,b\n").unwrap().is_none());
    let err = manifest_of(ExportFormat::Jsonl, b"{\"type\":\"event\"}\n").unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err:#}");
}

#[test]
fn without_a_token_or_with_https_it_says_what_to_do() {
    let tenant = TenantId::parse("acme").unwrap();
    let args = ServerArgs {
        server: Some("http://127.0.0.1:1".into()),
        token: None,
    };
    let err = Remote::from_args(&args, &tenant).err().unwrap().to_string();
    assert!(
        err.contains("--token") && err.contains("TENANTRY_TOKEN"),
        "{err}"
    );
    let args = ServerArgs {
        server: Some("https://example.org".into()),
        token: Some("t".into()),
    };
    let err = Remote::from_args(&args, &tenant).err().unwrap().to_string();
    assert!(err.contains("http://"), "{err}");
    assert!(Remote::from_args(&ServerArgs::default(), &tenant)
        .unwrap()
        .is_none());
}
