//! The flow engine: runs one inbound message through a session's flow and returns the events to
//! append (docs/config.md#flow-files). It decides; [`SessionState::apply`] applies.
//!
//! A message starts where the session's [`Cursor`] says: at the first node, or, after an `ask`,
//! by storing the message under the asked key and continuing after the `ask` node. Nodes then run
//! in order (or to the node `next` or a route names) until the flow waits (`ask`), ends (`end`),
//! fails, or runs past its last node, in which case the next message starts at the first node
//! again.
//!
//! Templates (`reply` and `ask` messages, `set` values) are [minijinja] with auto-escaping off
//! (replies are chat text, not HTML) and no loader, so `include`/`import` cannot reach files.
//! They see `message.text`, `message.user`, `state.<key>` (including keys set earlier in the same
//! run), `tenant.name` and `tenant.settings.<key>`. An undefined variable renders as the empty
//! string (minijinja's lenient mode), because a state key is legitimately unset until its `ask`
//! or `set` has run and a greeting should not fail for it; taking an attribute of an undefined
//! value (`{{ nope.x }}`) is still an error. A node whose template fails, runs out of fuel, or
//! renders too much text records `FlowFailed` and stops the run; the session stays open.
//!
//! Invariants:
//! - Deterministic: no clock, randomness or I/O. The events are a function of the flow, the
//!   session state, the tenant info and the input, so a session can be re-executed.
//! - Bounded: at most [`EVENTS_PER_RUN_MAX`] events and [`RENDERED_BYTES_PER_MESSAGE_MAX`] bytes of
//!   rendered text per message, checked below to fit one append group (with the caller's
//!   `SessionStarted`); every render is limited by [`TEMPLATE_FUEL_MAX`].
//! - Event texts never quote the message or state in `FlowFailed.error`: errors name what went
//!   wrong, not the data (events are kept for the life of the tenant).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

use crate::config::flow::{Action, Flow, FLOW_LABEL_BYTES_MAX};
use crate::events::codec::{
    FRAME_BYTES_MAX, FRAME_HEADER_BYTES, GROUP_EVENTS_MAX, NAME_BYTES_MAX, TEXT_BYTES_MAX,
};
use crate::events::schema::EventKind;
use crate::projections::session::{Cursor, SessionState};

/// Most nodes one message runs. Past it the run records `FlowFailed` (a `next` or route loop).
pub const STEPS_PER_MESSAGE_MAX: usize = 16;

/// Most events [`run`] returns: `MessageReceived`, the stored answer of an `ask`, at most two per
/// step (`NodeEntered` and one of `ReplySent`, `StateSet`, `SessionEnded`, `FlowFailed`), and
/// one last event: the `ask`'s `AwaitingInput` or the step limit's `FlowFailed` (never both).
pub const EVENTS_PER_RUN_MAX: usize = 2 + 2 * STEPS_PER_MESSAGE_MAX + 1;

/// Most bytes of text one message may produce: rendered replies, prompts and `set` values, plus
/// `end` reasons. Past it the node that would exceed it records `FlowFailed`.
pub const RENDERED_BYTES_PER_MESSAGE_MAX: usize = 32 * 1024;

/// Most minijinja instructions one render may execute (its "fuel"), so that a pathological
/// template (nested loops over the message text, say) fails instead of spinning.
pub const TEMPLATE_FUEL_MAX: u64 = 10_000;

/// Longest `FlowFailed.error` text, in bytes.
pub const ERROR_BYTES_MAX: usize = 256;

/// Upper bound of one event's encoded body plus its 4-byte record header, excluding its free
/// texts (message text, rendered text, state value, end reason, `FlowFailed` error,
/// `SessionStarted`'s user and labels): every id at its longest, a 128-byte node id and a
/// 64-byte state key. Measured at 728 bytes for the largest kind (`AwaitingInput`); a test
/// encodes the worst case of every kind against it.
pub const EVENT_OVERHEAD_BYTES_MAX: usize = 768;

// One message, in the worst case, is one append group: the caller's `SessionStarted` plus this
// run's events, within both the event count and the frame size. The frame holds the header, every
// event's overhead, the message text twice (`MessageReceived` and the stored answer), the message
// id and user (`MessageReceived`) and user, flow name and version (`SessionStarted`), one
// `FlowFailed` error (a run stops at its first failure) and the rendered budget.
// `<`, not `<=`: one slot stays free for the caller's `SessionStarted`.
const _: () = assert!(EVENTS_PER_RUN_MAX < GROUP_EVENTS_MAX);
const _: () = assert!(
    FRAME_HEADER_BYTES
        + (1 + EVENTS_PER_RUN_MAX) * EVENT_OVERHEAD_BYTES_MAX
        + 2 * TEXT_BYTES_MAX
        + 3 * NAME_BYTES_MAX
        + 2 * FLOW_LABEL_BYTES_MAX
        + ERROR_BYTES_MAX
        + RENDERED_BYTES_PER_MESSAGE_MAX
        <= FRAME_BYTES_MAX
);

/// One inbound message, as validated by ingress.
///
/// Precondition: `text` is at most `TEXT_BYTES_MAX` bytes and `message_id` and `user` at most
/// `NAME_BYTES_MAX` (ingress enforces both; the frame budget above relies on them).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The client's message id (idempotency key), recorded in `MessageReceived`.
    pub message_id: &'a str,
    /// The sender, recorded in `MessageReceived` and seen by templates as `message.user`.
    pub user: &'a str,
    /// The message text, routed on and seen by templates as `message.text`.
    pub text: &'a str,
}

/// What templates may know about the tenant.
#[derive(Clone, Copy, Debug)]
pub struct TenantInfo<'a> {
    /// The tenant's display name (`tenant.name`).
    pub name: &'a str,
    /// The tenant's settings (`tenant.settings.<key>`).
    pub settings: &'a BTreeMap<String, String>,
}

/// Runs one inbound message through `flow` from the session's cursor. Returns the events to
/// append, starting with `MessageReceived`; at most [`EVENTS_PER_RUN_MAX`] of them.
///
/// Does not include `SessionStarted`: for a new session the caller prepends it. The caller
/// guarantees `state.is_open()`; the state is read as of the message's arrival (its cursor and
/// vars), never modified.
pub fn run(
    flow: &Flow,
    state: &SessionState,
    tenant: &TenantInfo<'_>,
    input: &Input<'_>,
) -> Vec<EventKind> {
    debug_assert!(
        state.is_open(),
        "messages to ended sessions are refused before the engine"
    );
    debug_assert!(input.text.len() <= TEXT_BYTES_MAX);
    debug_assert!(input.message_id.len() <= NAME_BYTES_MAX && input.user.len() <= NAME_BYTES_MAX);

    let mut run = Run {
        tenant,
        input,
        vars: Cow::Borrowed(&state.vars),
        context: None,
        rendered_bytes: 0,
        events: Vec::with_capacity(8),
    };
    run.events.push(EventKind::MessageReceived {
        message_id: input.message_id.to_owned(),
        user: input.user.to_owned(),
        text: input.text.to_owned(),
    });

    let first = match &state.cursor {
        Cursor::Start => Some(0),
        Cursor::Awaiting { node, key } => {
            run.set(key, input.text.to_owned());
            // A flow reloaded without the `ask` node cannot resume after it; the answer is kept
            // and the flow starts over rather than failing every later message.
            match flow.position(node) {
                Some(index) => flow.successor(index),
                None => Some(0),
            }
        }
    };
    if let Some(first) = first {
        run.nodes(flow, first);
    }

    debug_assert!(run.events.len() <= EVENTS_PER_RUN_MAX);
    run.events
}

/// The state of one message's run.
struct Run<'a> {
    tenant: &'a TenantInfo<'a>,
    input: &'a Input<'a>,
    /// The session's vars with this run's `StateSet`s applied; copied on the first one.
    vars: Cow<'a, BTreeMap<String, String>>,
    /// The template context, built on the first render and dropped when `vars` change.
    context: Option<Value>,
    /// Text produced so far, against [`RENDERED_BYTES_PER_MESSAGE_MAX`].
    rendered_bytes: usize,
    events: Vec<EventKind>,
}

/// How one node hands over.
enum Step {
    /// Run the node at this index next.
    Goto(usize),
    /// The run is over (wait, end, failure or past the last node).
    Stop,
}

impl Run<'_> {
    /// Runs nodes from `first` until the flow stops or the step limit is reached.
    fn nodes(&mut self, flow: &Flow, first: usize) {
        let mut index = first;
        let mut steps = 0;
        loop {
            // Every index comes from `Flow` (0, `successor`, route targets), whose invariant
            // keeps it in bounds.
            let node = &flow.nodes()[index];
            if steps == STEPS_PER_MESSAGE_MAX {
                self.fail(
                    &node.id,
                    format!(
                        "step limit: more than {STEPS_PER_MESSAGE_MAX} nodes ran for one message \
                         (a `next` or route loop?)"
                    ),
                );
                return;
            }
            steps += 1;
            self.events.push(EventKind::NodeEntered {
                node: node.id.clone(),
            });
            let step = self.node(flow, index, &node.id, &node.action);
            match step {
                Step::Goto(next) => index = next,
                Step::Stop => return,
            }
        }
    }

    /// Runs the node at `index`, after its `NodeEntered`.
    fn node(&mut self, flow: &Flow, index: usize, id: &str, action: &Action) -> Step {
        let after = || flow.successor(index).map_or(Step::Stop, Step::Goto);
        match action {
            Action::Reply { message } => match self.render(message) {
                Ok(text) => {
                    self.events.push(EventKind::ReplySent {
                        node: id.to_owned(),
                        text,
                    });
                    after()
                }
                Err(error) => self.fail(id, error),
            },
            Action::Ask { message, key } => match self.render(message) {
                Ok(text) => {
                    self.events.push(EventKind::ReplySent {
                        node: id.to_owned(),
                        text,
                    });
                    self.events.push(EventKind::AwaitingInput {
                        node: id.to_owned(),
                        key: key.clone(),
                    });
                    Step::Stop
                }
                Err(error) => self.fail(id, error),
            },
            Action::Route(route) => match route.choose(self.input.text) {
                Some(next) => Step::Goto(next),
                None => self.fail(
                    id,
                    "no route matched the message and the node has no `default`".to_owned(),
                ),
            },
            Action::Set { key, value } => match self.render(value) {
                Ok(value) => {
                    self.set(key, value);
                    after()
                }
                Err(error) => self.fail(id, error),
            },
            Action::End { reason } => {
                let reason = reason.as_deref().unwrap_or("flow_end");
                // Reasons come from the flow file, which bounds nothing per field; they count
                // against the same budgets as rendered text.
                match self.spend(reason.len()) {
                    Ok(()) => {
                        self.events.push(EventKind::SessionEnded {
                            reason: reason.to_owned(),
                        });
                        Step::Stop
                    }
                    Err(error) => self.fail(id, error),
                }
            }
        }
    }

    /// Records `StateSet` and makes the value visible to later templates of this run.
    fn set(&mut self, key: &str, value: String) {
        self.vars.to_mut().insert(key.to_owned(), value.clone());
        self.context = None;
        self.events.push(EventKind::StateSet {
            key: key.to_owned(),
            value,
        });
    }

    /// Records `FlowFailed` for node `node`; the run stops.
    fn fail(&mut self, node: &str, mut error: String) -> Step {
        if error.len() > ERROR_BYTES_MAX {
            let mut cut = ERROR_BYTES_MAX;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        self.events.push(EventKind::FlowFailed {
            node: node.to_owned(),
            error,
        });
        Step::Stop
    }

    /// Counts `bytes` of produced text against the per-text and per-message limits.
    fn spend(&mut self, bytes: usize) -> Result<(), String> {
        if bytes > TEXT_BYTES_MAX {
            return Err(format!(
                "text of {bytes} bytes exceeds {TEXT_BYTES_MAX} bytes"
            ));
        }
        if self.rendered_bytes + bytes > RENDERED_BYTES_PER_MESSAGE_MAX {
            return Err(format!(
                "the message's replies and values exceed {RENDERED_BYTES_PER_MESSAGE_MAX} bytes"
            ));
        }
        self.rendered_bytes += bytes;
        Ok(())
    }

    /// Renders `source` within the limits; the error is a short description for `FlowFailed`.
    fn render(&mut self, source: &str) -> Result<String, String> {
        // Most flow texts are plain; they need no parse, no context and no copy of the vars.
        if !is_template(source) {
            self.spend(source.len())?;
            return Ok(source.to_owned());
        }
        let remaining = RENDERED_BYTES_PER_MESSAGE_MAX - self.rendered_bytes;
        let mut out = BoundedWriter {
            buf: Vec::new(),
            limit: remaining.min(TEXT_BYTES_MAX),
            overflowed: false,
        };
        let context = self
            .context
            .get_or_insert_with(|| template_context(self.input, &self.vars, self.tenant));
        // The shared environment lives for `'static`; viewing it with a shorter source lifetime
        // lets it compile this borrowed template.
        let env: &Environment<'_> = environment();
        let rendered = env
            .template_from_str(source)
            .and_then(|template| template.render_captured_to(&*context, &mut out).map(drop));
        if out.overflowed {
            // Report the limit that was hit, as `spend` would have.
            return Err(if remaining < TEXT_BYTES_MAX {
                format!(
                    "the message's replies and values exceed {RENDERED_BYTES_PER_MESSAGE_MAX} bytes"
                )
            } else {
                format!("rendered text exceeds {TEXT_BYTES_MAX} bytes")
            });
        }
        if let Err(error) = rendered {
            return Err(describe(&error));
        }
        let text =
            String::from_utf8(out.buf).map_err(|_| "template rendered invalid UTF-8".to_owned())?;
        self.spend(text.len())?;
        Ok(text)
    }
}

/// Whether `text` has template syntax; without it, rendering would return it unchanged (the
/// environment keeps trailing newlines, so this holds byte for byte).
fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A short description of a template error: its kind and line. minijinja's detail text is left
/// out because it can quote values (the message text, state), which must not be written into
/// `FlowFailed` events.
fn describe(error: &minijinja::Error) -> String {
    let what = match error.kind() {
        ErrorKind::OutOfFuel => {
            format!("template ran out of fuel ({TEMPLATE_FUEL_MAX} instructions)")
        }
        kind => format!("template error: {kind}"),
    };
    match error.line() {
        Some(line) => format!("{what} at line {line}"),
        None => what,
    }
}

/// The template context: `message`, `state`, `tenant`.
fn template_context(
    input: &Input<'_>,
    vars: &BTreeMap<String, String>,
    tenant: &TenantInfo<'_>,
) -> Value {
    let strings = |map: &BTreeMap<String, String>| -> Value {
        map.iter()
            .map(|(key, value)| (key.as_str(), Value::from(value.as_str())))
            .collect()
    };
    minijinja::context! {
        message => minijinja::context! { text => input.text, user => input.user },
        state => strings(vars),
        tenant => minijinja::context! { name => tenant.name, settings => strings(tenant.settings) },
    }
}

/// The one template environment, shared by all threads: it holds only configuration and the
/// builtin filters, never templates, so it is immutable after creation.
///
/// Each render compiles its template anew: measured at about 1 µs for a typical one-line
/// template, against about 1 µs for the render itself, which did not justify a cache of compiled
/// templates (and its bound) yet. Plain texts skip both (see [`is_template`]).
fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        // Jinja drops one trailing newline by default; keeping it makes a template render its
        // text exactly as a plain string would pass through.
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(TEMPLATE_FUEL_MAX));
        env
    })
}

/// Collects rendered output up to `limit` bytes; past it, refuses the write (which aborts the
/// render) so that a template cannot build unbounded output before the limit is checked.
struct BoundedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("rendered text over its limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
