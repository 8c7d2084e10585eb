//! Which backend a log directory belongs to, kept in the file `backend` beside sled's files:
//! `sled`, or `jetstream {stream}` for a node's cache of that stream.
//!
//! A directory written by one backend is never opened by the other: the JetStream backend
//! removes cached tenants the stream does not have, so opening a sled log with it would delete
//! that log, and a cache opened as a sled log would take appends the stream never sees. A
//! directory without the file is a sled log (written before the file existed) unless it is
//! empty.

use std::path::Path;

use super::replica::Replica;
use super::OpenError;

/// The file naming the backend.
pub const BACKEND_FILE: &str = "backend";

fn marker(replica: Option<&Replica>) -> String {
    match replica {
        None => "sled".to_owned(),
        Some(r) => format!("jetstream {}", r.stream_name()),
    }
}

/// Checks (and, for a new directory, writes) the backend file.
pub(super) fn check(
    dir: &Path,
    tree: &sled::Tree,
    replica: Option<&Replica>,
) -> Result<(), OpenError> {
    let path = dir.join(BACKEND_FILE);
    let wanted = marker(replica);
    let error = |detail: String| OpenError::Backend {
        path: dir.to_owned(),
        detail,
    };
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(error(format!("reading {}: {e}", path.display()))),
    };
    match found {
        Some(found) if found == wanted => Ok(()),
        Some(found) if found == "sled" => Err(error(format!(
            "it holds a sled log, but the config says {wanted}; copy it into the stream with \
             `tenantry migrate --to jetstream`, or point data_dir at an empty directory"
        ))),
        Some(found) => Err(error(format!(
            "it is a cache of the stream of `{found}`, but the config says {wanted}; use that \
             backend, or point data_dir at an empty directory"
        ))),
        None if replica.is_some() && !tree.is_empty() => Err(error(format!(
            "it holds a sled log, but the config says {wanted}; copy it into the stream with \
             `tenantry migrate --to jetstream`, or point data_dir at an empty directory"
        ))),
        None => crate::private_fs::write_private(&path, wanted.as_bytes())
            .map_err(|e| error(format!("writing {}: {e}", path.display()))),
    }
}
