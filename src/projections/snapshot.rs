//! CBOR snapshots of session state, one file per session, so a restart need not replay a
//! session's whole log.
//!
//! A snapshot lives at `{root}/{tenant}/{env}/{team}/{session}.cbor` and is one CBOR data item
//! that any standard decoder can read: a map with these entries, in this order:
//!
//! ```text
//! "v"         uint  FORMAT_VERSION
//! "tenant"    text  } the session the snapshot belongs to; reading under another
//! "env"       text  } key is refused, so a file copied or moved to another tenant's
//! "team"      text  } directory never leaks into that tenant's state
//! "session"   text  }
//! "seq"       uint  last event seq the state covers
//! "state_len" uint  byte length of the encoded state
//! "crc32c"    uint  CRC32C of every byte before the "crc32c" key, then the encoded state
//! "state"     any   the state, encoded by ciborium from `T: Serialize`
//! ```
//!
//! The state is encoded first and appended raw, so it is exactly the file's last `state_len`
//! bytes; the reader checks its CRC before handing it to `T`'s decoder.
//!
//! Snapshots are an optimisation: the log is the source of truth. Every way a snapshot can be
//! unusable (missing, truncated, bit-flipped, too large, of another session) is a typed error, and
//! the caller rebuilds from the log.
//!
//! Invariants:
//! - A file is replaced atomically (temp file, fsync, rename, fsync dir): a reader sees the old
//!   snapshot or the new one, never a mix.
//! - Nothing is read or allocated in proportion to a length taken from the file before that
//!   length is checked against [`SNAPSHOT_BYTES_MAX`]; decoding nests at most
//!   [`STATE_DEPTH_MAX`] levels.
//! - Directories are created 0700 and files 0600 (`private_fs`): no other user reads a state.
//! - Paths are built only from validated ids, which cannot contain `/`, `.` or `..`, so every
//!   path stays under the root.
//!
//! The CRC covers the header entries before it as well as the state: a flipped bit inside
//! `seq`'s value still decodes to a canonical uint, and only the CRC can catch that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::private_fs::{DIR_MODE, FILE_MODE};
use crate::tenancy::{EnvId, SessionId, TeamId, TenantId};

/// The `"v"` written in every snapshot; a reader refuses any other.
pub const FORMAT_VERSION: u64 = 1;
/// Largest snapshot file, in bytes. Checked before a file is read and before one is written, so
/// that a snapshot the reader would refuse is never written.
pub const SNAPSHOT_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Deepest CBOR nesting accepted in a state. ciborium's default (256) can overflow a thread's
/// stack in debug builds, and session state is shallow.
pub const STATE_DEPTH_MAX: usize = 32;
/// The file name extension of a snapshot.
pub const SNAPSHOT_EXTENSION: &str = "cbor";

/// The map keys, in the order they are written. `"state"` must stay last: the state is appended
/// raw after it.
const KEYS: [&str; KEYS_LEN as usize] = [
    "v",
    "tenant",
    "env",
    "team",
    "session",
    "seq",
    "state_len",
    "crc32c",
    "state",
];
const KEYS_LEN: u8 = 9;
// The map header is written as one byte (major type 5, count in the low 5 bits), which holds
// counts up to 23 only.
const _: () = assert!(KEYS_LEN < 24);
const MAP_HEADER: u8 = 0xa0 | KEYS_LEN;

/// Tells concurrent writers' temp files apart within one process (the pid does across processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why a snapshot could not be read, written or removed. On any of them the caller counts it,
/// logs it once and carries on from the event log; none of them loses data.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The filesystem failed (permissions, disk full, I/O error). On read, rebuild from the log;
    /// on write, skip this snapshot (the previous file, if any, is intact) and alert if it
    /// persists.
    #[error("snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file, or the snapshot being written, exceeds [`SNAPSHOT_BYTES_MAX`]. On read, rebuild
    /// from the log; on write, the state is too big to snapshot: keep relying on the log, and
    /// look at why the state grew so large.
    #[error("snapshot {path} is {len} bytes, over the limit of {SNAPSHOT_BYTES_MAX}")]
    TooLarge { path: PathBuf, len: u64 },
    /// The file is not a valid snapshot: truncated, damaged, not in our layout, or its state no
    /// longer decodes as the requested type. Rebuild from the log; the next write replaces it.
    #[error("snapshot {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// The file was written by a newer (or older, retired) format version. Rebuild from the log;
    /// the next write replaces it in the current version.
    #[error("snapshot {path} has format version {found}, expected {FORMAT_VERSION}")]
    UnsupportedVersion { path: PathBuf, found: u64 },
    /// The file is a valid snapshot of another session (copied or moved by hand, or a bug in path
    /// building). Never use it: rebuild from the log, and log it loudly, because it may be an
    /// attempt to read another tenant's data.
    #[error("snapshot {path} belongs to another session: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    /// The state could not be encoded: a bug in the state type's `Serialize`. Skip the snapshot
    /// and fix the type; retrying will fail the same way.
    #[error("cannot encode the state for snapshot {path}: {detail}")]
    Encode { path: PathBuf, detail: String },
}

/// Which session a snapshot belongs to. Borrowed, so callers need not clone their ids.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotKey<'a> {
    pub tenant: &'a TenantId,
    pub env: &'a EnvId,
    pub team: &'a TeamId,
    pub session: &'a SessionId,
}

/// A session's state as of the event with seq `seq`; replay resumes at `seq + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot<T> {
    pub seq: u64,
    pub state: T,
}

/// The snapshot files under one root directory (`{data_dir}/sessions`).
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    root: PathBuf,
}

/// The header entries as decoded from a file; `state` is skipped here (it is decoded as `T` later,
/// after its CRC is checked), but skipping still walks it, within the depth limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    v: u64,
    tenant: String,
    env: String,
    team: String,
    session: String,
    seq: u64,
    state_len: u64,
    crc32c: u32,
    // Only decoded to check that the map is well formed.
    #[serde(rename = "state")]
    _state: IgnoredAny,
}

impl SnapshotStore {
    /// A store rooted at `root`; nothing is created until the first write.
    pub fn new(root: PathBuf) -> SnapshotStore {
        SnapshotStore { root }
    }

    /// Where `key`'s snapshot lives: `{root}/{tenant}/{env}/{team}/{session}.cbor`.
    pub fn path(&self, key: &SnapshotKey) -> PathBuf {
        self.dir(key)
            .join(format!("{}.{SNAPSHOT_EXTENSION}", key.session))
    }

    fn dir(&self, key: &SnapshotKey) -> PathBuf {
        self.root
            .join(key.tenant.as_str())
            .join(key.env.as_str())
            .join(key.team.as_str())
    }

    /// Replaces `key`'s snapshot with `state` as of event `seq`, atomically: a temp file in the
    /// same directory (`.{session}.cbor.tmp-{pid}-{counter}`) is written and fsynced, renamed over
    /// the target, and the directory is fsynced. Creates missing parent directories (fsyncing the
    /// parent of each one created). On error the target holds the previous snapshot (if any) or,
    /// when only the final directory fsync failed, the new one; never a partial file.
    pub fn write<T: Serialize>(
        &self,
        key: &SnapshotKey,
        seq: u64,
        state: &T,
    ) -> Result<(), SnapshotError> {
        self.write_as(key, seq, state, Durability::Synced)
    }

    /// [`write`](Self::write) with the fsyncs `sync` asks for ([`Durability`]).
    pub fn write_as<T: Serialize>(
        &self,
        key: &SnapshotKey,
        seq: u64,
        state: &T,
        sync: Durability,
    ) -> Result<(), SnapshotError> {
        #[cfg(test)]
        hold::wait(key.session.as_str());
        let path = self.path(key);
        let bytes = encode(key, seq, state).map_err(|e| e.at(&path))?;
        let dir = self.dir(key);
        create_dirs(&dir)?;

        let temp = dir.join(format!(
            ".{}.{SNAPSHOT_EXTENSION}.tmp-{}-{}",
            key.session,
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_new(&temp, &bytes, sync).and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            // Best effort: the temp file is garbage either way, and the original error is the one
            // worth reporting.
            let _ = fs::remove_file(&temp);
            return Err(io_error(&path, e));
        }
        match sync {
            Durability::Synced => sync_dir(&dir),
            Durability::Unsynced => Ok(()),
        }
    }

    /// Reads `key`'s snapshot. `Ok(None)` when there is none; `Err` when there is one but it
    /// cannot be used (see [`SnapshotError`]).
    pub fn read<T: DeserializeOwned>(
        &self,
        key: &SnapshotKey,
    ) -> Result<Option<Snapshot<T>>, SnapshotError> {
        let path = self.path(key);
        let bytes = match read_limited(&path) {
            Ok(bytes) => bytes,
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(ReadError::Io(e)) => return Err(io_error(&path, e)),
            Err(ReadError::TooLarge(len)) => return Err(SnapshotError::TooLarge { path, len }),
        };
        decode(key, &bytes).map(Some).map_err(|e| e.at(&path))
    }

    /// Checks and decodes `bytes` as `key`'s snapshot file, exactly as [`SnapshotStore::read`]
    /// does after reading it (errors name the file's path). For tools and fuzzing that hold the
    /// bytes already.
    pub fn decode<T: DeserializeOwned>(
        &self,
        key: &SnapshotKey,
        bytes: &[u8],
    ) -> Result<Snapshot<T>, SnapshotError> {
        decode(key, bytes).map_err(|e| e.at(&self.path(key)))
    }

    /// The bytes [`SnapshotStore::write`] would write for `state` as of `seq`.
    pub fn encode<T: Serialize>(
        &self,
        key: &SnapshotKey,
        seq: u64,
        state: &T,
    ) -> Result<Vec<u8>, SnapshotError> {
        encode(key, seq, state).map_err(|e| e.at(&self.path(key)))
    }

    /// Deletes `key`'s snapshot; a missing one is fine. The deletion is made durable, so a crash
    /// cannot bring back a snapshot the caller meant to invalidate.
    pub fn remove(&self, key: &SnapshotKey) -> Result<(), SnapshotError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir(key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// The sessions of `tenant` that have a snapshot file, as `(env, team, session)`, sorted.
    /// Entries whose names are not valid ids (temp files, stray files) are skipped: no path is
    /// built from them.
    pub fn list_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(EnvId, TeamId, SessionId)>, SnapshotError> {
        let mut out = Vec::new();
        let root = self.root.join(tenant.as_str());
        for (env, env_dir) in sub_dirs(&root, |n| EnvId::parse(n).ok())? {
            for (team, team_dir) in sub_dirs(&env_dir, |n| TeamId::parse(n).ok())? {
                let entries = match fs::read_dir(&team_dir) {
                    Ok(entries) => entries,
                    Err(e) => return Err(io_error(&team_dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error(&team_dir, e))?;
                    let name = entry.file_name();
                    let session = name
                        .to_str()
                        .and_then(|n| n.strip_suffix(&format!(".{SNAPSHOT_EXTENSION}")))
                        .and_then(|n| SessionId::parse(n).ok());
                    if let Some(session) = session {
                        out.push((env.clone(), team.clone(), session));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Like [`SnapshotStore::remove_tenant`], and says what it removed: the tenant's snapshot
    /// files and their bytes (temp files of interrupted writes are removed too, not counted).
    pub fn remove_tenant_counted(&self, tenant: &TenantId) -> Result<(u64, u64), SnapshotError> {
        let dir = self.root.join(tenant.as_str());
        let suffix = format!(".{SNAPSHOT_EXTENSION}");
        let usage = crate::private_fs::tree_usage(&dir, &suffix).map_err(|e| io_error(&dir, e))?;
        self.remove_tenant(tenant)?;
        Ok(usage)
    }

    /// Deletes every snapshot of `tenant` (for rebuilds and offboarding); other tenants' files are
    /// untouched. A tenant without snapshots is fine. Writes for `tenant` that race with this call
    /// may leave files behind: stop the tenant's writers first.
    pub fn remove_tenant(&self, tenant: &TenantId) -> Result<(), SnapshotError> {
        let dir = self.root.join(tenant.as_str());
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&dir, e)),
        }
    }
}

/// A decoding or encoding failure before the path is known; [`Failure::at`] attaches it.
#[derive(Debug)]
enum Failure {
    TooLarge(u64),
    Corrupt(String),
    UnsupportedVersion(u64),
    Mismatch(String),
    Encode(String),
}

impl Failure {
    fn at(self, path: &Path) -> SnapshotError {
        let path = path.to_owned();
        match self {
            Failure::TooLarge(len) => SnapshotError::TooLarge { path, len },
            Failure::Corrupt(detail) => SnapshotError::Corrupt { path, detail },
            Failure::UnsupportedVersion(found) => SnapshotError::UnsupportedVersion { path, found },
            Failure::Mismatch(detail) => SnapshotError::Mismatch { path, detail },
            Failure::Encode(detail) => SnapshotError::Encode { path, detail },
        }
    }
}

/// The whole file for `key`: header entries, then the key `"state"`, then the state bytes raw.
fn encode<T: Serialize>(key: &SnapshotKey, seq: u64, state: &T) -> Result<Vec<u8>, Failure> {
    let mut state_bytes = Vec::new();
    ciborium::into_writer(state, &mut state_bytes).map_err(|e| Failure::Encode(e.to_string()))?;
    let state_len = u64::try_from(state_bytes.len()).map_err(|_| Failure::TooLarge(u64::MAX))?;
    let crc = covered_crc(&encode_head(key, seq, state_len)?, &state_bytes);
    let mut bytes = encode_prefix(key, seq, state_len, crc)?;
    bytes.extend_from_slice(&state_bytes);
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(Failure::TooLarge(
            u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        ));
    }
    Ok(bytes)
}

/// Everything before the state bytes: the map header, the other entries and the key `"state"`.
/// The reader rebuilds this from the decoded values and compares it byte for byte, so it must be
/// deterministic (ciborium writes the shortest form of every uint and text head).
fn encode_prefix(
    key: &SnapshotKey,
    seq: u64,
    state_len: u64,
    crc: u32,
) -> Result<Vec<u8>, Failure> {
    let [.., k_crc, k_state] = KEYS;
    let mut out = encode_head(key, seq, state_len)?;
    put(&mut out, k_crc)?;
    put(&mut out, &crc)?;
    put(&mut out, k_state)?;
    Ok(out)
}

/// The CRC stored in the file: over the head (every byte before the `"crc32c"` key) and then
/// the state bytes.
fn covered_crc(head: &[u8], state_bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), state_bytes)
}

fn put<V: Serialize + ?Sized>(out: &mut Vec<u8>, value: &V) -> Result<(), Failure> {
    // Writing to a Vec cannot fail on I/O; a failure here would be a bug in ciborium.
    ciborium::into_writer(value, out).map_err(|e| Failure::Encode(e.to_string()))
}

/// The map header and the entries from `"v"` through `"state_len"`.
fn encode_head(key: &SnapshotKey, seq: u64, state_len: u64) -> Result<Vec<u8>, Failure> {
    let [k_v, k_tenant, k_env, k_team, k_session, k_seq, k_state_len, ..] = KEYS;
    let mut out = vec![MAP_HEADER];
    put(&mut out, k_v)?;
    put(&mut out, &FORMAT_VERSION)?;
    put(&mut out, k_tenant)?;
    put(&mut out, key.tenant.as_str())?;
    put(&mut out, k_env)?;
    put(&mut out, key.env.as_str())?;
    put(&mut out, k_team)?;
    put(&mut out, key.team.as_str())?;
    put(&mut out, k_session)?;
    put(&mut out, key.session.as_str())?;
    put(&mut out, k_seq)?;
    put(&mut out, &seq)?;
    put(&mut out, k_state_len)?;
    put(&mut out, &state_len)?;
    Ok(out)
}

/// A file in our layout for `key` whose state is `state_bytes` verbatim, with a correct
/// `state_len` and CRC, so that arbitrary state bytes get past the envelope checks to `T`'s
/// decoder. For `crate::fuzzing`.
pub(crate) fn file_with_raw_state(key: &SnapshotKey, seq: u64, state_bytes: &[u8]) -> Vec<u8> {
    let Ok(len) = u64::try_from(state_bytes.len()) else {
        return Vec::new();
    };
    let Ok(head) = encode_head(key, seq, len) else {
        return Vec::new();
    };
    let crc = covered_crc(&head, state_bytes);
    let Ok(mut bytes) = encode_prefix(key, seq, len, crc) else {
        return Vec::new();
    };
    bytes.extend_from_slice(state_bytes);
    bytes
}

/// Checks and decodes a whole file read for `key`. Order matters: the cheap structural checks and
/// the CRC come before `T`'s decoder sees any state byte.
fn decode<T: DeserializeOwned>(key: &SnapshotKey, bytes: &[u8]) -> Result<Snapshot<T>, Failure> {
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(Failure::TooLarge(
            u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        ));
    }
    // One more level than the state may use: the top-level map.
    let header: Header = decode_exact(bytes, STATE_DEPTH_MAX + 1)?;
    if header.v != FORMAT_VERSION {
        return Err(Failure::UnsupportedVersion(header.v));
    }
    for (field, found, expected) in [
        ("tenant", &header.tenant, key.tenant.as_str()),
        ("env", &header.env, key.env.as_str()),
        ("team", &header.team, key.team.as_str()),
        ("session", &header.session, key.session.as_str()),
    ] {
        if found != expected {
            // Debug-format the file's value: it is untrusted and may hold control characters.
            return Err(Failure::Mismatch(format!(
                "{field} is {found:?} in the file, {expected:?} requested"
            )));
        }
    }
    let state_len = usize::try_from(header.state_len)
        .ok()
        .filter(|&len| len <= bytes.len())
        .ok_or_else(|| {
            Failure::Corrupt(format!(
                "state_len {} exceeds the file size {}",
                header.state_len,
                bytes.len()
            ))
        })?;
    let (prefix, state_bytes) = bytes.split_at(bytes.len() - state_len);
    // Proves the layout: keys in order, "state" last, and the state exactly the last state_len
    // bytes (so the CRC below covers precisely what `T` decodes).
    if prefix != encode_prefix(key, header.seq, header.state_len, header.crc32c)? {
        return Err(Failure::Corrupt(
            "header is not in the canonical layout".to_owned(),
        ));
    }
    let crc = covered_crc(
        &encode_head(key, header.seq, header.state_len)?,
        state_bytes,
    );
    if crc != header.crc32c {
        return Err(Failure::Corrupt(format!(
            "state crc32c is {crc:#010x}, header says {:#010x}",
            header.crc32c
        )));
    }
    let state = decode_exact(state_bytes, STATE_DEPTH_MAX)?;
    Ok(Snapshot {
        seq: header.seq,
        state,
    })
}

/// Decodes one CBOR item that must span all of `bytes`, nesting at most `depth_max` levels.
/// ciborium never pre-allocates from a declared length (it reads byte strings and text in
/// scratch-sized chunks, and serde caps `Vec` size hints), so a lying length fails at the end of
/// the input instead of allocating.
fn decode_exact<T: DeserializeOwned>(bytes: &[u8], depth_max: usize) -> Result<T, Failure> {
    let mut rest = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut rest, depth_max)
        .map_err(|e| Failure::Corrupt(describe(e)))?;
    if !rest.is_empty() {
        return Err(Failure::Corrupt(format!(
            "{} trailing bytes after the CBOR item",
            rest.len()
        )));
    }
    Ok(value)
}

/// ciborium's `Display` is its `Debug`; spell the common cases out for operators.
fn describe(e: ciborium::de::Error<io::Error>) -> String {
    match e {
        ciborium::de::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            "truncated".to_owned()
        }
        ciborium::de::Error::Io(e) => format!("read: {e}"),
        ciborium::de::Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), msg) => format!("at byte {offset}: {msg}"),
        ciborium::de::Error::Semantic(None, msg) => msg,
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("state nested deeper than {STATE_DEPTH_MAX} levels")
        }
    }
}

enum ReadError {
    Io(io::Error),
    TooLarge(u64),
}

/// Reads a whole file, refusing (before reading) one larger than [`SNAPSHOT_BYTES_MAX`]. The
/// read itself is capped too, in case the file grows between the size check and the read.
fn read_limited(path: &Path) -> Result<Vec<u8>, ReadError> {
    let limit = u64::try_from(SNAPSHOT_BYTES_MAX).map_err(|_| ReadError::TooLarge(u64::MAX))?;
    let file = File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > limit {
        return Err(ReadError::TooLarge(len));
    }
    // `len <= limit`, so the capacity is bounded; `try_from` cannot fail there.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(ReadError::TooLarge(
            u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        ));
    }
    Ok(bytes)
}

/// Whether a snapshot write forces its file and directory to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Both fsyncs (file, then directory): the snapshot survives a power loss.
    Synced,
    /// Neither: still atomic (a reader sees the old file or the new one, whole), but a crash may
    /// leave the previous snapshot, none, or (on a file system that does not order a rename
    /// after its file's data) a torn file, which `read` refuses and the session then folds from
    /// the log. For the periodic snapshots a session takes every `runtime.snapshot_every`
    /// events: dozens a second on a busy node, each with two fsyncs on the log's disk
    /// (BENCHMARKS.md, "Snapshots without fsync").
    Unsynced,
}

/// Writes `bytes` to a new owner-only file at `path`, fsynced when `sync` says so. `create_new`,
/// so that a stale temp file of a crashed writer that happened to reuse the name is never
/// written through.
fn write_new(path: &Path, bytes: &[u8], sync: Durability) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    match sync {
        Durability::Synced => file.sync_all(),
        Durability::Unsynced => Ok(()),
    }
}

/// Creates `dir` and its missing ancestors (owner only), fsyncing the parent of each directory created so
/// that the new entry survives a power loss.
fn create_dirs(dir: &Path) -> Result<(), SnapshotError> {
    // Walk up to the first ancestor that exists, then create downwards from there.
    let mut missing = Vec::new();
    let mut cursor = dir;
    while !cursor.is_dir() {
        missing.push(cursor);
        match cursor.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cursor = parent,
            _ => break,
        }
    }
    for created in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => {}
            // A concurrent writer created it first. Fsyncing its parent again below is harmless
            // and keeps this writer's guarantee without relying on the other one's.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(created, e)),
        }
        let parent = created
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory, making the entries created, renamed or removed in it durable.
fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// The sub-directories of `dir` whose names `parse` accepts; none when `dir` does not exist.
fn sub_dirs<T>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<(T, PathBuf)>, SnapshotError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let Some(id) = entry.file_name().to_str().and_then(&parse) {
            if is_dir {
                out.push((id, entry.path()));
            }
        }
    }
    Ok(out)
}

fn io_error(path: &Path, source: io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod hold;
#[cfg(test)]
mod tests;
