use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

#[test]
fn new_dirs_are_owner_only_and_open_ones_are_tightened_never_widened() {
    let root = tempfile::tempdir().unwrap();
    let nested = root.path().join("a/b/c");
    create_private_dir(&nested).unwrap();
    for dir in ["a", "a/b", "a/b/c"] {
        assert_eq!(mode(&root.path().join(dir)), 0o700, "{dir}");
    }
    // An existing world-readable directory (an older version's data dir) is tightened.
    let old = root.path().join("old");
    std::fs::create_dir(&old).unwrap();
    set_mode(&old, 0o755);
    create_private_dir(&old).unwrap();
    assert_eq!(mode(&old), 0o700);
    // Bits are only ever taken away: a 0500 directory stays 0500.
    set_mode(&old, 0o500);
    create_private_dir(&old).unwrap();
    assert_eq!(mode(&old), 0o500);
    set_mode(&old, 0o700);
}

#[test]
fn restrict_tree_sets_files_0600_and_dirs_0700_two_levels_deep() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    std::fs::create_dir_all(dir.join("blobs/deeper")).unwrap();
    for file in ["db", "conf", "blobs/1", "blobs/deeper/x"] {
        std::fs::write(dir.join(file), b"x").unwrap();
        set_mode(&dir.join(file), 0o644);
    }
    for sub in ["", "blobs", "blobs/deeper"] {
        set_mode(&dir.join(sub), 0o755);
    }
    let readonly = dir.join("snap.ro");
    std::fs::write(&readonly, b"x").unwrap();
    set_mode(&readonly, 0o444);
    restrict_tree(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("blobs")), 0o700);
    assert_eq!(mode(&dir.join("blobs/deeper")), 0o700);
    for file in ["db", "conf", "blobs/1"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&readonly), 0o400);
    // Below the depth bound nothing is read; its directory already hides it.
    assert_eq!(mode(&dir.join("blobs/deeper/x")), 0o644);
}
