//! The fold's fast read of an event's envelope, in exactly the layout this build's writer
//! produces (`rmp_serde::to_vec_named` of `Body`): a map of 12 entries (13 with a v3 `sealed`
//! part) whose keys come in the struct's order, as the shortest MessagePack forms of their values.
//!
//! rmp-serde's generic path matches every key by name after checking it is UTF-8 and dispatches
//! every value through serde; for the layout we write, the keys are known bytes at known places.
//! Anything else (another order, a struct as an array, an unexpected marker, a version out of
//! `u16`) gives `None` and the caller decodes with serde, so this reader accepts a subset of what
//! serde accepts and reads it the same way (the fuzz check of `check_event_body` compares both
//! with the full decoder). Every length is checked against the bytes left before it is used.
//!
//! Two shortcuts keep the per-event cost low, neither changing what is read: the keys are
//! compared as constant byte strings (marker and name, which the compiler compares inline), and
//! an id whose bytes equal the same id of the record before it in the frame is that record's
//! `&str` again, not checked for UTF-8 a second time (a frame's records repeat their ids).

use super::BodyView;
use crate::events::msgpack::Reader;
use crate::events::schema::{known_kind, EventView};

/// The keys of `Body` in its field order, each as its fixstr marker and name.
pub(super) const KEYS: [&[u8]; 12] = [
    b"\xa1v",
    b"\xa2id",
    b"\xa6tenant",
    b"\xa3env",
    b"\xa4team",
    b"\xa7channel",
    b"\xa7session",
    b"\xa3seq",
    b"\xaatenant_seq",
    b"\xa2at",
    b"\xa4kind",
    b"\xa4data",
];

/// MessagePack markers of the forms the writer uses.
const FIXMAP_12: u8 = 0x80 | 12;
/// A v3 body with a sealed part: the 12 keys, then `sealed`.
const FIXMAP_13: u8 = 0x80 | 13;
/// The 13th key of a v3 body with a sealed part (marker and name).
pub(super) const SEALED_KEY: &[u8] = b"\xa6sealed";

/// Reads the envelope of `bytes` if it is in the writer's layout. `prev` is the record before
/// it in the same frame, if any: ids equal to its ids are borrowed from it.
pub(super) fn read<'a>(bytes: &'a [u8], prev: Option<&EventView<'a>>) -> Option<BodyView<'a>> {
    let mut c = Reader::new(bytes);
    let map = c.byte()?;
    if map != FIXMAP_12 && map != FIXMAP_13 {
        return None;
    }
    c.key(KEYS[0])?;
    let v = u16::try_from(c.uint()?).ok()?;
    c.key(KEYS[1])?;
    let id = c.bin()?;
    c.key(KEYS[2])?;
    let tenant = same_or_checked(&mut c, prev.map(|p| p.tenant))?;
    c.key(KEYS[3])?;
    let env = same_or_checked(&mut c, prev.map(|p| p.env))?;
    c.key(KEYS[4])?;
    let team = same_or_checked(&mut c, prev.map(|p| p.team))?;
    c.key(KEYS[5])?;
    let channel = same_or_checked(&mut c, prev.map(|p| p.channel))?;
    c.key(KEYS[6])?;
    let session = same_or_checked(&mut c, prev.map(|p| p.session))?;
    c.key(KEYS[7])?;
    let seq = c.uint()?;
    c.key(KEYS[8])?;
    let tenant_seq = c.uint()?;
    c.key(KEYS[9])?;
    let at = c.uint()?;
    c.key(KEYS[10])?;
    let kind = kind_name(&mut c)?;
    c.key(KEYS[11])?;
    let data = c.bin()?;
    let sealed = if map == FIXMAP_13 {
        c.key(SEALED_KEY)?;
        Some(serde_bytes::Bytes::new(c.bin()?))
    } else {
        None
    };
    Some(BodyView {
        v,
        id: serde_bytes::Bytes::new(id),
        tenant,
        env,
        team,
        channel,
        session,
        seq,
        tenant_seq,
        at,
        kind,
        data,
        sealed,
    })
}

/// A string, borrowed from `prev` when it has the same bytes (so checked already).
fn same_or_checked<'a>(c: &mut Reader<'a>, prev: Option<&'a str>) -> Option<&'a str> {
    let bytes = c.str_bytes()?;
    match prev {
        Some(prev) if prev.as_bytes() == bytes => Some(prev),
        _ => std::str::from_utf8(bytes).ok(),
    }
}

/// A kind's name: one this build knows without a UTF-8 check ([`known_kind`]), any other
/// string with one (an unknown kind is the caller's error to report).
fn kind_name<'a>(c: &mut Reader<'a>) -> Option<&'a str> {
    let bytes = c.str_bytes()?;
    match known_kind(bytes) {
        Some(name) => Some(name),
        None => std::str::from_utf8(bytes).ok(),
    }
}
