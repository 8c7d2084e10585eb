//! Reading config, seed and flow files: bounded in size, paths resolved against the file that
//! names them.
//!
//! Invariants:
//! - No file is read past its byte limit, so the limit bounds every allocation sized by the file.
//! - A relative path always resolves against the directory of the file that names it (for
//!   `config.toml` itself: the directory it was given in), never against whatever the current
//!   directory happens to be at the time of use.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest `config.toml`, bundle, tenant file or team file, in bytes. Checked while reading,
/// before parsing.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// A file that could not be read within its limit. The config is unusable: report the message
/// (it names the file) and refuse to start; retrying without fixing the file will not help.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is missing, unreadable, a directory, or not UTF-8. Fix the path or the file.
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        /// The path as given or resolved, so the user can find it.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is larger than its limit. Shrink or split it.
    #[error("{}: file is larger than the limit of {max_bytes} bytes; shrink or split it", path.display())]
    TooLarge {
        /// The path as given or resolved.
        path: PathBuf,
        /// The limit that was exceeded.
        max_bytes: u64,
    },
}

/// Reads `path` as UTF-8, failing once more than `max_bytes` bytes have been read.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let io_error = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut text = String::new();
    // Reading one byte past the limit tells "exactly at the limit" from "over it" without
    // trusting metadata, which can lie for pipes, procfs files and files that are still growing.
    file.take(max_bytes.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(io_error)?;
    let len_bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if len_bytes > max_bytes {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            max_bytes,
        });
    }
    Ok(text)
}

/// Resolves `named` as written in the file `naming_file`: absolute paths stay, relative ones are
/// joined to the directory of `naming_file`. `.` components are dropped (so `./flows/a.yaml` and
/// `flows/a.yaml` name the same flow); `..` is kept because removing it lexically is wrong
/// across symlinks.
pub(crate) fn resolve(naming_file: &Path, named: &Path) -> PathBuf {
    let dir = naming_file.parent().unwrap_or_else(|| Path::new(""));
    let joined = dir.join(named);
    let normal: PathBuf = joined.components().collect();
    if normal.as_os_str().is_empty() {
        // Only happens for an empty `named` next to a bare file name; keep it visible in errors.
        return PathBuf::from(".");
    }
    normal
}
