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
pub(crate) const FIXMAP: u8 = 0x80;
const FIXSTR: u8 = 0xa0;
const FIXSTR_LEN_MASK: u8 = 0x1f;

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
    let tenant = c.id(prev.map(|p| p.tenant))?;
    c.key(KEYS[3])?;
    let env = c.id(prev.map(|p| p.env))?;
    c.key(KEYS[4])?;
    let team = c.id(prev.map(|p| p.team))?;
    c.key(KEYS[5])?;
    let channel = c.id(prev.map(|p| p.channel))?;
    c.key(KEYS[6])?;
    let session = c.id(prev.map(|p| p.session))?;
    c.key(KEYS[7])?;
    let seq = c.uint()?;
    c.key(KEYS[8])?;
    let tenant_seq = c.uint()?;
    c.key(KEYS[9])?;
    let at = c.uint()?;
    c.key(KEYS[10])?;
    let kind = c.kind_name()?;
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

/// A cursor over MessagePack bytes; every read is bounds-checked and `None` past the end.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Whether every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    /// A big-endian unsigned integer of `n` bytes (n <= 8).
    fn be(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n)?;
        Some(bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Option<usize> {
        usize::try_from(self.be(n)?).ok()
    }

    /// A non-negative integer in any of MessagePack's unsigned forms.
    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    /// The bytes of a string in any of MessagePack's str forms, not checked to be UTF-8.
    pub(crate) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            b if b & !FIXSTR_LEN_MASK == FIXSTR => usize::from(b & FIXSTR_LEN_MASK),
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            _ => return None,
        };
        self.take(len)
    }

    /// A string in any of MessagePack's str forms, checked to be UTF-8.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// A string, borrowed from `prev` when it has the same bytes (so checked already).
    fn id(&mut self, prev: Option<&'a str>) -> Option<&'a str> {
        let bytes = self.str_bytes()?;
        match prev {
            Some(prev) if prev.as_bytes() == bytes => Some(prev),
            _ => std::str::from_utf8(bytes).ok(),
        }
    }

    /// A kind's name: one this build knows without a UTF-8 check ([`known_kind`]), any other
    /// string with one (an unknown kind is the caller's error to report).
    fn kind_name(&mut self) -> Option<&'a str> {
        let bytes = self.str_bytes()?;
        match known_kind(bytes) {
            Some(name) => Some(name),
            None => std::str::from_utf8(bytes).ok(),
        }
    }

    /// A byte string in any of MessagePack's bin forms.
    fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            0xc4 => self.len(1)?,
            0xc5 => self.len(2)?,
            0xc6 => self.len(4)?,
            _ => return None,
        };
        self.take(len)
    }

    /// The key `key`: a fixstr's marker and name, as in [`KEYS`] (inlined, so that each call
    /// compares a constant).
    #[inline(always)]
    pub(crate) fn key(&mut self, key: &[u8]) -> Option<()> {
        (self.take(key.len())? == key).then_some(())
    }
}
