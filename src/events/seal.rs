//! Sealing of an event's personal fields (schema v3) for erasure by crypto-shredding.
//!
//! A v3 body keeps the kind's non-personal fields readable in `data` (the personal ones are
//! there as empty strings, so every decoder of the v2 shapes reads it) and carries the personal
//! ones in `sealed`: `nonce (24) || XChaCha20-Poly1305 ciphertext || tag (16)` of a MessagePack
//! map of the personal fields (`Personal`), under the session's data key ([`DataKey`]), with
//! the associated data [`event_aad`] (tenant, env, team, session and event id), so a sealed part
//! moved to another event or session does not open. Destroying the data key makes the sealed
//! part unreadable for good: the event then reads as its non-personal fields, *erased*.
//!
//! Personal fields: `SessionStarted.user`, `MessageReceived.user` and `.text`, `ReplySent.text`,
//! `StateSet.value`, `FlowFailed.error` (it may echo user text).
//!
//! A data key is stored wrapped ([`wrap_key`]) by the tenant's key encryption key, with the
//! session's ids as associated data ([`session_aad`]).

use std::borrow::Cow;

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::events::schema::{decode_limited, EventKind};

/// Bytes of a data key and of a key encryption key (XChaCha20-Poly1305 keys are 256 bits).
pub const DATA_KEY_BYTES: usize = 32;
/// Bytes of an XChaCha20 nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of a Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// Bytes of a wrapped data key: nonce, the key's ciphertext, tag.
pub const WRAPPED_KEY_BYTES: usize = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES;

/// Domain label at the start of an event's associated data.
const EVENT_AAD_LABEL: &[u8] = b"tenantry event v3\0";
/// Domain label at the start of a wrapped key's associated data.
const KEY_AAD_LABEL: &[u8] = b"tenantry data key v1\0";
/// Domain label at the start of a sealed session user's associated data (session meta).
const USER_AAD_LABEL: &[u8] = b"tenantry session user v1\0";
/// Domain label at the start of a stored reply's associated data (idempotency records).
const REPLY_AAD_LABEL: &[u8] = b"tenantry stored reply v1\0";

/// A sealed part or a wrapped key that does not open: wrong key, moved, or changed bytes.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Shorter than nonce and tag.
    #[error("sealed part of {0} bytes is shorter than nonce and tag")]
    Truncated(usize),
    /// The AEAD tag does not match.
    #[error("sealed part does not open: changed bytes, another event's part, or the wrong key")]
    Open,
    /// It opened, but is not a map of personal fields (or not a 32-byte key).
    #[error("sealed part opened but is malformed: {0}")]
    Malformed(String),
}

/// A 256-bit symmetric key: a session's data key or a tenant's key encryption key. Zeroed on
/// drop; its `Debug` shows no bytes.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_BYTES]>);

impl DataKey {
    /// A fresh random key from the OS.
    pub fn generate() -> DataKey {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0; DATA_KEY_BYTES];
        bytes.copy_from_slice(&key);
        DataKey(Zeroizing::new(bytes))
    }

    /// A key from exactly [`DATA_KEY_BYTES`] bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        let bytes: [u8; DATA_KEY_BYTES] = bytes.try_into().ok()?;
        Some(DataKey(Zeroizing::new(bytes)))
    }

    /// The key's bytes.
    pub fn expose(&self) -> &[u8; DATA_KEY_BYTES] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.0.as_slice()))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The ids a sealed part or a wrapped key is bound to.
#[derive(Clone, Copy, Debug)]
pub struct SealScope<'a> {
    pub tenant: &'a str,
    pub env: &'a str,
    pub team: &'a str,
    pub session: &'a str,
}

impl SealScope<'_> {
    fn push(&self, out: &mut Vec<u8>) {
        for part in [self.tenant, self.env, self.team, self.session] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
    }
}

/// Associated data of one event's sealed part: label, the scope's ids (each `\0`-terminated;
/// ids never contain `\0`) and the event id's 16 bytes.
pub fn event_aad(scope: &SealScope<'_>, event_id: &uuid::Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_AAD_LABEL.len() + 64 + 16);
    event_aad_into(&mut out, scope, event_id.as_bytes());
    out
}

/// [`event_aad`] into `out` (cleared first), from the event id's 16 bytes: a fold reuses one
/// buffer for every event it opens.
pub fn event_aad_into(out: &mut Vec<u8>, scope: &SealScope<'_>, event_id: &[u8; 16]) {
    out.clear();
    out.extend_from_slice(EVENT_AAD_LABEL);
    scope.push(out);
    out.extend_from_slice(event_id);
}

/// Associated data of a session's wrapped data key.
pub fn session_aad(scope: &SealScope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_AAD_LABEL.len() + 64);
    out.extend_from_slice(KEY_AAD_LABEL);
    scope.push(&mut out);
    out
}

/// Associated data of the user id sealed in a session's meta: label and the session's ids.
pub fn user_aad(scope: &SealScope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(USER_AAD_LABEL.len() + 64);
    out.extend_from_slice(USER_AAD_LABEL);
    scope.push(&mut out);
    out
}

/// Associated data of the reply stored in an idempotency record: label, the session's ids and
/// the record's key (it names channel and message id), so a sealed reply moved to another
/// record does not open.
pub fn reply_aad(scope: &SealScope<'_>, record_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REPLY_AAD_LABEL.len() + 64 + record_key.len());
    out.extend_from_slice(REPLY_AAD_LABEL);
    scope.push(&mut out);
    out.extend_from_slice(record_key);
    out
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`, with a fresh random nonce.
///
/// The nonce comes from the thread's CSPRNG (`rand`'s `ThreadRng`: ChaCha12, seeded and
/// reseeded from the OS), not from a `getrandom` syscall per seal: the log's stager seals every
/// event's personal fields, and that syscall was ~1% of a loaded server's samples. 192 random
/// bits make a repeated nonce negligible either way. Keys still come from the OS ([`OsRng`]).
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with_nonce(
        key,
        &XChaCha20Poly1305::generate_nonce(&mut rand::thread_rng()),
        aad,
        plaintext,
    )
}

/// `nonce || ciphertext || tag` of `plaintext` under `key` with `nonce`.
fn seal_with_nonce(
    key: &DataKey,
    nonce: &chacha20poly1305::XNonce,
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let sealed = key
        .cipher()
        .encrypt(
            nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Domain label of the synthetic nonces of [`seal_deterministic`].
const SYNTHETIC_NONCE_LABEL: &[u8] = b"tenantry synthetic nonce v1\0";

/// Like [`seal`], but the nonce is derived from the key, `aad` and `plaintext` (HMAC-SHA256,
/// cut to the nonce size: a synthetic IV), so the same value under the same key and `aad`
/// seals to the same bytes. For derived data that must stay byte-identical when refolded (the
/// read models: a rebuild equals the incremental fold); it shows only that two such values are
/// equal. Opened by [`open`].
pub fn seal_deterministic(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose())
        .expect("HMAC accepts a key of any length");
    mac.update(SYNTHETIC_NONCE_LABEL);
    mac.update(&(aad.len() as u64).to_be_bytes());
    mac.update(aad);
    mac.update(plaintext);
    let digest = mac.finalize().into_bytes();
    let nonce = chacha20poly1305::XNonce::from_slice(&digest[..NONCE_BYTES]);
    seal_with_nonce(key, nonce, aad, plaintext)
}

/// Opens what [`seal`] or [`seal_deterministic`] made.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let mut opened = Zeroizing::new(Vec::new());
    open_into(key, aad, sealed, &mut opened)?;
    Ok(opened)
}

/// [`open`] appending the plaintext to `out` (decrypted in place there: no allocation of its
/// own, so a fold opens a frame's parts into one buffer); returns where in `out` it is. On an
/// error `out` is as it was.
pub fn open_into(
    key: &DataKey,
    aad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<std::ops::Range<usize>, SealError> {
    use chacha20poly1305::aead::AeadInPlace;
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(SealError::Truncated(sealed.len()));
    }
    let (nonce, rest) = sealed.split_at(NONCE_BYTES);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
    let start = out.len();
    out.extend_from_slice(ciphertext);
    let opened = key.cipher().decrypt_in_place_detached(
        XNonce::from_slice(nonce),
        aad,
        &mut out[start..],
        chacha20poly1305::Tag::from_slice(tag),
    );
    match opened {
        Ok(()) => Ok(start..out.len()),
        // The tag is checked before anything is decrypted: what is dropped is ciphertext.
        Err(_) => {
            out.truncate(start);
            Err(SealError::Open)
        }
    }
}

/// A session's data key wrapped by the tenant's key encryption key ([`WRAPPED_KEY_BYTES`]).
pub fn wrap_key(kek: &DataKey, scope: &SealScope<'_>, key: &DataKey) -> Vec<u8> {
    seal(kek, &session_aad(scope), key.expose())
}

/// Unwraps what [`wrap_key`] made.
pub fn unwrap_key(
    kek: &DataKey,
    scope: &SealScope<'_>,
    wrapped: &[u8],
) -> Result<DataKey, SealError> {
    let bytes = open(kek, &session_aad(scope), wrapped)?;
    DataKey::from_slice(&bytes)
        .ok_or_else(|| SealError::Malformed(format!("a data key of {} bytes", bytes.len())))
}

/// Names of the personal fields of the kind `kind` (empty for a kind without any).
pub fn personal_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "SessionStarted" => &["user"],
        "MessageReceived" => &["user", "text"],
        "ReplySent" => &["text"],
        "StateSet" => &["value"],
        "FlowFailed" => &["error"],
        _ => &[],
    }
}

/// The key added to an erased event's data in every JSON view (API, exports, replay).
pub const ERASED_FIELD: &str = "erased";

/// `data` (a kind's fields as JSON) without its personal fields and the erased marker: what a
/// sealed event's data shows whether or not its key still exists.
pub fn public_json(kind: &str, data: &serde_json::Value) -> serde_json::Value {
    let mut data = data.clone();
    if let Some(map) = data.as_object_mut() {
        for field in personal_fields(kind) {
            map.remove(*field);
        }
        map.remove(ERASED_FIELD);
    }
    data
}

/// The personal fields of one event, as sealed (MessagePack map; absent fields omitted).
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Personal<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'a, str>>,
}

fn b(s: &str) -> Option<Cow<'_, str>> {
    Some(Cow::Borrowed(s))
}

/// Splits a kind into its public form (personal fields empty) and its personal fields; `None`
/// for a kind without personal fields.
pub(crate) fn split(kind: &EventKind) -> Option<(EventKind, Vec<u8>)> {
    let empty = String::new;
    let (public, personal) = match kind {
        EventKind::SessionStarted {
            user,
            flow,
            flow_version,
        } => (
            EventKind::SessionStarted {
                user: empty(),
                flow: flow.clone(),
                flow_version: flow_version.clone(),
            },
            Personal {
                user: b(user),
                ..Personal::default()
            },
        ),
        EventKind::MessageReceived {
            message_id,
            user,
            text,
        } => (
            EventKind::MessageReceived {
                message_id: message_id.clone(),
                user: empty(),
                text: empty(),
            },
            Personal {
                user: b(user),
                text: b(text),
                ..Personal::default()
            },
        ),
        EventKind::ReplySent { node, text } => (
            EventKind::ReplySent {
                node: node.clone(),
                text: empty(),
            },
            Personal {
                text: b(text),
                ..Personal::default()
            },
        ),
        EventKind::StateSet { key, value } => (
            EventKind::StateSet {
                key: key.clone(),
                value: empty(),
            },
            Personal {
                value: b(value),
                ..Personal::default()
            },
        ),
        EventKind::FlowFailed { node, error } => (
            EventKind::FlowFailed {
                node: node.clone(),
                error: empty(),
            },
            Personal {
                error: b(error),
                ..Personal::default()
            },
        ),
        EventKind::NodeEntered { .. }
        | EventKind::AwaitingInput { .. }
        | EventKind::SessionEnded { .. }
        | EventKind::ConnectorRegistered { .. }
        | EventKind::ConnectorStateChanged { .. }
        | EventKind::OutboxAcked { .. }
        | EventKind::OutboxDeadLettered { .. } => return None,
    };
    let bytes = rmp_serde::to_vec_named(&personal).expect("MessagePack of strings is infallible");
    Some((public, bytes))
}

/// Puts opened personal fields back into a kind decoded from a v3 `data`.
pub(crate) fn overlay(kind: &mut EventKind, opened: &[u8]) -> Result<(), SealError> {
    let p: Personal<'_> =
        decode_limited(opened).map_err(|e| SealError::Malformed(e.to_string()))?;
    let put = |field: &mut String, v: Option<Cow<'_, str>>| {
        if let Some(v) = v {
            *field = v.into_owned();
        }
    };
    match kind {
        EventKind::SessionStarted { user, .. } => put(user, p.user),
        EventKind::MessageReceived { user, text, .. } => {
            put(user, p.user);
            put(text, p.text);
        }
        EventKind::ReplySent { text, .. } => put(text, p.text),
        EventKind::StateSet { value, .. } => put(value, p.value),
        EventKind::FlowFailed { error, .. } => put(error, p.error),
        EventKind::NodeEntered { .. }
        | EventKind::AwaitingInput { .. }
        | EventKind::SessionEnded { .. }
        | EventKind::ConnectorRegistered { .. }
        | EventKind::ConnectorStateChanged { .. }
        | EventKind::OutboxAcked { .. }
        | EventKind::OutboxDeadLettered { .. } => {}
    }
    Ok(())
}

/// Puts the personal fields of `data` (the JSON data of an export line, which a server with
/// the key wrote) into a kind decoded from its sealed body without the key. The body's hash and
/// its non-personal fields are checked elsewhere; these fields are as trusted as the export.
pub fn overlay_json(kind: &mut EventKind, data: &serde_json::Value) {
    let field = |name: &str| data.get(name).and_then(|v| v.as_str()).map(Cow::Borrowed);
    let p = Personal {
        user: field("user"),
        text: field("text"),
        value: field("value"),
        error: field("error"),
    };
    let bytes = rmp_serde::to_vec_named(&p).expect("MessagePack of strings is infallible");
    // Our own encoding of the same shape always decodes.
    let _ = overlay(kind, &bytes);
}

/// The personal fields a fold reads, borrowed from opened bytes: (user, text, value).
pub(crate) fn personal_view(opened: &[u8]) -> Result<PersonalView<'_>, SealError> {
    // The writer's layout (`split`) read directly; any other form the serde way.
    if let Some(view) = personal_view_fast(opened) {
        return Ok(view);
    }
    decode_limited(opened).map_err(|e| SealError::Malformed(e.to_string()))
}

/// [`personal_view`] of a fixmap of `user`, `text` and `value` strings (each at most once),
/// as [`split`] writes them; `None` for anything else.
fn personal_view_fast(opened: &[u8]) -> Option<PersonalView<'_>> {
    use crate::events::msgpack::{Reader, FIXMAP};
    let mut r = Reader::new(opened);
    let marker = r.byte()?;
    if marker & 0xf0 != FIXMAP {
        return None;
    }
    let mut view = PersonalView::default();
    for _ in 0..marker & 0x0f {
        let field = match r.str_bytes()? {
            b"user" => &mut view.user,
            b"text" => &mut view.text,
            b"value" => &mut view.value,
            _ => return None,
        };
        if field.replace(r.str()?).is_some() {
            return None;
        }
    }
    r.at_end().then_some(view)
}

/// [`Personal`] borrowed, for the fold.
#[derive(Default, Deserialize)]
pub(crate) struct PersonalView<'a> {
    #[serde(default, borrow)]
    pub user: Option<&'a str>,
    #[serde(default, borrow)]
    pub text: Option<&'a str>,
    #[serde(default, borrow)]
    pub value: Option<&'a str>,
}

#[cfg(test)]
mod tests;
