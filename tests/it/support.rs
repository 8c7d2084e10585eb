//! Set-up shared by the integration tests.

use std::path::Path;

/// A temp dir holding copies of the shipped flow files under `flows/` (the config is the
/// caller's to write).
pub fn dir_with_flows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    for f in ["acme_support.yaml", "bigcorp_helpdesk.yaml"] {
        std::fs::copy(root.join("flows").join(f), dir.path().join("flows").join(f)).unwrap();
    }
    dir
}

/// The shipped config.toml, listening on port 0 (8080 may be taken on a test machine).
pub fn shipped_config_on_port_0() -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).unwrap();
    shipped.replace("127.0.0.1:8080", "127.0.0.1:0")
}
