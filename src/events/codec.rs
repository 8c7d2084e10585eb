//! Byte formats of the log: event bodies, append-group frames, checksums and the hash chain.
//!
//! A *frame* is one sled value of a tenant's log: whole append groups (a group is all events
//! of one inbound message: one session, contiguous seqs) with consecutive tenant seqs. Version 1
//! holds one group; version 2 holds the groups of one tenant that one batch of the stager took
//! (each session at most once, so every run of one session's records is one group):
//!
//! ```text
//! [0]       version: 1 (one group) or 2 (groups)
//! [1..5]    crc32c (LE) of bytes [5..]
//! [5..37]   prev_hash: chain hash before the frame's first event
//! [37..39]  count (LE u16), 1..=GROUP_EVENTS_MAX (v1) or 1..=FRAME_RECORDS_MAX (v2)
//! count x   [body_len: LE u32][body: MessagePack envelope]
//! ```
//!
//! The chain: `hash_i = SHA-256(hash_{i-1} || body_i)`, per tenant, from `GENESIS_HASH`. It covers
//! each body as written (ids, seqs, kind, payload bytes), never a re-encoding.
//!
//! Invariant: every length is checked against a named limit before anything sized by it is
//! allocated or decoded.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::schema::{
    decode_limited, Event, EventKind, EventView, KindView, SchemaError, SCHEMA_VERSION_PLAIN,
    SCHEMA_VERSION_SEALED,
};
use crate::events::seal::{self, DataKey, SealError, SealScope};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// Largest encoded event body, in bytes.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;
/// Largest user-supplied text (message text, reply text, state value), in bytes.
pub const TEXT_BYTES_MAX: usize = 16 * 1024;
/// Largest user id or message id, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Most entries in a `ConnectorRegistered` event's `capabilities`.
pub const CAPABILITIES_MAX: usize = 32;
/// Most events in one append group.
pub const GROUP_EVENTS_MAX: usize = 64;
/// Largest frame, in bytes. Below sled 0.34's blob threshold (segment size / 4 = 128 KiB): sled
/// writes a page (a leaf of up to ~17 keys and their values) larger than that to a blob file of
/// its own, which it never fsyncs, so a leaf of two such frames would get one.
pub const FRAME_BYTES_MAX: usize = 96 * 1024;

/// Most records in a frame of several groups (version 2).
pub const FRAME_RECORDS_MAX: usize = 4096;
/// A frame of several groups takes no group that would make it longer than this. A leaf of sled
/// holds up to ~17 consecutive frames, and a leaf written whole must stay below sled's blob
/// threshold (128 KiB, see [`FRAME_BYTES_MAX`]): 17 × 4 KiB is ~70 KiB. It also keeps a
/// session's read cheap (it hashes the records before its group in the frame), while one sled
/// key serves ~5 message groups.
pub const FRAME_COALESCE_BYTES: usize = 4 * 1024;

const _: () = assert!(EVENT_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(FRAME_COALESCE_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(GROUP_EVENTS_MAX <= FRAME_RECORDS_MAX);
const _: () = assert!(FRAME_RECORDS_MAX <= u16::MAX as usize);

/// Format version of a frame of one group.
pub const FRAME_VERSION: u8 = 1;
/// Format version of a frame of several groups.
pub const FRAME_VERSION_GROUPS: u8 = 2;
/// Chain hash before a tenant's first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Bytes before the first record of a frame.
pub const FRAME_HEADER_BYTES: usize = 1 + 4 + 32 + 2;

/// A chain hash.
pub type Hash = [u8; 32];

/// Bytes that are not a valid frame or body. Treat as corruption: name where it was found.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("frame of {0} bytes exceeds the limit of {FRAME_BYTES_MAX}")]
    FrameTooLarge(usize),
    #[error("unknown frame version {0}")]
    FrameVersion(u8),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("frame of version {version} declares {count} events (must be 1..={max})")]
    Count {
        version: u8,
        count: usize,
        max: usize,
    },
    #[error("record {index} declares {len} bytes, past the frame end or over {EVENT_BYTES_MAX}")]
    RecordLength { index: usize, len: usize },
    #[error("{0} trailing bytes after the last record")]
    Trailing(usize),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A sealed part that does not open although its session's data key exists: corruption.
    #[error("personal fields: {0}")]
    Seal(#[from] SealError),
    /// The data key could not be read (the store's error).
    #[error("reading the session's data key: {0}")]
    KeyStore(String),
    /// A sealed part on a body whose version or kind has none.
    #[error("a sealed part on a v{version} {kind} body")]
    UnexpectedSeal { version: u16, kind: String },
}

/// The envelope as stored. Field names are the on-disk contract.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    v: u16,
    id: uuid::Uuid,
    tenant: Cow<'a, TenantId>,
    env: Cow<'a, EnvId>,
    team: Cow<'a, TeamId>,
    channel: Cow<'a, ChannelId>,
    session: Cow<'a, SessionId>,
    seq: u64,
    tenant_seq: u64,
    at: u64,
    kind: Cow<'a, str>,
    #[serde(with = "serde_bytes", borrow)]
    data: Cow<'a, [u8]>,
    /// v3: the sealed personal fields ([`seal`]); absent when the kind has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<serde_bytes::ByteBuf>,
}

/// Whether a decoded event had sealed personal fields, and whether they opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// Nothing sealed (v1, v2, or a v3 kind without personal fields).
    Plain,
    /// Sealed, and opened with the session's data key.
    Opened,
    /// Sealed, and the session's data key is gone (erased) or was not offered: the personal
    /// fields read as empty strings.
    Erased,
}

/// A decoded event and the state of its personal fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub event: Event,
    pub sealing: Sealing,
}

/// Where a reader finds a session's data key.
pub trait KeySource {
    /// The session's data key; `Ok(None)` when it was erased (or never existed).
    fn data_key(&self, scope: &SealScope<'_>) -> Result<Option<DataKey>, String>;
}

/// An event's envelope by reference, so the writer encodes without cloning ids.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    pub id: uuid::Uuid,
    pub tenant: &'a TenantId,
    pub env: &'a EnvId,
    pub team: &'a TeamId,
    pub channel: &'a ChannelId,
    pub session: &'a SessionId,
    pub seq: u64,
    pub tenant_seq: u64,
    pub at_ms: u64,
    pub kind: &'a EventKind,
}

impl<'a> From<&'a Event> for EventRef<'a> {
    fn from(e: &'a Event) -> EventRef<'a> {
        EventRef {
            id: e.id,
            tenant: &e.tenant,
            env: &e.env,
            team: &e.team,
            channel: &e.channel,
            session: &e.session,
            seq: e.seq,
            tenant_seq: e.tenant_seq,
            at_ms: e.at_ms,
            kind: &e.kind,
        }
    }
}

/// Encodes one event's body.
pub fn encode_body(event: &Event) -> Vec<u8> {
    encode_body_ref(&EventRef::from(event))
}

/// Encodes one event's body from borrowed parts, unsealed (schema v2).
pub fn encode_body_ref(event: &EventRef<'_>) -> Vec<u8> {
    encode_envelope(event, SCHEMA_VERSION_PLAIN, event.kind.encode_data(), None)
}

/// Encodes one event's body as schema v3: its personal fields sealed under the session's data
/// `key` ([`seal`]), bound to the event's tenant, env, team, session and id.
pub fn encode_body_sealed(event: &EventRef<'_>, key: &DataKey) -> Vec<u8> {
    match seal::split(event.kind) {
        Some((public, personal)) => {
            let scope = SealScope {
                tenant: event.tenant.as_str(),
                env: event.env.as_str(),
                team: event.team.as_str(),
                session: event.session.as_str(),
            };
            let sealed = seal::seal(key, &seal::event_aad(&scope, &event.id), &personal);
            encode_envelope(
                event,
                SCHEMA_VERSION_SEALED,
                public.encode_data(),
                Some(serde_bytes::ByteBuf::from(sealed)),
            )
        }
        None => encode_envelope(event, SCHEMA_VERSION_SEALED, event.kind.encode_data(), None),
    }
}

fn encode_envelope(
    event: &EventRef<'_>,
    v: u16,
    data: Vec<u8>,
    sealed: Option<serde_bytes::ByteBuf>,
) -> Vec<u8> {
    let body = Body {
        v,
        id: event.id,
        tenant: Cow::Borrowed(event.tenant),
        env: Cow::Borrowed(event.env),
        team: Cow::Borrowed(event.team),
        channel: Cow::Borrowed(event.channel),
        session: Cow::Borrowed(event.session),
        seq: event.seq,
        tenant_seq: event.tenant_seq,
        at: event.at_ms,
        kind: Cow::Borrowed(event.kind.name()),
        data: Cow::Owned(data),
        sealed,
    };
    rmp_serde::to_vec_named(&body).expect("MessagePack encoding of plain fields is infallible")
}

/// Decodes one event's body, upcasting old schema versions, without keys: sealed personal
/// fields read as empty strings (see [`decode_body_with`]).
pub fn decode_body(bytes: &[u8]) -> Result<Event, CodecError> {
    decode_body_with(bytes, None).map(|d| d.event)
}

/// Decodes one event's body and opens its sealed personal fields with the session's data key
/// from `keys`. A missing key (or `keys` = `None`) leaves them empty ([`Sealing::Erased`]); a
/// key that does not open them is an error.
pub fn decode_body_with(bytes: &[u8], keys: Option<&dyn KeySource>) -> Result<Decoded, CodecError> {
    if bytes.len() > EVENT_BYTES_MAX {
        return Err(CodecError::RecordLength {
            index: 0,
            len: bytes.len(),
        });
    }
    let body: Body = decode_limited(bytes)?;
    let mut kind = EventKind::decode_data(&body.kind, body.v, &body.data, &body.id)?;
    let sealing = match &body.sealed {
        None => Sealing::Plain,
        Some(_)
            if body.v < SCHEMA_VERSION_SEALED || seal::personal_fields(kind.name()).is_empty() =>
        {
            return Err(CodecError::UnexpectedSeal {
                version: body.v,
                kind: kind.name().to_owned(),
            })
        }
        Some(sealed) => {
            let scope = SealScope {
                tenant: body.tenant.as_str(),
                env: body.env.as_str(),
                team: body.team.as_str(),
                session: body.session.as_str(),
            };
            let key = match keys {
                Some(keys) => keys.data_key(&scope).map_err(CodecError::KeyStore)?,
                None => None,
            };
            match key {
                Some(key) => {
                    let opened = seal::open(&key, &seal::event_aad(&scope, &body.id), sealed)?;
                    seal::overlay(&mut kind, &opened)?;
                    Sealing::Opened
                }
                None => Sealing::Erased,
            }
        }
    };
    let event = Event {
        id: body.id,
        tenant: body.tenant.into_owned(),
        env: body.env.into_owned(),
        team: body.team.into_owned(),
        channel: body.channel.into_owned(),
        session: body.session.into_owned(),
        seq: body.seq,
        tenant_seq: body.tenant_seq,
        at_ms: body.at,
        kind,
    };
    Ok(Decoded { event, sealing })
}

/// The envelope as a fold reads it: the same fields, strings and data borrowed from the body,
/// the event id skipped unread.
#[derive(Deserialize)]
struct BodyView<'a> {
    v: u16,
    #[serde(borrow)]
    id: &'a serde_bytes::Bytes,
    tenant: &'a str,
    env: &'a str,
    team: &'a str,
    channel: &'a str,
    session: &'a str,
    seq: u64,
    tenant_seq: u64,
    at: u64,
    kind: &'a str,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
    #[serde(default, borrow)]
    sealed: Option<&'a serde_bytes::Bytes>,
}

/// Decodes what a fold needs of one event's body ([`EventView`]), borrowing its strings, for any
/// schema version [`decode_body`] reads. The ids are not validated here: the caller checks them
/// (see the log's fold reads), once per frame rather than once per event. It reads what
/// [`decode_body`] reads in every form a writer produces; it refuses a `data` that is not a
/// MessagePack byte string (an array of integers), which [`decode_body`] would copy into one.
pub fn decode_body_view(bytes: &[u8]) -> Result<EventView<'_>, CodecError> {
    decode_body_view_sealed(bytes).map(|(view, _)| view)
}

/// A v3 body's sealed part as the fold finds it: the event id (for the associated data) and
/// the sealed bytes.
#[derive(Clone, Copy, Debug)]
pub struct SealedRef<'a> {
    pub id: &'a [u8],
    pub sealed: &'a [u8],
}

/// [`decode_body_view`], plus the body's sealed part when it has one: the view's personal
/// fields are then empty until the caller opens it ([`open_view`]).
pub fn decode_body_view_sealed(
    bytes: &[u8],
) -> Result<(EventView<'_>, Option<SealedRef<'_>>), CodecError> {
    decode_body_view_after(bytes, None)
}

/// [`decode_body_view_sealed`] of a record that follows `prev` in the same frame: an id with
/// the same bytes as `prev`'s is borrowed from `prev` (the same text, checked once).
pub fn decode_body_view_after<'a>(
    bytes: &'a [u8],
    prev: Option<&EventView<'a>>,
) -> Result<(EventView<'a>, Option<SealedRef<'a>>), CodecError> {
    if bytes.len() > EVENT_BYTES_MAX {
        return Err(CodecError::RecordLength {
            index: 0,
            len: bytes.len(),
        });
    }
    // The writer's layout is read directly (the kind's data too: `schema::fast`); any other
    // form the serde way.
    let body: BodyView = match envelope::read(bytes, prev) {
        Some(body) => body,
        None => decode_limited(bytes)?,
    };
    let kind = KindView::decode(body.kind, body.v, body.data)?;
    let sealed = body.sealed.map(|s| SealedRef {
        id: body.id,
        sealed: s,
    });
    let view = EventView {
        tenant: body.tenant,
        env: body.env,
        team: body.team,
        channel: body.channel,
        session: body.session,
        seq: body.seq,
        tenant_seq: body.tenant_seq,
        at_ms: body.at,
        kind,
    };
    Ok((view, sealed))
}

/// Opens a view's sealed part with the session's data key: the opened personal fields, which
/// [`overlay_view`] then puts into the view.
pub fn open_view(
    view: &EventView<'_>,
    sealed: &SealedRef<'_>,
    key: &DataKey,
) -> Result<zeroize::Zeroizing<Vec<u8>>, CodecError> {
    let mut opened = zeroize::Zeroizing::new(Vec::new());
    open_view_into(view, sealed, key, &mut Vec::new(), &mut opened)?;
    Ok(opened)
}

/// [`open_view`] appending the opened fields to `out` (where: the range returned), with `aad`
/// as scratch: a fold opens a frame's parts into one buffer and allocates nothing per event.
/// On an error `out` is as it was.
pub fn open_view_into(
    view: &EventView<'_>,
    sealed: &SealedRef<'_>,
    key: &DataKey,
    aad: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<std::ops::Range<usize>, CodecError> {
    let id = uuid::Uuid::from_slice(sealed.id)
        .map_err(|e| CodecError::Schema(SchemaError::Malformed(format!("event id: {e}"))))?;
    let scope = SealScope {
        tenant: view.tenant,
        env: view.env,
        team: view.team,
        session: view.session,
    };
    seal::event_aad_into(aad, &scope, id.as_bytes());
    Ok(seal::open_into(key, aad, sealed.sealed, out)?)
}

/// Puts personal fields opened by [`open_view`] into the view.
pub fn overlay_view<'a>(view: &mut EventView<'a>, opened: &'a [u8]) -> Result<(), CodecError> {
    let p = seal::personal_view(opened)?;
    match &mut view.kind {
        KindView::SessionStarted { user, .. } => *user = p.user.unwrap_or_default(),
        KindView::MessageReceived { text } => *text = p.text.unwrap_or_default(),
        KindView::ReplySent { text_bytes } => *text_bytes = p.text.map_or(0, str::len),
        KindView::StateSet { value, .. } => *value = p.value.unwrap_or_default(),
        _ => {}
    }
    Ok(())
}

/// `SHA-256(prev || body)`.
pub fn chain_hash(prev: &Hash, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// Builds a frame of one group from already encoded bodies. The caller enforces the group
/// limits.
pub fn encode_frame(prev_hash: &Hash, bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = FrameBuilder::with_capacity(prev_hash, frame_len(bodies));
    for body in bodies {
        frame.push(body);
    }
    frame.finish()
}

/// Bytes a frame of one group with these bodies takes.
pub fn frame_len(bodies: &[Vec<u8>]) -> usize {
    FRAME_HEADER_BYTES + bodies.iter().map(|b| 4 + b.len()).sum::<usize>()
}

/// A frame being built record by record: version 1 while it holds one group, 2 once
/// [`FrameBuilder::next_group`] was called. The caller enforces the limits (`EVENT_BYTES_MAX`
/// per body; `GROUP_EVENTS_MAX` per group, `FRAME_RECORDS_MAX` and `FRAME_BYTES_MAX` per frame).
pub struct FrameBuilder {
    bytes: Vec<u8>,
    count: u16,
}

impl FrameBuilder {
    pub fn with_capacity(prev_hash: &Hash, capacity: usize) -> FrameBuilder {
        let mut bytes = Vec::with_capacity(capacity.max(FRAME_HEADER_BYTES));
        bytes.push(FRAME_VERSION);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(prev_hash);
        bytes.extend_from_slice(&[0; 2]);
        FrameBuilder { bytes, count: 0 }
    }

    /// The records pushed from now on are another group's.
    pub fn next_group(&mut self) {
        self.bytes[0] = FRAME_VERSION_GROUPS;
    }

    pub fn push(&mut self, body: &[u8]) {
        let body_len =
            u32::try_from(body.len()).expect("body size is checked against EVENT_BYTES_MAX");
        self.bytes.extend_from_slice(&body_len.to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.count += 1;
    }

    /// Bytes of the frame so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Records in the frame so far.
    pub fn records(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The frame, its count and checksum written.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes[37..39].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.bytes[5..]);
        self.bytes[1..5].copy_from_slice(&crc.to_le_bytes());
        self.bytes
    }
}

/// A checked view of a frame: the checksum matched and every record lies within bounds.
pub struct FrameView<'a> {
    /// [`FRAME_VERSION`] (one group) or [`FRAME_VERSION_GROUPS`].
    pub version: u8,
    pub prev_hash: Hash,
    pub bodies: Vec<&'a [u8]>,
}

impl FrameView<'_> {
    /// Chain hashes of the frame's records, in order.
    pub fn hashes(&self) -> Vec<Hash> {
        let mut prev = self.prev_hash;
        self.bodies
            .iter()
            .map(|body| {
                prev = chain_hash(&prev, body);
                prev
            })
            .collect()
    }

    /// Chain hash after the frame's last record.
    pub fn last_hash(&self) -> Hash {
        self.bodies
            .iter()
            .fold(self.prev_hash, |prev, body| chain_hash(&prev, body))
    }
}

/// The record count a frame's header declares (unchecked: [`decode_frame`] checks it).
pub fn frame_records(bytes: &[u8]) -> Option<usize> {
    let count = bytes.get(37..39)?;
    Some(usize::from(u16::from_le_bytes([count[0], count[1]])))
}

/// Checks a frame's structure and checksum without decoding its bodies.
pub fn decode_frame(bytes: &[u8]) -> Result<FrameView<'_>, CodecError> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(CodecError::FrameTooLarge(bytes.len()));
    }
    let version = bytes[0];
    let records_max = match version {
        FRAME_VERSION => GROUP_EVENTS_MAX,
        FRAME_VERSION_GROUPS => FRAME_RECORDS_MAX,
        other => return Err(CodecError::FrameVersion(other)),
    };
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let computed = crc32c::crc32c(&bytes[5..]);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    let mut prev_hash = [0; 32];
    prev_hash.copy_from_slice(&bytes[5..37]);
    let count = usize::from(u16::from_le_bytes([bytes[37], bytes[38]]));
    if !(1..=records_max).contains(&count) {
        return Err(CodecError::Count {
            version,
            count,
            max: records_max,
        });
    }
    let mut bodies = Vec::with_capacity(count);
    let mut rest = &bytes[FRAME_HEADER_BYTES..];
    for index in 0..count {
        let Some((len_bytes, after)) = rest.split_first_chunk::<4>() else {
            return Err(CodecError::RecordLength {
                index,
                len: rest.len(),
            });
        };
        let len = usize::try_from(u32::from_le_bytes(*len_bytes)).unwrap_or(usize::MAX);
        if len > EVENT_BYTES_MAX || len > after.len() {
            return Err(CodecError::RecordLength { index, len });
        }
        let (body, after) = after.split_at(len);
        bodies.push(body);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(FrameView {
        version,
        prev_hash,
        bodies,
    })
}

mod envelope;

#[cfg(test)]
mod tests;
