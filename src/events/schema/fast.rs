//! The fold's fast read of a kind's name and data, in exactly the layout this build's writer
//! produces (`rmp_serde::to_vec_named` of the kind's data struct: a map of its fields, in the
//! struct's order, each a string for the kinds read here), as `codec::envelope` reads the
//! envelope. Anything else gives `None` and [`KindView::decode`] reads it with serde, so this
//! accepts a subset of what serde accepts and reads it the same way; a field the view does not
//! take is skipped unread, as serde's `IgnoredAny` skips it.

use super::{KindView, SCHEMA_VERSION_MIN};
use crate::events::msgpack::{Reader, FIXMAP};

/// The name of a kind this build knows, matched as bytes (so not checked for UTF-8 again);
/// `None` for any other bytes.
pub(crate) fn known_kind(bytes: &[u8]) -> Option<&'static str> {
    Some(match bytes {
        b"SessionStarted" => "SessionStarted",
        b"MessageReceived" => "MessageReceived",
        b"NodeEntered" => "NodeEntered",
        b"ReplySent" => "ReplySent",
        b"StateSet" => "StateSet",
        b"AwaitingInput" => "AwaitingInput",
        b"FlowFailed" => "FlowFailed",
        b"SessionEnded" => "SessionEnded",
        b"ConnectorRegistered" => "ConnectorRegistered",
        b"ConnectorStateChanged" => "ConnectorStateChanged",
        b"OutboxAcked" => "OutboxAcked",
        b"OutboxDeadLettered" => "OutboxDeadLettered",
        _ => return None,
    })
}

// The data structs' keys, each as its fixstr marker and name.
const USER: &[u8] = b"\xa4user";
const FLOW: &[u8] = b"\xa4flow";
const FLOW_VERSION: &[u8] = b"\xacflow_version";
const MESSAGE_ID: &[u8] = b"\xaamessage_id";
const TEXT: &[u8] = b"\xa4text";
const NODE: &[u8] = b"\xa4node";
const KEY: &[u8] = b"\xa3key";
const VALUE: &[u8] = b"\xa5value";
const ERROR: &[u8] = b"\xa5error";
const REASON: &[u8] = b"\xa6reason";

/// Whether a field is taken (a `&str`, checked to be UTF-8) or skipped unread.
const TAKE: bool = true;
const SKIP: bool = false;

/// The view of the data of kind `name` (schema `version`, already checked to be one this build
/// reads) if it is in the writer's layout; `None` otherwise and for the connector kinds.
pub(super) fn kind_view<'a>(name: &str, version: u16, data: &'a [u8]) -> Option<KindView<'a>> {
    Some(match name {
        "SessionStarted" => {
            let [user, flow, flow_version] =
                fields(data, [USER, FLOW, FLOW_VERSION], [TAKE, TAKE, TAKE])?;
            KindView::SessionStarted {
                user,
                flow,
                flow_version,
            }
        }
        "MessageReceived" if version == SCHEMA_VERSION_MIN => {
            let [_, text] = fields(data, [USER, TEXT], [SKIP, TAKE])?;
            KindView::MessageReceived { text }
        }
        "MessageReceived" => {
            let [_, _, text] = fields(data, [MESSAGE_ID, USER, TEXT], [SKIP, SKIP, TAKE])?;
            KindView::MessageReceived { text }
        }
        "NodeEntered" => {
            let [node] = fields(data, [NODE], [TAKE])?;
            KindView::NodeEntered { node }
        }
        "ReplySent" => {
            let [_, text] = fields(data, [NODE, TEXT], [SKIP, TAKE])?;
            KindView::ReplySent {
                text_bytes: text.len(),
            }
        }
        "StateSet" => {
            let [key, value] = fields(data, [KEY, VALUE], [TAKE, TAKE])?;
            KindView::StateSet { key, value }
        }
        "AwaitingInput" => {
            let [node, key] = fields(data, [NODE, KEY], [TAKE, TAKE])?;
            KindView::AwaitingInput { node, key }
        }
        "FlowFailed" => {
            fields(data, [NODE, ERROR], [SKIP, SKIP])?;
            KindView::FlowFailed
        }
        "SessionEnded" => {
            let [reason] = fields(data, [REASON], [TAKE])?;
            KindView::SessionEnded { reason }
        }
        _ => return None,
    })
}

/// The `N` string fields of a map of exactly the keys `keys`, in that order, and nothing after
/// it; a field not taken is `""`.
#[inline(always)]
fn fields<'a, const N: usize>(
    data: &'a [u8],
    keys: [&[u8]; N],
    take: [bool; N],
) -> Option<[&'a str; N]> {
    let mut c = Reader::new(data);
    if c.byte()? != FIXMAP | u8::try_from(N).ok()? {
        return None;
    }
    let mut out = [""; N];
    for ((key, take), out) in keys.into_iter().zip(take).zip(&mut out) {
        c.key(key)?;
        if take {
            *out = c.str()?;
        } else {
            c.str_bytes()?;
        }
    }
    c.at_end().then_some(out)
}

#[cfg(test)]
mod tests;
