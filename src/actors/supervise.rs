//! Supervision of tenant and env actors. They run under actix's `Supervisor`, which restarts an
//! actor that *stops* (same address, same mailbox, same actor value). A panic is not a stop:
//! left alone it kills the actor's task, and every later message to the tenant fails. So each
//! handler body runs in [`guard`], which catches the panic and stops the actor; the supervisor
//! then restarts it. Only that tenant's (or env's) actor restarts: other tenants, and the session
//! actors (separate actors), keep running.
//!
//! Invariant: a handler's panic never escapes into the arbiter; the message it was handling is
//! dropped (its caller's answer channel closes).

use std::panic::AssertUnwindSafe;

use actix::prelude::*;

/// Text that makes a test build's tenant actor panic while forwarding the message.
#[cfg(test)]
pub(crate) const TENANT_PANIC_PROBE: &str = "\u{1f4a5} tenant panic probe";
/// Text that makes a test build's env actor panic while routing the message.
#[cfg(test)]
pub(crate) const ENV_PANIC_PROBE: &str = "\u{1f4a5} env panic probe";

/// Runs `body`; on a panic, logs it, stops the actor (so its supervisor restarts it) and
/// returns `None`.
pub(super) fn guard<A, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    what: &'static str,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Option<R>
where
    A: Actor<Context = Context<A>>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(r) => Some(r),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(actor = std::any::type_name::<A>(), handler = what, panic = %detail,
                "actor panicked; restarting it");
            ctx.stop();
            None
        }
    }
}
