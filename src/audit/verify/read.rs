//! Reading an export file for `verify`: JSONL lines and CSV records one at a time, each at most
//! [`LINE_BYTES_MAX`], and the manifest from the trailer line or the sidecar file (at most
//! [`MANIFEST_BYTES_MAX`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use super::super::record::{
    plain_cell_mismatch, shorten, EventLine, Manifest, CSV_COLUMNS, CSV_COLUMNS_WITHOUT_PLAIN,
    TYPE_EVENT, TYPE_MANIFEST,
};
use super::super::AuditError;
use super::{LINE_BYTES_MAX, MANIFEST_BYTES_MAX};

pub(super) fn is_jsonl(path: &Path) -> std::io::Result<bool> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "json" | "ndjson") => return Ok(true),
        Some("csv") => return Ok(false),
        _ => {}
    }
    let mut first = [0u8; 1];
    let n = File::open(path)?.read(&mut first)?;
    Ok(n == 0 || first[0] == b'{')
}

/// Reads a sidecar manifest. `Ok(Err(_))` when it exists but is not a manifest.
pub(super) fn read_sidecar(path: &Path) -> Result<Result<Manifest, String>, AuditError> {
    let read_err = |e| AuditError::io(format!("reading {}", path.display()), e);
    let mut text = Vec::new();
    File::open(path)
        .map_err(read_err)?
        .take(u64::try_from(MANIFEST_BYTES_MAX).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    if text.len() > MANIFEST_BYTES_MAX {
        return Ok(Err(format!(
            "longer than {MANIFEST_BYTES_MAX} bytes: not a manifest"
        )));
    }
    Ok(serde_json::from_slice::<Manifest>(&text)
        .map_err(|e| format!("not a valid manifest: {e}"))
        .and_then(|m| {
            if m.record_type == TYPE_MANIFEST {
                Ok(m)
            } else {
                Err(format!("type is {}, not manifest", shorten(&m.record_type)))
            }
        }))
}

/// The manifest on the last line of a JSONL file, if that line is one. Reads only the tail.
pub(super) fn read_trailer(path: &Path) -> std::io::Result<Option<Manifest>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let window = u64::try_from(MANIFEST_BYTES_MAX).unwrap_or(u64::MAX) + 2;
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        // A manifest line always ends with a newline; without it the file was cut.
        return Ok(None);
    };
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        // The whole window is one line: the file is that line, or its last line is too long.
        None if start == 0 => body,
        None => return Ok(None),
    };
    Ok(serde_json::from_slice::<Manifest>(last)
        .ok()
        .filter(|m| m.record_type == TYPE_MANIFEST))
}

/// One line or record of an export, as read.
pub(super) enum Entry {
    Event(Box<EventLine>),
    Manifest(Box<Manifest>),
    /// Not a record of the format; the text says why.
    Bad(String),
    /// A CSV row whose plain `user` or `text` cell differs from its `data`.
    Edited {
        /// The row's `tenant_seq` as written.
        tenant_seq: u64,
        /// Which cell, and what it and `data` say.
        detail: String,
    },
    /// The file could not be read further.
    Unreadable(std::io::Error),
}

/// JSONL lines, each at most [`LINE_BYTES_MAX`].
pub(super) struct JsonlItems<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlItems<R> {
    pub(super) fn new(reader: R) -> JsonlItems<R> {
        JsonlItems {
            reader,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn parse(text: &[u8]) -> Entry {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            record_type: String,
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return Entry::Bad("not UTF-8".to_owned());
        };
        if text.trim().is_empty() {
            return Entry::Bad("empty line".to_owned());
        }
        let tag: Tag = match serde_json::from_str(text) {
            Ok(tag) => tag,
            Err(e) => {
                let hint = if text.contains("\"manifest\"") {
                    " (a truncated or edited manifest?)"
                } else {
                    ""
                };
                return Entry::Bad(format!("not a JSON record with a type: {e}{hint}"));
            }
        };
        match tag.record_type.as_str() {
            TYPE_EVENT => match serde_json::from_str(text) {
                Ok(line) => Entry::Event(Box::new(line)),
                Err(e) => Entry::Bad(format!("not a valid event record: {e}")),
            },
            TYPE_MANIFEST => match serde_json::from_str(text) {
                Ok(m) => Entry::Manifest(Box::new(m)),
                Err(e) => Entry::Bad(format!("not a valid manifest: {e}")),
            },
            other => Entry::Bad(format!("unknown record type {}", shorten(other))),
        }
    }
}

impl<R: BufRead> Iterator for JsonlItems<R> {
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf);
        match read {
            Err(e) => {
                self.done = true;
                Some((self.line + 1, Entry::Unreadable(e)))
            }
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                let Some(text) = self.buf.strip_suffix(b"\n") else {
                    // No newline: the last line was cut, or a line is longer than the limit
                    // (and we cannot find where the next one starts).
                    self.done = true;
                    let why = if self.buf.len() > LINE_BYTES_MAX {
                        format!("longer than {LINE_BYTES_MAX} bytes")
                    } else {
                        "the file ends inside this line (truncated?)".to_owned()
                    };
                    let entry = match Self::parse(&self.buf) {
                        Entry::Bad(e) => Entry::Bad(format!("{why}; {e}")),
                        _ => Entry::Bad(why),
                    };
                    return Some((self.line, entry));
                };
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                Some((self.line, Self::parse(text)))
            }
        }
    }
}

/// A reader that fails once more than [`LINE_BYTES_MAX`] bytes were read since the last
/// [`RecordLimit::reset`], so one hostile CSV record cannot grow the parser's buffer without
/// bound.
pub(super) struct RecordLimit<R> {
    inner: R,
    read: usize,
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read > LINE_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a CSV record longer than {LINE_BYTES_MAX} bytes"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

/// CSV records after a checked header row.
pub(super) struct CsvItems {
    reader: csv::Reader<RecordLimit<BufReader<File>>>,
    record: csv::StringRecord,
    header_checked: bool,
    done: bool,
}

impl CsvItems {
    pub(super) fn new(file: File) -> CsvItems {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(RecordLimit {
                inner: BufReader::new(file),
                read: 0,
            });
        CsvItems {
            reader,
            record: csv::StringRecord::new(),
            header_checked: false,
            done: false,
        }
    }

    fn csv_error(e: csv::Error) -> Entry {
        match e.kind() {
            csv::ErrorKind::Io(io) if io.kind() != std::io::ErrorKind::InvalidData => {
                Entry::Unreadable(std::io::Error::new(io.kind(), io.to_string()))
            }
            _ => Entry::Bad(e.to_string()),
        }
    }
}

impl Iterator for CsvItems {
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        loop {
            if self.done {
                return None;
            }
            self.reader.get_mut().read = 0;
            // The record's number with the header as 1: its line unless a cell holds a line
            // break (the csv crate's own line count is off with CRLF terminators).
            let line = self.reader.position().record() + 1;
            match self.reader.read_record(&mut self.record) {
                Err(e) => {
                    self.done = true;
                    return Some((line, Self::csv_error(e)));
                }
                Ok(false) => return None,
                Ok(true) => {}
            }
            if !self.header_checked {
                self.header_checked = true;
                let current = self.record.iter().eq(CSV_COLUMNS);
                let before_plain = self
                    .record
                    .iter()
                    .eq(CSV_COLUMNS[..CSV_COLUMNS_WITHOUT_PLAIN].iter().copied());
                if !current && !before_plain {
                    self.done = true;
                    return Some((
                        line,
                        Entry::Bad(format!(
                            "the header row is not the tenantry-audit/1 columns ({})",
                            CSV_COLUMNS.join(",")
                        )),
                    ));
                }
                continue;
            }
            let entry = match EventLine::from_csv_row(&self.record) {
                Ok(event) => match plain_cell_mismatch(&self.record, &event) {
                    None => Entry::Event(Box::new(event)),
                    Some((column, cell, data)) => Entry::Edited {
                        tenant_seq: event.tenant_seq,
                        detail: format!(
                            "the {column} cell is {} but data says {}",
                            shorten(&cell),
                            shorten(&data)
                        ),
                    },
                },
                Err(e) => Entry::Bad(e),
            };
            return Some((line, entry));
        }
    }
}
