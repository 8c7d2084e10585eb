//! One fold of a tenant's log into its read models, shared by `catch_up` and `rebuild`.
//!
//! The fold reads the log's frames as borrowed [`EventView`]s (no chain hash, no copied ids or
//! texts), keeps the entries it touched in memory and commits them with the checkpoint in one
//! batch. Per frame (one session's append group) it looks the session's state up once, and the
//! usage counters once per run of events with the same channel and day; keys are built in one
//! reused buffer, so a lookup that hits allocates nothing.
//!
//! Where it starts and when it commits are the differences between the two callers. A catch-up
//! starts at the checkpoint, loads an entry from the tree the first time it touches it, and
//! commits every [`FOLD_BATCH_EVENTS`] events (it runs beside live traffic: small batches,
//! little work lost to a crash). A rebuild ([`Start::FromScratch`]) starts at 1 with the tree's
//! entries ignored, and commits only when it holds [`REBUILD_ENTRIES_MAX`] entries, so that a
//! session whose events are spread over the whole log is encoded and written once, not once per
//! batch. Its first commit replaces the tenant's whole read model in one batch
//! ([`crate::events::projection::ProjectionTree::replace_tenant`]): until then readers see the
//! old one, after it a prefix of the new one, and a crash at any point leaves one of the two
//! with its own checkpoint. Every commit writes data and checkpoint together, at a frame
//! boundary, so the next catch-up continues from what a crash left.

use std::collections::{BTreeMap, HashMap};

use super::{
    encode, push_part, session_key_into, Projector, ProjectorError, UsageCounters,
    FOLD_BATCH_EVENTS, LAST_MESSAGE_CHARS_MAX, MS_PER_DAY, REBUILD_ENTRIES_MAX, TAG_LAST_MESSAGE,
    TAG_SESSION, TAG_USAGE,
};
use crate::events::log::EventLog;
use crate::events::schema::{same_str, EventView, KindView};
use crate::events::seal::DataKey;
use crate::projections::session::SessionState;
use crate::tenancy::{EnvId, SessionId, TeamId, TenantId};

/// Where a fold starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// After the checkpoint, from the entries in the tree (a catch-up).
    AtCheckpoint,
    /// At the tenant's first event, as if the tree held nothing; the first commit replaces
    /// whatever it holds (a rebuild).
    FromScratch,
}

/// When a fold commits what it holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum CommitWhen {
    /// After the frame that brings the events folded since the last commit to this many.
    EventsFolded(usize),
    /// After the frame that brings the entries held to this many.
    EntriesHeld(usize),
}

impl CommitWhen {
    /// A catch-up's batches.
    pub(super) const CATCH_UP: CommitWhen = CommitWhen::EventsFolded(FOLD_BATCH_EVENTS);
    /// A rebuild's batches.
    pub(super) const REBUILD: CommitWhen = CommitWhen::EntriesHeld(REBUILD_ENTRIES_MAX);

    fn due(self, held: &Held) -> bool {
        match self {
            CommitWhen::EventsFolded(n) => held.events >= n,
            CommitWhen::EntriesHeld(n) => {
                held.usage.len() + held.sessions.len() + held.last_messages.len() >= n
            }
        }
    }
}

/// The entries a fold changed since its last commit, with their new values.
#[derive(Default)]
/// Hash maps: a fold looks entries up once or twice per frame, and a commit sorts them anyway.
struct Held {
    usage: HashMap<Vec<u8>, UsageCounters>,
    sessions: HashMap<Vec<u8>, HeldSession>,
    /// Each session's last message text (cut), by its `M` key.
    last_messages: HashMap<Vec<u8>, String>,
    /// Events folded since the last commit.
    events: usize,
    /// Until the first commit of a rebuild: the tree's entries are not this fold's, so they
    /// are neither loaded nor kept.
    replacing: bool,
    /// The key being looked up (reused, so a hit allocates nothing).
    key: Vec<u8>,
}

/// A session's state as a fold holds it.
struct HeldSession {
    state: SessionState,
    /// The data key that opened the fields the state (and the session's `M` entry) holds:
    /// they are sealed under it at the commit, even if an erasure destroyed it meanwhile
    /// (`None`: nothing opened, the key is looked up at the commit).
    data_key: Option<DataKey>,
}

/// The usage key of `e` (`U{env}\0{team}\0{channel}\0{day:be32}`), into `k`.
fn usage_key_into(k: &mut Vec<u8>, e: &EventView<'_>) {
    k.clear();
    k.push(TAG_USAGE);
    push_part(k, e.env);
    push_part(k, e.team);
    push_part(k, e.channel);
    k.extend_from_slice(&day_of(e.at_ms).to_be_bytes());
}

/// Days since the epoch of a unix-ms time (saturating: a time past year 11 million is day max).
fn day_of(at_ms: u64) -> u32 {
    u32::try_from(at_ms / MS_PER_DAY).unwrap_or(u32::MAX)
}

impl Projector {
    /// Folds `tenant`'s events from `start`, committing as `when` says and once at the end;
    /// returns how many were folded. The caller holds the tenant's fold lock. `progress` gets
    /// the running count after each commit, and at least every [`FOLD_BATCH_EVENTS`].
    pub(super) fn fold(
        &self,
        log: &EventLog,
        tenant: &TenantId,
        (start, when): (Start, CommitWhen),
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectorError> {
        let reader = log.tenant(tenant);
        let from = match start {
            Start::AtCheckpoint => self.tree.checkpoint(tenant)?,
            Start::FromScratch => 0,
        };
        let head = reader.head()?.map_or(0, |h| h.tenant_seq);
        let mut held = Held {
            replacing: start == Start::FromScratch,
            ..Held::default()
        };
        if head <= from {
            if held.replacing {
                // Nothing to fold: the tenant's read model is no read model, as a catch-up of
                // an empty log leaves it (no checkpoint either).
                self.tree.clear_tenant(tenant)?;
            }
            return Ok(0);
        }
        let mut folded = 0u64;
        let mut reported = 0u64;
        let mut last = from;
        reader.fold_frames_keyed(from + 1..=head, &mut |events, data_key| {
            self.fold_frame(tenant, &mut held, events, data_key)?;
            folded += events.len() as u64;
            held.events += events.len();
            last = events.last().map_or(last, |e| e.tenant_seq);
            if when.due(&held) {
                self.commit(tenant, &mut held, last)?;
                progress(folded);
                reported = folded;
            } else if folded - reported >= FOLD_BATCH_EVENTS as u64 {
                progress(folded);
                reported = folded;
            }
            Ok::<(), ProjectorError>(())
        })?;
        self.commit(tenant, &mut held, last)?;
        progress(folded);
        Ok(folded)
    }

    /// Folds one frame's events (one session, consecutive seqs; their sealed parts opened
    /// with `data_key`) into `held`, loading an entry from the tree the first time it is
    /// touched since the last commit.
    fn fold_frame(
        &self,
        tenant: &TenantId,
        held: &mut Held,
        events: &[EventView<'_>],
        data_key: Option<&DataKey>,
    ) -> Result<(), ProjectorError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        // A connector's system session is registry bookkeeping, not usage (docs/events.md).
        let mut rest = if crate::connectors::is_system_session(first.session) {
            &[]
        } else {
            events
        };
        while let Some(head) = rest.first() {
            let run = rest
                .iter()
                .take_while(|e| {
                    same_str(e.channel, head.channel) && day_of(e.at_ms) == day_of(head.at_ms)
                })
                .count();
            let mut delta = UsageCounters::default();
            for e in &rest[..run] {
                delta.count(&e.kind);
            }
            usage_key_into(&mut held.key, head);
            match held.usage.get_mut(held.key.as_slice()) {
                Some(counters) => counters.add(&delta),
                None => {
                    let mut counters = if held.replacing {
                        UsageCounters::default()
                    } else {
                        self.load::<UsageCounters>(tenant, &held.key)?
                            .unwrap_or_default()
                    };
                    counters.add(&delta);
                    held.usage.insert(held.key.clone(), counters);
                }
            }
            rest = &rest[run..];
        }
        session_key_into(&mut held.key, first.env, first.team, first.session);
        if !held.sessions.contains_key(held.key.as_slice()) {
            let stored = if held.replacing {
                None
            } else {
                self.load_keyed::<SessionState>(tenant, &held.key)?
            };
            let (state, data_key) = match stored {
                Some(stored) => stored,
                None => (new_state(tenant, first)?, None),
            };
            held.sessions
                .insert(held.key.clone(), HeldSession { state, data_key });
        }
        if let Some(HeldSession {
            state,
            data_key: held_key,
        }) = held.sessions.get_mut(held.key.as_slice())
        {
            if held_key.is_none() {
                *held_key = data_key.cloned();
            }
            if state.last_seq > 0 && first.seq > state.last_seq + 1 {
                // The events between were trimmed by retention before this fold read them: the
                // state restarts from what the log kept (docs/storage.md#retention).
                *state = new_state(tenant, first)?;
            }
            for e in events {
                state
                    .try_apply_view(e)
                    .map_err(|detail| ProjectorError::Corrupt {
                        tenant: tenant.clone(),
                        detail,
                    })?;
            }
        }
        let last_text = events.iter().rev().find_map(|e| match e.kind {
            KindView::MessageReceived { text } => Some(text),
            _ => None,
        });
        if let Some(text) = last_text {
            // The same key after another tag: no lookup needed, the newest text wins.
            if let Some(tag) = held.key.first_mut() {
                *tag = TAG_LAST_MESSAGE;
            }
            let cut = cut_chars(text, LAST_MESSAGE_CHARS_MAX);
            match held.last_messages.get_mut(held.key.as_slice()) {
                Some(last) => {
                    last.clear();
                    last.push_str(cut);
                }
                None => {
                    held.last_messages.insert(held.key.clone(), cut.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Writes the held entries and the checkpoint `checkpoint` in one batch (the first commit of
    /// a rebuild: in place of everything the tenant had), and lets them go.
    fn commit(
        &self,
        tenant: &TenantId,
        held: &mut Held,
        checkpoint: u64,
    ) -> Result<(), ProjectorError> {
        let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in std::mem::take(&mut held.usage) {
            entries.insert(k, encode(&v));
        }
        let sessions = std::mem::take(&mut held.sessions);
        let mut session_key = Vec::new();
        for (k, v) in std::mem::take(&mut held.last_messages) {
            // The session's `S` key (the same key after another tag), held with its message.
            session_key.clear();
            session_key.push(TAG_SESSION);
            session_key.extend_from_slice(k.get(1..).unwrap_or_default());
            let data_key = sessions.get(&session_key).and_then(|s| s.data_key.as_ref());
            let value = self.seal_entry(tenant, &k, encode(&v), data_key)?;
            entries.insert(k, value);
        }
        for (k, v) in sessions {
            let value = self.seal_entry(tenant, &k, encode(&v.state), v.data_key.as_ref())?;
            entries.insert(k, value);
        }
        held.events = 0;
        if std::mem::take(&mut held.replacing) {
            self.tree.replace_tenant(tenant, &entries, checkpoint)?;
        } else {
            self.tree.commit(tenant, &entries, checkpoint)?;
        }
        Ok(())
    }
}

/// The first `max` chars of `text` (all of it when shorter), found without walking a text
/// whose bytes already fit.
fn cut_chars(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The state of a session before its first event, from the ids of one of its events (which the
/// log's fold read has checked; a failure here means a corrupt frame slipped through).
fn new_state(tenant: &TenantId, e: &EventView<'_>) -> Result<SessionState, ProjectorError> {
    let corrupt = |detail: String| ProjectorError::Corrupt {
        tenant: tenant.clone(),
        detail,
    };
    Ok(SessionState::new(
        tenant.clone(),
        EnvId::parse(e.env).map_err(|err| corrupt(err.to_string()))?,
        TeamId::parse(e.team).map_err(|err| corrupt(err.to_string()))?,
        SessionId::parse(e.session).map_err(|err| corrupt(err.to_string()))?,
    ))
}

#[cfg(test)]
mod tests;
