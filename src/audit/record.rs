//! The audit export format `tenantry-audit/1`: one record per event plus a manifest.
//!
//! An event record has, in this order: `type` (`"event"`), `tenant`, `env`, `team`, `channel`,
//! `session`, `seq`, `tenant_seq`, `id`, `at` (unix ms), `at_iso` (RFC 3339 UTC with ms),
//! `kind`, `data` (the kind's fields as a JSON object), `v` (the body's schema version), `body`
//! (base64, standard alphabet with padding, of the stored MessagePack body), `prev_hash` and
//! `hash` (lowercase hex SHA-256). JSONL writes it as one JSON object per line; CSV writes the
//! same columns with a header row, `data` as compact JSON text.
//!
//! The manifest ([`Manifest`]) says what the export claims to hold: tenant, filters (env, team,
//! time), count, first and last `tenant_seq`, the chain hash before the first event and after the
//! last, and whether the events are the log's contiguous range (no filter but `--from-seq`).
//!
//! CSV and spreadsheets: a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return
//! is a formula to Excel and friends. Text cells (`type`, the ids, `at_iso`, `kind`, `data`)
//! that start with one of those, or with `'`, get one leading `'`, and readers drop one leading
//! `'` from text cells ([`unneutralise`]); the rule is exactly reversible. Numbers, `body` and
//! the hashes are never altered, so they stay verifiable: they are base64 and hex, and in
//! practice a body starts with `j` (a MessagePack map) and `data` with `{`, so hostile text
//! inside them cannot start a cell.
//!
//! Invariant: these types are the export's external contract (like `events::schema` is the
//! disk's): fields are never renamed or reordered; a change is a new `format` string.

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::codec::Hash;
use crate::events::log::StoredEvent;
use crate::events::schema::decode_limited;
use crate::events::schema::{EventKind, SCHEMA_VERSION};

/// The manifest's `format`: names this layout and its version.
pub const FORMAT: &str = "tenantry-audit/1";
/// `type` of an event record.
pub const TYPE_EVENT: &str = "event";
/// `type` of the manifest.
pub const TYPE_MANIFEST: &str = "manifest";

/// CSV columns, in order: the fields of [`EventLine`], then the plain `user` and `text` of the
/// event's data ([`plain_cells`]) for a reader without a JSON parser.
pub const CSV_COLUMNS: [&str; 19] = [
    "type",
    "tenant",
    "env",
    "team",
    "channel",
    "session",
    "seq",
    "tenant_seq",
    "id",
    "at",
    "at_iso",
    "kind",
    "data",
    "v",
    "body",
    "prev_hash",
    "hash",
    "user",
    "text",
];

/// Columns of a CSV export written before `user` and `text` were added (still verified).
pub const CSV_COLUMNS_WITHOUT_PLAIN: usize = 17;

/// Columns of [`CSV_COLUMNS`] that hold free text and are neutralised against formula
/// injection. The others are numbers or verifiable encodings and are written as they are.
const CSV_TEXT_COLUMNS: [&str; 12] = [
    "type", "tenant", "env", "team", "channel", "session", "id", "at_iso", "kind", "data", "user",
    "text",
];

/// First characters that make a spreadsheet evaluate a cell.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One event as exported. Field order is the JSONL key order and the CSV column order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    /// Always [`TYPE_EVENT`].
    #[serde(rename = "type")]
    pub record_type: String,
    /// Tenant id.
    pub tenant: String,
    /// Environment id.
    pub env: String,
    /// Team id.
    pub team: String,
    /// Channel id.
    pub channel: String,
    /// Session id.
    pub session: String,
    /// Position in the session, from 1.
    pub seq: u64,
    /// Position in the tenant's log, from 1.
    pub tenant_seq: u64,
    /// The event's UUID (v7), hyphenated lowercase.
    pub id: String,
    /// Unix time in milliseconds.
    pub at: u64,
    /// `at` as RFC 3339 UTC with milliseconds.
    pub at_iso: String,
    /// The kind's name (`MessageReceived`, `ReplySent`, ...).
    pub kind: String,
    /// The kind's fields as a JSON object.
    pub data: Value,
    /// Schema version of the body.
    pub v: u16,
    /// Base64 (standard, padded) of the stored body. Absent only in replay output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Chain hash before this event, lowercase hex.
    pub prev_hash: String,
    /// Chain hash after this event, lowercase hex.
    pub hash: String,
}

impl EventLine {
    /// The record of `stored`, carrying `body` (its stored bytes) when given.
    pub fn new(stored: &StoredEvent, body: Option<&[u8]>) -> EventLine {
        let e = &stored.event;
        EventLine {
            record_type: TYPE_EVENT.to_owned(),
            tenant: e.tenant.to_string(),
            env: e.env.to_string(),
            team: e.team.to_string(),
            channel: e.channel.to_string(),
            session: e.session.to_string(),
            seq: e.seq,
            tenant_seq: e.tenant_seq,
            id: e.id.to_string(),
            at: e.at_ms,
            at_iso: super::format_time(e.at_ms),
            kind: e.kind.name().to_owned(),
            data: stored.data_json(),
            v: body.and_then(body_version).unwrap_or(SCHEMA_VERSION),
            body: body.map(encode_base64),
            prev_hash: hash_hex(&stored.prev_hash),
            hash: hash_hex(&stored.hash),
        }
    }

    /// The record as CSV cells, in [`CSV_COLUMNS`] order, text cells neutralised.
    pub fn to_csv_row(&self) -> Vec<String> {
        let (user, text) = plain_cells(&self.data);
        let cells = [
            self.record_type.clone(),
            self.tenant.clone(),
            self.env.clone(),
            self.team.clone(),
            self.channel.clone(),
            self.session.clone(),
            self.seq.to_string(),
            self.tenant_seq.to_string(),
            self.id.clone(),
            self.at.to_string(),
            self.at_iso.clone(),
            self.kind.clone(),
            self.data.to_string(),
            self.v.to_string(),
            self.body.clone().unwrap_or_default(),
            self.prev_hash.clone(),
            self.hash.clone(),
            user,
            text,
        ];
        CSV_COLUMNS
            .iter()
            .zip(cells)
            .map(|(column, cell)| {
                if CSV_TEXT_COLUMNS.contains(column) {
                    neutralise(&cell).into_owned()
                } else {
                    cell
                }
            })
            .collect()
    }

    /// Reads a CSV row written by [`EventLine::to_csv_row`] (or by a build before the `user`
    /// and `text` columns). The error says which cell is wrong.
    pub fn from_csv_row(row: &csv::StringRecord) -> Result<EventLine, String> {
        if row.len() != CSV_COLUMNS.len() && row.len() != CSV_COLUMNS_WITHOUT_PLAIN {
            return Err(format!(
                "expected {} cells, found {}",
                CSV_COLUMNS.len(),
                row.len()
            ));
        }
        let text = |i: usize| unneutralise(row.get(i).unwrap_or_default()).to_owned();
        let number = |i: usize| -> Result<u64, String> {
            let cell = row.get(i).unwrap_or_default();
            cell.parse()
                .map_err(|_| format!("{} is not a number: {}", CSV_COLUMNS[i], shorten(cell)))
        };
        let data_text = text(12);
        let data = serde_json::from_str(&data_text)
            .map_err(|e| format!("data is not JSON: {e}: {}", shorten(&data_text)))?;
        let v = number(13)?;
        Ok(EventLine {
            record_type: text(0),
            tenant: text(1),
            env: text(2),
            team: text(3),
            channel: text(4),
            session: text(5),
            seq: number(6)?,
            tenant_seq: number(7)?,
            id: text(8),
            at: number(9)?,
            at_iso: text(10),
            kind: text(11),
            data,
            v: u16::try_from(v).map_err(|_| format!("v {v} is out of range"))?,
            body: Some(row.get(14).unwrap_or_default().to_owned()),
            prev_hash: row.get(15).unwrap_or_default().to_owned(),
            hash: row.get(16).unwrap_or_default().to_owned(),
        })
    }
}

/// The plain `user` and `text` cells of an event whose data is `data`: its `user` field
/// (`SessionStarted`, `MessageReceived`) and its `text` field (`MessageReceived`, `ReplySent`),
/// each empty when the kind has none.
pub fn plain_cells(data: &Value) -> (String, String) {
    let field = |name: &str| {
        data.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("user"), field("text"))
}

/// For a CSV row with the `user` and `text` columns, which of them (if any) differs from what
/// `line`'s data says: `Some((column, cell, data's value))`.
pub fn plain_cell_mismatch(
    row: &csv::StringRecord,
    line: &EventLine,
) -> Option<(&'static str, String, String)> {
    if row.len() != CSV_COLUMNS.len() {
        return None;
    }
    let (user, text) = plain_cells(&line.data);
    [("user", 17, user), ("text", 18, text)]
        .into_iter()
        .find_map(|(column, i, want)| {
            let cell = unneutralise(row.get(i).unwrap_or_default());
            (cell != want).then(|| (column, cell.to_owned(), want))
        })
}

/// [`EventKind::data_json`] without building it: the same keys, in the order its JSON object
/// writes them (serde_json's map is sorted by key).
struct DataRef<'a>(&'a EventKind);

impl Serialize for DataRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn map<S: serde::Serializer>(s: S, entries: &[(&str, &str)]) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(entries.len()))?;
            for (k, v) in entries {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
        match self.0 {
            EventKind::SessionStarted {
                user,
                flow,
                flow_version,
            } => map(
                s,
                &[
                    ("flow", flow),
                    ("flow_version", flow_version),
                    ("user", user),
                ],
            ),
            EventKind::MessageReceived {
                message_id,
                user,
                text,
            } => map(
                s,
                &[("message_id", message_id), ("text", text), ("user", user)],
            ),
            EventKind::NodeEntered { node } => map(s, &[("node", node)]),
            EventKind::ReplySent { node, text } => map(s, &[("node", node), ("text", text)]),
            EventKind::StateSet { key, value } => map(s, &[("key", key), ("value", value)]),
            EventKind::AwaitingInput { node, key } => map(s, &[("key", key), ("node", node)]),
            EventKind::FlowFailed { node, error } => map(s, &[("error", error), ("node", node)]),
            EventKind::SessionEnded { reason } => map(s, &[("reason", reason)]),
            // Not all strings: the JSON object itself (its keys are sorted the same way).
            EventKind::ConnectorRegistered { .. }
            | EventKind::ConnectorStateChanged { .. }
            | EventKind::OutboxAcked { .. }
            | EventKind::OutboxDeadLettered { .. } => self.0.data_json().serialize(s),
        }
    }
}

/// Reused buffers for [`write_jsonl_line`], so that a line costs no allocation but its time.
#[derive(Default)]
pub struct LineBuffers {
    line: Vec<u8>,
    base64: String,
}

/// The JSONL line (with its `\n`) of `stored`, whose stored body is `body` with schema version
/// `v`: byte for byte the serialization of `EventLine::new(stored, Some(body))`. The returned
/// bytes live in `buffers` until the next call.
///
/// Only `data` (the kind's fields: user text) goes through serde_json. Every other value is
/// written between quotes as it is: ids (their rules allow `[A-Za-z0-9_-]` only), the UUID, the
/// RFC 3339 time, the kind's name, base64 and hex never hold a character JSON escapes, and
/// checking that again for each of them was most of the cost of a line.
pub fn write_jsonl_line<'b>(
    buffers: &'b mut LineBuffers,
    stored: &StoredEvent,
    body: &[u8],
    v: u16,
) -> Result<&'b [u8], serde_json::Error> {
    use std::io::Write;
    let e = &stored.event;
    let mut id = uuid::Uuid::encode_buffer();
    let (mut prev_hash, mut hash) = ([0; 64], [0; 64]);
    buffers.base64.clear();
    base64::engine::general_purpose::STANDARD.encode_string(body, &mut buffers.base64);
    let out = &mut buffers.line;
    out.clear();
    let text = |out: &mut Vec<u8>, key: &str, value: &str| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    };
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(TYPE_EVENT.as_bytes());
    out.push(b'"');
    text(out, "tenant", e.tenant.as_str());
    text(out, "env", e.env.as_str());
    text(out, "team", e.team.as_str());
    text(out, "channel", e.channel.as_str());
    text(out, "session", e.session.as_str());
    // Writing into a Vec cannot fail.
    let _ = write!(out, ",\"seq\":{},\"tenant_seq\":{}", e.seq, e.tenant_seq);
    text(out, "id", e.id.hyphenated().encode_lower(&mut id));
    let _ = write!(out, ",\"at\":{}", e.at_ms);
    text(out, "at_iso", &super::format_time(e.at_ms));
    text(out, "kind", e.kind.name());
    out.extend_from_slice(b",\"data\":");
    if stored.erased {
        serde_json::to_writer(&mut *out, &stored.data_json())?;
    } else {
        serde_json::to_writer(&mut *out, &DataRef(&e.kind))?;
    }
    let _ = write!(out, ",\"v\":{v}");
    text(out, "body", &buffers.base64);
    text(
        out,
        "prev_hash",
        hex_into(&stored.prev_hash, &mut prev_hash),
    );
    text(out, "hash", hex_into(&stored.hash, &mut hash));
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Lowercase hex of `hash` in `buf`.
fn hex_into<'b>(hash: &Hash, buf: &'b mut [u8; 64]) -> &'b str {
    // Both cannot fail: 32 bytes fill 64 hex digits exactly, and hex digits are ASCII.
    let _ = hex::encode_to_slice(hash, buf);
    std::str::from_utf8(buf).unwrap_or_default()
}

/// What an export holds; the last JSONL line, or the CSV sidecar `FILE.manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`TYPE_MANIFEST`].
    #[serde(rename = "type")]
    pub record_type: String,
    /// Always [`FORMAT`].
    pub format: String,
    /// The exported tenant.
    pub tenant: String,
    /// The env filter; `null` for all envs.
    pub env: Option<String>,
    /// Events exported.
    pub count: u64,
    /// `tenant_seq` of the first event; `null` when none.
    pub first_tenant_seq: Option<u64>,
    /// `tenant_seq` of the last event; `null` when none.
    pub last_tenant_seq: Option<u64>,
    /// `prev_hash` of the first event (the chain anchor); `null` when none.
    pub first_prev_hash: Option<String>,
    /// `hash` of the last event; `null` when none.
    pub head_hash: Option<String>,
    /// The export ran to its end. A manifest is only written at the end, so always `true`.
    pub complete: bool,
    /// The events are every event of the tenant from `first_tenant_seq` to `last_tenant_seq`, so
    /// each one's `prev_hash` is the previous one's `hash`. `false` when env, team or time filters
    /// skipped events; then each event is checked on its own.
    pub contiguous: bool,
    /// The `--since` filter (unix ms, inclusive), if any.
    pub since: Option<u64>,
    /// The `--until` filter (unix ms, exclusive), if any.
    pub until: Option<u64>,
    /// The first `tenant_seq` considered (`--from-seq`, else 1).
    pub from_seq: u64,
    /// The team filter of a team-scoped export; absent (not `null`) for all teams, so an
    /// unscoped export's manifest is unchanged, and a verifier that does not know the field
    /// refuses a team-scoped one instead of calling it the whole tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Signed chain heads within the export's range (the newest
    /// [`super::anchor::MANIFEST_HEADS_MAX`], ascending), for `verify --pubkey`; absent when
    /// there are none, so a manifest without heads is unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<super::anchor::ManifestHead>,
    /// Where the tenant's log started when it was exported, after a trim by its retention;
    /// absent (not `null`) for a log never trimmed, so such a manifest is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<ManifestRetention>,
}

/// The retention anchor of the exported tenant (docs/audit.md#retention).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRetention {
    /// The first `tenant_seq` the log kept.
    pub first_tenant_seq: u64,
    /// Events trimmed before it (`1..first_tenant_seq`).
    pub trimmed: u64,
    /// `at` of the last trimmed event, RFC 3339 UTC.
    pub trimmed_up_to: String,
    /// `hash` of the last trimmed event: the first kept event's `prev_hash`, lowercase hex.
    pub prev_hash: String,
}

impl ManifestRetention {
    /// The manifest's form of a stored anchor.
    pub fn of(a: &crate::events::log::RetentionAnchor) -> ManifestRetention {
        ManifestRetention {
            first_tenant_seq: a.first_tenant_seq,
            trimmed: a.trimmed,
            trimmed_up_to: super::format_time(a.last_trimmed_at_ms),
            prev_hash: hash_hex(&a.prev_hash),
        }
    }

    /// `anchored: N trimmed up to …, prev hash …`, as verify prints it.
    pub fn text(&self) -> String {
        format!(
            "anchored: {} trimmed up to {}, prev hash {}",
            self.trimmed, self.trimmed_up_to, self.prev_hash
        )
    }
}

/// The schema version `v` recorded in a stored body, if the body has one.
pub fn body_version(body: &[u8]) -> Option<u16> {
    #[derive(Deserialize)]
    struct Version {
        v: u16,
    }
    decode_limited::<Version>(body).ok().map(|b| b.v)
}

/// Lowercase hex of a chain hash.
pub fn hash_hex(hash: &Hash) -> String {
    hex_into(hash, &mut [0; 64]).to_owned()
}

/// Parses a chain hash written by [`hash_hex`]: exactly 64 lowercase hex digits.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let canonical = text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return None;
    }
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// Base64 (standard alphabet, padded) of `bytes`.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`encode_base64`] output.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Prefixes `'` to a text cell a spreadsheet would evaluate (or that starts with `'`, so that
/// [`unneutralise`] is its exact inverse).
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some(c) if FORMULA_TRIGGERS.contains(&c) || c == '\'' => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// Undoes [`neutralise`]: drops one leading `'`.
pub fn unneutralise(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// A value for an error message: at most 80 chars, control characters and quotes escaped, so
/// that hostile input cannot forge output lines or terminal escapes.
pub fn shorten(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 80;
    let mut shown: String = text.chars().take(SHOWN_CHARS_MAX).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests;
