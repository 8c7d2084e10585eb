//! Containing sled's panics on damaged files.
//!
//! sled 0.34 asserts instead of returning an error on some damaged pages: with 16 bytes XORed
//! into a ~100 MB `db` it panics in `serialization.rs` or `pagecache/segment.rs`, at open or on a
//! read (measured; see `tests/it/corruption.rs`). The log runs its open and its recovery reads
//! inside [`contained`], which turns such a panic into an error naming the file and what to do.
//!
//! A panic in one of sled's own threads (its background flusher, its I/O pool) cannot be caught
//! where it happens, and would leave a writer waiting for a flush that never comes. The hook of
//! [`install_panic_hook`] (installed by the CLI) ends the process at once instead, with the
//! same advice, whenever sled panics outside [`contained`].
//!
//! Invariant: a sled panic never reaches a caller as a panic, and never leaves the process
//! hanging: it is an error (contained) or a clear exit ([`SLED_PANIC_EXIT_CODE`]).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// The exit status of a process that a sled panic outside [`contained`] ends.
pub const SLED_PANIC_EXIT_CODE: i32 = 70;

thread_local! {
    /// How deep the current thread is inside [`contained`].
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// What to tell the operator about damaged sled files under `dir`.
pub fn advice(dir: &Path) -> String {
    format!(
        "its data file {} is damaged: stop the server and restore the data dir from a backup \
         (an earlier audit export, checked with `tenantry verify`, still holds the events)",
        dir.join("db").display()
    )
}

/// Runs `f`; a panic inside it (sled's, on damaged files) becomes `Err(message)`.
pub(super) fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    result.map_err(|payload| {
        panic_message(payload.as_ref()).unwrap_or_else(|| "sled panicked".into())
    })
}

/// A caught panic's message, when it has one (a `&str` or a `String` payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Some((*s).to_owned())
    } else {
        payload.downcast_ref::<String>().cloned()
    }
}

/// Installs a panic hook that ends the process with [`SLED_PANIC_EXIT_CODE`] and a clear
/// message when sled panics outside [`contained`] (e.g. in its flusher thread), so that nothing
/// waits forever on a dead thread. Other panics go to the previous hook; contained sled panics
/// are left to their caller's error and not printed twice.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_sled = info
            .location()
            .is_some_and(|l| l.file().contains("/sled-0."));
        if !in_sled {
            return previous(info);
        }
        if CONTAINED.with(Cell::get) > 0 {
            tracing::debug!(panic = %info, "sled panicked on damaged files (contained)");
            return;
        }
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let dir = super::last_opened_dir();
        let advice = dir.as_deref().map_or_else(
            || "the event log's sled files are damaged; restore the data dir from a backup".into(),
            advice,
        );
        eprintln!("fatal: sled panicked in thread {name} ({info}): {advice}");
        tracing::error!(thread = name, panic = %info, "sled panicked: {advice}");
        std::process::exit(SLED_PANIC_EXIT_CODE);
    }));
}
