use super::*;
use crate::audit::fixture::{self, FORMULA, HOSTILE};
use crate::events::codec::{chain_hash, encode_body, GENESIS_HASH};
use crate::tenancy::fixtures::id;

fn stored() -> StoredEvent {
    let fx = fixture::build();
    fx.log
        .tenant(&id("acme"))
        .events(1..=1)
        .next()
        .unwrap()
        .unwrap()
}

#[test]
fn formula_cells_get_a_quote_and_lose_exactly_one() {
    for cell in [
        FORMULA, "+1", "-1", "@x", "\tx", "\rx", "'quoted", "''", "'=x",
    ] {
        let shown = neutralise(cell);
        assert!(shown.starts_with('\''), "{cell:?}");
        assert_eq!(unneutralise(&shown), cell);
    }
    for cell in ["plain", "{\"a\":1}", "", "ünïcode", "1=1"] {
        assert_eq!(neutralise(cell), cell);
        assert_eq!(unneutralise(&neutralise(cell)), cell);
    }
}

#[test]
fn a_line_carries_the_stored_body_and_its_chain_position() {
    let stored = stored();
    let body = encode_body(&stored.event);
    let line = EventLine::new(&stored, Some(&body));
    assert_eq!(line.record_type, "event");
    assert_eq!(
        (line.tenant.as_str(), line.tenant_seq, line.seq),
        ("acme", 1, 1)
    );
    assert_eq!(line.kind, "SessionStarted");
    assert_eq!(line.at_iso, "2026-11-23T10:00:00.000Z");
    assert_eq!(line.v, crate::events::schema::SCHEMA_VERSION_PLAIN);
    assert_eq!(decode_base64(line.body.as_deref().unwrap()).unwrap(), body);
    assert_eq!(parse_hash(&line.prev_hash), Some(GENESIS_HASH));
    assert_eq!(
        parse_hash(&line.hash),
        Some(chain_hash(&GENESIS_HASH, &body))
    );
    assert_eq!(line.data["flow"], "audit_flow");
    let json = serde_json::to_string(&line).unwrap();
    // The JSON record has the fields; `user` and `text` are CSV's plain copies of data's.
    let keys: Vec<&str> = CSV_COLUMNS[..CSV_COLUMNS_WITHOUT_PLAIN].to_vec();
    let mut last = 0;
    for key in keys {
        let at = json.find(&format!("\"{key}\":")).unwrap();
        assert!(at >= last, "{key} out of order in {json}");
        last = at;
    }
}

#[test]
fn csv_rows_round_trip_hostile_text() {
    let mut line = EventLine::new(&stored(), Some(b"\x8cbody"));
    line.data = serde_json::json!({ "text": HOSTILE, "f": FORMULA });
    line.kind = FORMULA.to_owned();
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(CSV_COLUMNS).unwrap();
        w.write_record(line.to_csv_row()).unwrap();
    }
    let mut r = csv::Reader::from_reader(out.as_slice());
    let row = r.records().next().unwrap().unwrap();
    assert_eq!(&row[11], &format!("'{FORMULA}"));
    assert_eq!(EventLine::from_csv_row(&row).unwrap(), line);
}

#[test]
fn csv_rows_carry_the_plain_user_and_text_neutralised() {
    let mut line = EventLine::new(&stored(), Some(b"\x8cbody"));
    line.kind = "MessageReceived".to_owned();
    line.data = serde_json::json!({ "message_id": "m", "user": "@ada", "text": FORMULA });
    let row = line.to_csv_row();
    assert_eq!(row.len(), CSV_COLUMNS.len());
    assert_eq!((CSV_COLUMNS[17], CSV_COLUMNS[18]), ("user", "text"));
    assert_eq!(row[17], "'@ada");
    assert_eq!(row[18], format!("'{FORMULA}"));
    let record = csv::StringRecord::from(row.clone());
    assert_eq!(EventLine::from_csv_row(&record).unwrap(), line);
    assert_eq!(plain_cell_mismatch(&record, &line), None);
    // A text cell that says something else than data is named.
    let mut edited = row.clone();
    edited[18] = "pay 900".to_owned();
    let (column, cell, data) =
        plain_cell_mismatch(&csv::StringRecord::from(edited), &line).unwrap();
    assert_eq!(
        (column, cell.as_str(), data.as_str()),
        ("text", "pay 900", FORMULA)
    );
    // Kinds without a user or text leave the cells empty; an export from before the columns
    // (17 cells) still reads.
    line.data = serde_json::json!({ "node": "greet" });
    let row = line.to_csv_row();
    assert_eq!((row[17].as_str(), row[18].as_str()), ("", ""));
    let old = csv::StringRecord::from(row[..CSV_COLUMNS_WITHOUT_PLAIN].to_vec());
    assert_eq!(EventLine::from_csv_row(&old).unwrap(), line);
}

#[test]
fn hashes_must_be_64_lowercase_hex_digits() {
    let hex = "ab".repeat(32);
    assert_eq!(parse_hash(&hex), Some([0xab; 32]));
    assert_eq!(parse_hash(&hex.to_uppercase()), None);
    assert_eq!(parse_hash(&hex[2..]), None);
    assert_eq!(parse_hash(&format!("{}zz", &hex[2..])), None);
}

#[test]
fn kind_data_holds_the_fields_by_name() {
    let data = crate::events::schema::EventKind::StateSet {
        key: "name".into(),
        value: HOSTILE.into(),
    }
    .data_json();
    assert_eq!(data, serde_json::json!({ "key": "name", "value": HOSTILE }));
}

#[test]
fn shortened_values_escape_control_characters() {
    let shown = shorten(HOSTILE);
    assert!(
        !shown.contains('\n') && !shown.contains('\u{1b}'),
        "{shown}"
    );
    assert!(shorten(&"x".repeat(200)).chars().count() < 90);
}

#[test]
fn a_jsonl_line_written_in_place_is_the_event_lines_json_byte_for_byte() {
    // Every kind, with hostile text (quotes, control characters, formula starts, non-ASCII) in
    // every string the data object holds, at times in and past the ISO range.
    let mut kinds = crate::fuzzing::sample_kinds();
    kinds.push(EventKind::ReplySent {
        node: HOSTILE.into(),
        text: format!("{FORMULA}\"\\\u{1}\n\u{2028}ü"),
    });
    let mut buffers = LineBuffers::default();
    for (i, kind) in kinds.into_iter().enumerate() {
        let mut stored = stored();
        stored.event.kind = kind;
        stored.event.at_ms = [0, 1_700_000_000_123, u64::MAX][i % 3];
        stored.prev_hash = [u8::try_from(i).unwrap(); 32];
        let body = encode_body(&stored.event);
        stored.hash = chain_hash(&stored.prev_hash, &body);
        let mut expected = serde_json::to_vec(&EventLine::new(&stored, Some(&body))).unwrap();
        expected.push(b'\n');
        let v = crate::events::schema::SCHEMA_VERSION_PLAIN;
        let line = write_jsonl_line(&mut buffers, &stored, &body, v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&expected)
        );
        // An erased event's line: the same in place as built, with `"erased":true` in data.
        stored.erased = true;
        let mut expected = serde_json::to_vec(&EventLine::new(&stored, Some(&body))).unwrap();
        expected.push(b'\n');
        let line = write_jsonl_line(&mut buffers, &stored, &body, v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&expected)
        );
        assert!(String::from_utf8_lossy(&expected).contains("\"erased\":true"));
    }
}
