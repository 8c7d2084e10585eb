//! Test only: holds the snapshot writes of chosen sessions until the test lets them go, so a
//! test can keep a passivation (which ends with its snapshot write) in progress for as long as
//! it needs instead of racing it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The session-id prefixes whose writes are held, each with how many writes wait on it.
static HELD: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

fn held() -> MutexGuard<'static, Vec<(String, usize)>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Holds the writes of every session whose id starts with `prefix` until dropped. The prefix
/// should be the test's own, as tests run in parallel in one process.
pub(crate) fn writes_of(prefix: &str) -> Hold {
    held().push((prefix.to_owned(), 0));
    Hold {
        prefix: prefix.to_owned(),
    }
}

pub(crate) struct Hold {
    prefix: String,
}

impl Hold {
    /// How many writes wait for this hold now.
    pub(crate) fn waiting(&self) -> usize {
        held()
            .iter()
            .find(|(p, _)| *p == self.prefix)
            .map_or(0, |(_, n)| *n)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        held().retain(|(p, _)| *p != self.prefix);
        RELEASED.notify_all();
    }
}

/// Blocks (the calling thread: snapshot writes run on blocking threads) while a hold covers
/// `session`.
pub(super) fn wait(session: &str) {
    let mut held = held();
    let covering = |held: &mut Vec<(String, usize)>| {
        held.iter_mut()
            .find(|(p, _)| session.starts_with(p.as_str()))
            .map(|(p, _)| p.clone())
    };
    let Some(prefix) = covering(&mut held) else {
        return;
    };
    let count = |held: &mut Vec<(String, usize)>, delta: isize| {
        if let Some((_, n)) = held.iter_mut().find(|(p, _)| *p == prefix) {
            *n = n.saturating_add_signed(delta);
        }
    };
    count(&mut held, 1);
    while covering(&mut held).as_deref() == Some(prefix.as_str()) {
        held = RELEASED.wait(held).unwrap_or_else(PoisonError::into_inner);
    }
    count(&mut held, -1);
}
