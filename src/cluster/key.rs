//! The cluster key: the 256-bit key that seals the secrets every node of a `[cluster]` shares
//! in the key stream (`crate::events::log::replica::keys`). Every node is given the same one:
//! env `TENANTRY_CLUSTER_KEY` (64 hex characters), else the file `{data_dir}/cluster.key`
//! (64 hex characters, mode 0600, never made by tenantry: `openssl rand -hex 32 >
//! cluster.key` once, then copy it to every node). Without one a `[cluster]` node writes
//! unsealed events and erases nothing.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::events::seal::DataKey;

/// Env variable holding the cluster key as 64 hex characters; overrides the key file.
pub const CLUSTER_KEY_ENV: &str = "TENANTRY_CLUSTER_KEY";
/// The cluster key file's name in the data dir.
pub const CLUSTER_KEY_FILE: &str = "cluster.key";
/// Largest key file read: the hex key, a newline and some slack for stray whitespace.
const KEY_FILE_BYTES_MAX: u64 = 256;
/// Permission bits that must be clear on the key file (any group or other access).
const KEY_FILE_FORBIDDEN_MODE: u32 = 0o077;

/// Why the cluster key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ClusterKeyError {
    #[error("env {CLUSTER_KEY_ENV} is invalid: {problem}; it must be exactly 64 hex characters (32 bytes), the same on every node, e.g. the output of `openssl rand -hex 32`")]
    Env { problem: &'static str },
    #[error("cluster key file {} is invalid: {problem}; it must hold exactly 64 hex characters (32 bytes), the same on every node", path.display())]
    File { path: PathBuf, problem: String },
    #[error("refusing to use cluster key file {path}: its mode is {mode:04o}, which lets group or others access it; run `chmod 600 {path}`", path = path.display())]
    Permissions { path: PathBuf, mode: u32 },
}

/// The cluster key of `data_dir`'s node, `None` when neither the env variable nor the file
/// is there.
pub fn load(data_dir: &Path) -> Result<Option<DataKey>, ClusterKeyError> {
    if let Some(raw) = std::env::var_os(CLUSTER_KEY_ENV) {
        let text = raw.into_string().map_err(|_| ClusterKeyError::Env {
            problem: "it is not valid UTF-8",
        })?;
        let key = crate::secrets::key::decode_hex_key(text.as_bytes())
            .map_err(|problem| ClusterKeyError::Env { problem })?;
        return Ok(DataKey::from_slice(key.as_slice()));
    }
    load_file(&data_dir.join(CLUSTER_KEY_FILE))
}

/// The key in the file at `path`, `None` when it does not exist.
pub fn load_file(path: &Path) -> Result<Option<DataKey>, ClusterKeyError> {
    let file_error = |problem: String| ClusterKeyError::File {
        path: path.to_owned(),
        problem,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(format!("cannot open it: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| file_error(format!("cannot inspect it: {e}")))?;
    if !meta.is_file() {
        return Err(file_error("it is not a regular file".into()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & KEY_FILE_FORBIDDEN_MODE != 0 {
        return Err(ClusterKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = zeroize::Zeroizing::new(Vec::new());
    file.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut text)
        .map_err(|e| file_error(format!("cannot read it: {e}")))?;
    if text.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(file_error("it is too large".into()));
    }
    let key = crate::secrets::key::decode_hex_key(&text)
        .map_err(|problem| file_error(problem.to_owned()))?;
    Ok(DataKey::from_slice(key.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(CLUSTER_KEY_FILE);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_key_file_of_64_hex_digits_loads_and_none_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_file(&dir.path().join(CLUSTER_KEY_FILE))
            .unwrap()
            .is_none());
        let path = write(dir.path(), &format!("{}\n", "ab".repeat(32)), 0o600);
        let key = load_file(&path).unwrap().unwrap();
        assert_eq!(key.expose(), &[0xab; 32]);
    }

    #[test]
    fn a_bad_or_open_key_file_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "not hex", 0o600);
        let err = load_file(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
        let path = write(dir.path(), &"ab".repeat(32), 0o644);
        let err = load_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
