//! Each tenant's lane into the actors: a fair share of the messages running at once.
//!
//! An admitted message (one holding an in-flight place) runs, that is goes on to its tenant's
//! actor, the env and session actors and the log, only while its tenant has fewer messages
//! running than its share: `runtime.running_max` over the tenants with messages running or
//! waiting, at least [`RUNNING_SHARE_MIN`]. The others wait here, in order, and start as the
//! tenant's running messages finish. The actors, the arbiters' threads and the log's stager
//! serve messages first come, first served; without the lanes a tenant's burst (a quota's whole
//! bucket at once) would be ahead of every other tenant's next message at each of them. With
//! them, at most its share is: the burst waits in its own lane, not in everyone's way.
//!
//! Invariants:
//! - a tenant's messages start in the order they were admitted;
//! - a message is running from its start until its [`Deliver`] is dropped (answered, or given up
//!   by an actor), which starts the tenant's next waiting message if its share allows;
//! - a lane with waiting messages has running ones (its share is at least one), so a waiting
//!   message always has a finish to start it, and its lane (held by the running ones) outlives
//!   it;
//! - `RuntimeMetrics::waiting` counts the messages waiting in every lane;
//! - one tenant alone gets all of `running_max`: the share only divides it among busy tenants.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::dev::SendError;
use actix::Recipient;

use super::messages::{Deliver, RuntimeError};
use super::shared::RuntimeMetrics;

/// The smallest share of `running_max` a busy tenant gets, however many are busy.
pub const RUNNING_SHARE_MIN: usize = 16;

/// What every lane shares: the budget and how many tenants divide it now.
#[derive(Debug)]
pub(crate) struct Fairness {
    running_max: usize,
    /// Tenants with messages running or waiting.
    busy: AtomicUsize,
    /// Where the messages waiting in every lane are counted (`waiting`).
    metrics: Arc<RuntimeMetrics>,
}

impl Fairness {
    pub(crate) fn new(running_max: usize, metrics: Arc<RuntimeMetrics>) -> Arc<Fairness> {
        Arc::new(Fairness {
            running_max: running_max.max(1),
            busy: AtomicUsize::new(0),
            metrics,
        })
    }

    fn waiting(&self) -> &AtomicUsize {
        &self.metrics.waiting
    }

    /// A busy tenant's share now.
    fn share(&self) -> usize {
        let busy = self.busy.load(Ordering::Acquire).max(1);
        (self.running_max / busy).max(RUNNING_SHARE_MIN.min(self.running_max))
    }
}

/// One tenant's lane.
pub(crate) struct Lane {
    fairness: Arc<Fairness>,
    /// The tenant actor, where a message starts.
    to: Recipient<Deliver>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    running: usize,
    waiting: VecDeque<Deliver>,
}

impl LaneState {
    fn busy(&self) -> bool {
        self.running > 0 || !self.waiting.is_empty()
    }
}

/// A running message's place in its lane, carried by its [`Deliver`]; dropping it starts the
/// next waiting message.
pub(crate) struct Running {
    /// `None` once [`forget_place`] took it back.
    lane: Option<Arc<Lane>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Running")
    }
}

impl Lane {
    pub(crate) fn new(fairness: Arc<Fairness>, to: Recipient<Deliver>) -> Arc<Lane> {
        Arc::new(Lane {
            fairness,
            to,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, LaneState> {
        // Nothing panics while holding it; a poisoned lane is still a consistent one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `msg` now when its tenant is under its share and none of its messages wait, else
    /// queues it behind them. A tenant actor whose mailbox is full or closed refuses a message
    /// started now: `Overloaded` or `ShuttingDown`, for the caller to answer.
    pub(crate) fn submit(self: &Arc<Self>, mut msg: Deliver) -> Result<(), RuntimeError> {
        let mut state = self.state();
        if !state.busy() {
            self.fairness.busy.fetch_add(1, Ordering::AcqRel);
        }
        if !state.waiting.is_empty() || state.running >= self.fairness.share() {
            state.waiting.push_back(msg);
            self.fairness.waiting().fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        state.running += 1;
        msg.running = Some(Running {
            lane: Some(self.clone()),
        });
        drop(state);
        // Dropping a refused message gives its place back (and starts the next).
        self.to.try_send(msg).map_err(|e| refusal(e).1)
    }

    /// How many of the tenant's messages run and wait now.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.running, state.waiting.len())
    }

    /// A running message finished: starts waiting ones while the share allows. One that its
    /// tenant actor refuses is answered here and the next is tried.
    fn finished(self: &Arc<Self>) {
        let mut state = self.state();
        state.running = state.running.saturating_sub(1);
        loop {
            if state.running >= self.fairness.share() {
                break;
            }
            let Some(mut msg) = state.waiting.pop_front() else {
                break;
            };
            self.fairness.waiting().fetch_sub(1, Ordering::Relaxed);
            state.running += 1;
            // A place of its own; taken back without a recursive `finished` if refused.
            msg.running = Some(Running {
                lane: Some(self.clone()),
            });
            if let Err(e) = self.to.try_send(msg) {
                let (mut msg, error) = refusal(e);
                state.running -= 1;
                forget_place(&mut msg);
                msg.answer(Err(error));
            }
        }
        if !state.busy() {
            self.fairness.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The message a tenant actor refused, and the error its caller gets: `Overloaded` for a full
/// mailbox, `ShuttingDown` for a closed one.
fn refusal(e: SendError<Deliver>) -> (Deliver, RuntimeError) {
    match e {
        SendError::Full(msg) => (msg, RuntimeError::Overloaded),
        SendError::Closed(msg) => (msg, RuntimeError::ShuttingDown),
    }
}

/// Takes `msg`'s place off it without the drop that would call `finished` (the caller holds
/// the lane's lock and has counted the place back itself).
fn forget_place(msg: &mut Deliver) {
    if let Some(running) = &mut msg.running {
        running.lane = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            lane.finished();
        }
    }
}

#[cfg(test)]
mod tests;
