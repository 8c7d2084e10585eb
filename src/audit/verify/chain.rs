//! An export's lines checked one by one, in the order of [`super`]'s steps 1–5, then against its
//! manifest. The first problem is the verdict.

use super::super::format_time;
use super::super::record::{
    body_version, decode_base64, hash_hex, parse_hash, shorten, EventLine, Manifest,
    ManifestRetention, FORMAT, TYPE_MANIFEST,
};
use super::super::{in_window, AuditError};
use super::anchor::Anchors;
use super::read::Entry;
use super::{problem, Problem, ProblemKind, Summary, Verdict};
use crate::events::codec::{chain_hash, decode_body_with, Hash, Sealing, GENESIS_HASH};
use crate::events::schema::Event;
use crate::events::seal::public_json;

/// Where the manifest of a format lives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Trailer {
    /// The last line (JSONL).
    Expected,
    /// Beside the file (CSV).
    Sidecar,
}

/// Runs the checks over the lines of an export, then the manifest.
pub(super) fn check(
    mut items: impl Iterator<Item = (u64, Entry)>,
    upfront: Option<&Manifest>,
    trailer: Trailer,
    source: String,
    pubkey: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Verdict, AuditError> {
    let mut checker = Checker::new(upfront);
    if let (Some(key), Some(manifest)) = (pubkey, upfront) {
        match Anchors::new(key, manifest) {
            Ok(anchors) => checker.anchors = Some(anchors),
            Err(p) => return Ok(Verdict::Broken(p)),
        }
    }
    let mut found_trailer: Option<(u64, Manifest)> = None;
    let mut last_line = 0;
    while let Some((line, entry)) = items.next() {
        last_line = line;
        if let Some((manifest_line, _)) = &found_trailer {
            return Ok(Verdict::Broken(problem(
                Some(line),
                None,
                ProblemKind::Inserted,
                format!("a line after the manifest (line {manifest_line})"),
            )));
        }
        match entry {
            Entry::Unreadable(e) => return Err(AuditError::io(format!("reading line {line}"), e)),
            Entry::Bad(detail) => {
                return Ok(Verdict::Broken(problem(
                    Some(line),
                    None,
                    ProblemKind::Malformed,
                    detail,
                )))
            }
            Entry::Edited { tenant_seq, detail } => {
                return Ok(Verdict::Broken(problem(
                    Some(line),
                    Some(tenant_seq),
                    ProblemKind::Edited,
                    detail,
                )))
            }
            Entry::Manifest(m) => {
                if trailer != Trailer::Expected {
                    return Ok(Verdict::Broken(problem(
                        Some(line),
                        None,
                        ProblemKind::Malformed,
                        "a manifest inside a CSV export".to_owned(),
                    )));
                }
                found_trailer = Some((line, *m));
            }
            Entry::Event(event) => match checker.event(line, &event) {
                Ok(()) => {}
                Err(Check::Problem(p)) => return Ok(Verdict::Broken(p)),
                Err(Check::Gap {
                    line,
                    found,
                    expected,
                }) => return Ok(Verdict::Broken(classify_gap(items, line, found, expected))),
            },
        }
    }
    let manifest_line = match trailer {
        Trailer::Expected => match found_trailer {
            None => None,
            Some((line, m)) => {
                if upfront != Some(&m) {
                    return Ok(Verdict::Broken(problem(
                        Some(line),
                        None,
                        ProblemKind::ManifestMismatch,
                        "the manifest line differs from the sidecar manifest".to_owned(),
                    )));
                }
                Some(Some(line))
            }
        },
        Trailer::Sidecar => upfront.map(|_| None),
    };
    let (Some(manifest), Some(manifest_line)) = (upfront, manifest_line) else {
        let detail = match trailer {
            Trailer::Expected if last_line == 0 => "the file is empty".to_owned(),
            Trailer::Expected => format!(
                "no manifest after line {last_line}: the export is incomplete (interrupted, \
                 truncated, or its manifest line was removed)"
            ),
            Trailer::Sidecar => "no sidecar manifest (FILE.manifest.json) and no --manifest; \
                                 a CSV export cannot be checked for completeness without it"
                .to_owned(),
        };
        return Ok(Verdict::Broken(problem(
            None,
            None,
            ProblemKind::MissingManifest,
            detail,
        )));
    };
    Ok(conclude(&checker, manifest, manifest_line, source))
}

/// The verdict once every line was read: the manifest's agreement, then its signed heads.
fn conclude(
    checker: &Checker<'_>,
    manifest: &Manifest,
    manifest_line: Option<u64>,
    source: String,
) -> Verdict {
    let finished = checker.finish(manifest, manifest_line).and_then(|()| {
        let last = checker.prev.as_ref().map(|p| p.tenant_seq);
        match &checker.anchors {
            Some(anchors) => anchors.finish(manifest, last),
            None if manifest.heads.is_empty() => Ok("no signed heads".to_owned()),
            None => Ok(format!(
                "{} signed heads not checked (give --pubkey)",
                manifest.heads.len()
            )),
        }
    });
    match finished {
        Ok(anchoring) => Verdict::Intact(Summary {
            source,
            tenant: manifest.tenant.clone(),
            env: manifest.env.clone(),
            team: manifest.team.clone(),
            count: checker.count,
            first_tenant_seq: manifest.first_tenant_seq,
            last_tenant_seq: manifest.last_tenant_seq,
            contiguous: manifest.contiguous,
            head_hash: manifest.head_hash.clone(),
            sessions: None,
            anchoring: Some(anchoring),
            retention: manifest.retention.as_ref().map(ManifestRetention::text),
        }),
        Err(p) => Verdict::Broken(p),
    }
}

/// A line that skipped ahead in a contiguous export: `expected` is missing here. If it comes
/// later the lines were reordered, else deleted. Reads the rest of the file (one line at a time).
fn classify_gap(
    items: impl Iterator<Item = (u64, Entry)>,
    line: u64,
    found: u64,
    expected: u64,
) -> Problem {
    let later = items
        .into_iter()
        .find_map(|(later_line, entry)| match entry {
            Entry::Event(e) if e.tenant_seq == expected => Some(later_line),
            _ => None,
        });
    match later {
        Some(later_line) => problem(
            Some(line),
            Some(found),
            ProblemKind::Reordered,
            format!("tenant_seq {found} comes before tenant_seq {expected} (line {later_line})"),
        ),
        None => problem(
            Some(line),
            Some(found),
            ProblemKind::Deleted,
            format!("tenant_seq {expected} is missing before this line"),
        ),
    }
}

/// Why an event line failed.
enum Check {
    Problem(Problem),
    /// Contiguous export: the line has `found` where `expected` belongs.
    Gap {
        line: u64,
        found: u64,
        expected: u64,
    },
}

impl From<Problem> for Check {
    fn from(p: Problem) -> Check {
        Check::Problem(p)
    }
}

/// The previous event line.
struct Prev {
    line: u64,
    tenant_seq: u64,
    hash: Hash,
}

/// Per-line checks and the state they carry from line to line.
struct Checker<'m> {
    manifest: Option<&'m Manifest>,
    /// Tenant of the first line, when there is no manifest to say.
    first_tenant: Option<String>,
    prev: Option<Prev>,
    count: u64,
    /// With `--pubkey`: the manifest's signed heads.
    anchors: Option<Anchors>,
}

impl<'m> Checker<'m> {
    fn new(manifest: Option<&'m Manifest>) -> Checker<'m> {
        Checker {
            manifest,
            first_tenant: None,
            prev: None,
            count: 0,
            anchors: None,
        }
    }

    /// Checks one event line: its own hash and fields, its scope, then its place after the
    /// previous line.
    fn event(&mut self, line: u64, rec: &EventLine) -> Result<(), Check> {
        let (event, prev_hash, hash) = check_own(rec)
            .map_err(|(kind, detail)| problem(Some(line), Some(rec.tenant_seq), kind, detail))?;
        // From here on, only the hashed body's values are used.
        let seq = event.tenant_seq;
        let at = |(kind, detail)| problem(Some(line), Some(seq), kind, detail);
        self.check_scope(&event).map_err(at)?;
        match &self.prev {
            None => self.check_first(line, seq, &prev_hash)?,
            Some(prev) => self.check_next(prev, line, seq, &prev_hash)?,
        }
        if let Some(anchors) = &mut self.anchors {
            anchors.event(line, seq, &hash)?;
        }
        self.prev = Some(Prev {
            line,
            tenant_seq: seq,
            hash,
        });
        self.count += 1;
        Ok(())
    }

    /// The first event line: where the manifest says the export starts, on its anchor.
    fn check_first(&self, line: u64, seq: u64, prev_hash: &Hash) -> Result<(), Check> {
        let at = |kind, detail: String| problem(Some(line), Some(seq), kind, detail).into();
        if let Some(m) = self.manifest {
            match m.first_tenant_seq {
                Some(first) if seq > first && m.contiguous => {
                    return Err(Check::Gap {
                        line,
                        found: seq,
                        expected: first,
                    })
                }
                Some(first) if seq != first => {
                    let kind = if seq > first {
                        ProblemKind::Deleted
                    } else {
                        ProblemKind::Inserted
                    };
                    let detail =
                        format!("the manifest says the export starts at tenant_seq {first}");
                    return Err(at(kind, detail));
                }
                Some(_) => {}
                None => {
                    let detail = "the manifest says the export is empty".to_owned();
                    return Err(at(ProblemKind::Inserted, detail));
                }
            }
            if m.first_prev_hash.as_deref() != Some(hash_hex(prev_hash).as_str()) {
                let detail = "prev_hash differs from the manifest's first_prev_hash".to_owned();
                return Err(at(ProblemKind::BrokenChain, detail));
            }
            if let Some(r) = &m.retention {
                check_retention(r, seq, prev_hash).map_err(|(kind, detail)| at(kind, detail))?;
            }
        }
        if seq == 1 && *prev_hash != GENESIS_HASH {
            let detail = "tenant_seq 1 must chain from the genesis hash (32 zero bytes)".to_owned();
            return Err(at(ProblemKind::BrokenChain, detail));
        }
        Ok(())
    }

    /// A later event line: the next `tenant_seq` (contiguous) or a later one (filtered), linked
    /// to the previous line whenever it is the next.
    fn check_next(&self, prev: &Prev, line: u64, seq: u64, prev_hash: &Hash) -> Result<(), Check> {
        let at = |kind, detail: String| problem(Some(line), Some(seq), kind, detail).into();
        let contiguous = self.manifest.is_some_and(|m| m.contiguous);
        if seq == prev.tenant_seq + 1 {
            if *prev_hash != prev.hash {
                let detail = format!(
                    "prev_hash is not the hash of tenant_seq {} (line {})",
                    prev.tenant_seq, prev.line
                );
                return Err(at(ProblemKind::BrokenChain, detail));
            }
        } else if seq == prev.tenant_seq {
            let detail = format!("repeats tenant_seq {seq} of line {}", prev.line);
            return Err(at(ProblemKind::Inserted, detail));
        } else if seq < prev.tenant_seq {
            return Err(if contiguous {
                let detail = format!("tenant_seq {seq} already appeared (a copied line?)");
                at(ProblemKind::Inserted, detail)
            } else {
                let detail = format!(
                    "tenant_seq {seq} comes after tenant_seq {} (line {}): reordered or copied",
                    prev.tenant_seq, prev.line
                );
                at(ProblemKind::Reordered, detail)
            });
        } else if contiguous {
            return Err(Check::Gap {
                line,
                found: seq,
                expected: prev.tenant_seq + 1,
            });
        }
        Ok(())
    }

    /// The event belongs to the export: its tenant, env, team and time window.
    fn check_scope(&mut self, event: &Event) -> Result<(), (ProblemKind, String)> {
        let tenant = event.tenant.as_str();
        let expected = match self.manifest {
            Some(m) => m.tenant.as_str(),
            None => self.first_tenant.get_or_insert_with(|| tenant.to_owned()),
        };
        if tenant != expected {
            return Err((
                ProblemKind::ForeignTenant,
                format!("an event of tenant {tenant} in an export of tenant {expected}"),
            ));
        }
        let Some(m) = self.manifest else {
            return Ok(());
        };
        in_filter("env", m.env.as_deref(), event.env.as_str())?;
        in_filter("team", m.team.as_deref(), event.team.as_str())?;
        if !in_window(event.at_ms, m.since, m.until) || event.tenant_seq < m.from_seq {
            return Err((
                ProblemKind::OutsideFilter,
                format!(
                    "at {} / tenant_seq {} is outside the export's since/until/from_seq",
                    format_time(event.at_ms),
                    event.tenant_seq
                ),
            ));
        }
        Ok(())
    }

    /// After the last line: the manifest agrees with what was read.
    fn finish(&self, m: &Manifest, manifest_line: Option<u64>) -> Result<(), Problem> {
        let at = |kind, detail: String| problem(manifest_line, None, kind, detail);
        if m.format != FORMAT || m.record_type != TYPE_MANIFEST {
            return Err(at(
                ProblemKind::ManifestMismatch,
                format!("format {} is not {FORMAT}", shorten(&m.format)),
            ));
        }
        if !m.complete {
            return Err(at(
                ProblemKind::MissingManifest,
                "the manifest says the export is incomplete".to_owned(),
            ));
        }
        if self.count != m.count {
            let kind = if self.count < m.count {
                ProblemKind::Deleted
            } else {
                ProblemKind::Inserted
            };
            return Err(at(
                kind,
                format!(
                    "the file has {} events, the manifest says {}",
                    self.count, m.count
                ),
            ));
        }
        let last = self.prev.as_ref().map(|p| p.tenant_seq);
        if last != m.last_tenant_seq {
            return Err(at(
                ProblemKind::Deleted,
                format!(
                    "the file ends at tenant_seq {}, the manifest says {}",
                    seq_text(last),
                    seq_text(m.last_tenant_seq)
                ),
            ));
        }
        let head = self.prev.as_ref().map(|p| hash_hex(&p.hash));
        if head != m.head_hash {
            return Err(at(
                ProblemKind::BrokenChain,
                "the last event's hash differs from the manifest's head_hash".to_owned(),
            ));
        }
        Ok(())
    }
}

/// An event whose `field` is not the manifest's filter `want` (when it has one) is outside the
/// export.
fn in_filter(field: &str, want: Option<&str>, got: &str) -> Result<(), (ProblemKind, String)> {
    match want {
        Some(want) if want != got => Err((
            ProblemKind::OutsideFilter,
            format!("{field} {got} in an export of {field} {want}"),
        )),
        _ => Ok(()),
    }
}

/// Checks a line on its own: its hash covers its body, and its readable fields say what the
/// body says. Returns the body's event and the line's two hashes.
fn check_own(rec: &EventLine) -> Result<(Event, Hash, Hash), (ProblemKind, String)> {
    let Some(body_text) = &rec.body else {
        return Err((ProblemKind::Malformed, "no body".to_owned()));
    };
    let body = decode_base64(body_text).ok_or_else(|| {
        let detail = "body is not valid base64: it was changed".to_owned();
        (ProblemKind::BadHash, detail)
    })?;
    let prev_hash = parse_hash(&rec.prev_hash).ok_or_else(|| {
        let detail = "prev_hash is not 64 lowercase hex digits".to_owned();
        (ProblemKind::Malformed, detail)
    })?;
    let hash = parse_hash(&rec.hash).ok_or_else(|| {
        let detail = "hash is not 64 lowercase hex digits".to_owned();
        (ProblemKind::Malformed, detail)
    })?;
    if chain_hash(&prev_hash, &body) != hash {
        let detail =
            "hash is not SHA-256(prev_hash || body): the body or the hash was changed".to_owned();
        return Err((ProblemKind::BadHash, detail));
    }
    let decoded = decode_body_with(&body, None).map_err(|e| {
        let detail = format!("the body does not decode although its hash matches (forged): {e}");
        (ProblemKind::Edited, detail)
    })?;
    let sealed = decoded.sealing != Sealing::Plain;
    let event = decoded.event;
    compare_fields(rec, &event, &body, sealed).map_err(|detail| (ProblemKind::Edited, detail))?;
    Ok((event, prev_hash, hash))
}

fn seq_text(seq: Option<u64>) -> String {
    seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// Compares every readable field of `rec` with the hashed body. `Err` names the first that
/// differs.
/// `sealed`: the body's personal fields are sealed, so only its non-personal data fields are
/// compared (a verifier holds no keys; the AEAD tag binds the sealed part to the event).
fn compare_fields(rec: &EventLine, event: &Event, body: &[u8], sealed: bool) -> Result<(), String> {
    let text_fields: [(&str, &str, String); 8] = [
        ("tenant", &rec.tenant, event.tenant.to_string()),
        ("env", &rec.env, event.env.to_string()),
        ("team", &rec.team, event.team.to_string()),
        ("channel", &rec.channel, event.channel.to_string()),
        ("session", &rec.session, event.session.to_string()),
        ("id", &rec.id, event.id.to_string()),
        ("at_iso", &rec.at_iso, format_time(event.at_ms)),
        ("kind", &rec.kind, event.kind.name().to_owned()),
    ];
    let number_fields = [
        ("seq", rec.seq, event.seq),
        ("tenant_seq", rec.tenant_seq, event.tenant_seq),
        ("at", rec.at, event.at_ms),
    ];
    for (name, visible, signed) in number_fields {
        if visible != signed {
            return Err(differs(name, &visible.to_string(), &signed.to_string()));
        }
    }
    for (name, visible, signed) in &text_fields {
        if *visible != signed.as_str() {
            return Err(differs(name, visible, signed));
        }
    }
    let (visible, data) = match sealed {
        false => (rec.data.clone(), event.kind.data_json()),
        true => {
            let kind = event.kind.name();
            let data = public_json(kind, &event.kind.data_json());
            (public_json(kind, &rec.data), data)
        }
    };
    if visible != data {
        return Err(differs("data", &visible.to_string(), &data.to_string()));
    }
    if let Some(v) = body_version(body) {
        if rec.v != v {
            return Err(differs("v", &rec.v.to_string(), &v.to_string()));
        }
    }
    Ok(())
}

fn differs(field: &str, visible: &str, signed: &str) -> String {
    format!(
        "field {field} is {} but the hashed body says {}",
        shorten(visible),
        shorten(signed)
    )
}

/// The first event of an export made after a trim: never before the log's anchor, and linked to
/// the anchor's hash when it is the first kept event.
fn check_retention(
    r: &ManifestRetention,
    seq: u64,
    prev_hash: &Hash,
) -> Result<(), (ProblemKind, String)> {
    if seq < r.first_tenant_seq {
        let detail = format!(
            "the manifest says tenant_seqs before {} were trimmed",
            r.first_tenant_seq
        );
        return Err((ProblemKind::Inserted, detail));
    }
    if seq == r.first_tenant_seq && hash_hex(prev_hash) != r.prev_hash {
        let detail = "prev_hash differs from the manifest's retention anchor".to_owned();
        return Err((ProblemKind::BrokenChain, detail));
    }
    Ok(())
}
