//! Owner-only storage: the data dir and everything tenantry writes under it (the log and its read
//! models, snapshots, secrets) are created mode 0700 (directories) and 0600 (files), so other
//! users of the host can read no tenant's data.
//!
//! Modes given at creation are still filtered by the umask, which can only remove bits: what is
//! created here is never more open than 0700/0600. Files made by sled inside the log directory
//! get sled's own modes; the 0700 directory is what keeps them private, and [`restrict_tree`]
//! also sets them 0600 at open.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Permission bits of every directory tenantry creates: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Permission bits of every file tenantry creates: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// How deep [`restrict_tree`] descends: sled's directory holds files and one level of blob
/// directories.
const RESTRICT_DEPTH_MAX: usize = 2;

/// Creates `dir` and its missing ancestors with [`DIR_MODE`], and takes the group and other
/// bits off `dir` itself when it already existed (a data dir made by an older version or by
/// hand).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    restrict(dir, DIR_MODE)
}

/// Takes the bits outside [`DIR_MODE`] off `dir` and every directory under it, and those
/// outside [`FILE_MODE`] off every file, [`RESTRICT_DEPTH_MAX`] levels deep; symbolic links
/// are left alone.
pub fn restrict_tree(dir: &Path) -> io::Result<()> {
    restrict_level(dir, 0)
}

/// Writes a new small file with [`FILE_MODE`] and syncs it and its directory, so that it
/// survives a crash once this returns.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn restrict_level(dir: &Path, depth: usize) -> io::Result<()> {
    restrict(dir, DIR_MODE)?;
    if depth == RESTRICT_DEPTH_MAX {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict_level(&entry.path(), depth + 1)?;
        } else if kind.is_file() {
            restrict(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Clears the bits of `path` outside `mode` (never adds any).
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(current & mode))
}

#[cfg(test)]
mod tests;

/// How deep [`tree_usage`] descends below the directory it is given (a tenant's snapshots and
/// secrets are three levels deep).
pub const USAGE_DEPTH_MAX: usize = 4;

/// The regular files under `dir` whose name ends with `suffix`, [`USAGE_DEPTH_MAX`] levels
/// deep: how many and their bytes. A missing `dir` is (0, 0); symbolic links are not followed.
pub fn tree_usage(dir: &Path, suffix: &str) -> io::Result<(u64, u64)> {
    fn walk(dir: &Path, suffix: &str, depth: usize, total: &mut (u64, u64)) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() && depth < USAGE_DEPTH_MAX {
                walk(&entry.path(), suffix, depth + 1, total)?;
            } else if meta.is_file() && entry.file_name().to_string_lossy().ends_with(suffix) {
                total.0 += 1;
                total.1 += meta.len();
            }
        }
        Ok(())
    }
    let mut total = (0, 0);
    walk(dir, suffix, 0, &mut total)?;
    Ok(total)
}
