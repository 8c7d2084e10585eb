//! One publish held to the subject's last sequence, as every write to the stream is (the
//! tenants' records, the shared keys), and what its refusals mean.
//!
//! nats-server answers a stale expectation with "wrong last sequence" and the subject's real
//! last sequence (error code 10071): another writer got there first, so the caller is fenced.
//! Since 2.12 a clustered stream also answers "wrong last sequence" *without* a sequence (error
//! code 10164) when another publish to the subject is still in process and the leader cannot
//! check yet. It does so for a moment after it acked the subject's previous publish, too: it
//! sends the ack before it clears the subject's in-process mark. Measured on an R3 stream of
//! nats-server 2.15 with both cores busy, 8 chains of 400 publishes of 50 KiB, each sent once
//! the one before was acked: 8 to 54 such refusals per 3,200, every one taken on a retry with
//! the same expectation. The server stored nothing, so [`publish_expecting`] retries such a
//! refusal, held to the same expectation, for up to [`SUBJECT_BUSY_WAIT`]: a writer that was
//! really overtaken then gets the first kind of refusal.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode};

use super::ACK_TIMEOUT;

/// Longest a publish is retried while the stream says another publish to its subject is in
/// process (error code 10164); past it the publish fails. An in-process publish is applied
/// within milliseconds unless the stream has lost its leader, which [`ACK_TIMEOUT`] covers.
pub const SUBJECT_BUSY_WAIT: Duration = Duration::from_secs(2);

/// First pause before such a retry; each next one doubles, up to [`BUSY_PAUSE_MAX`].
const BUSY_PAUSE_MIN: Duration = Duration::from_millis(1);
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

/// Why a publish held to a last sequence was not stored.
#[derive(Debug, PartialEq)]
pub(super) enum Refused {
    /// The subject's last sequence is not the one expected: another writer stored after it.
    WrongLast,
    /// Anything else (no ack in time, no stream, a connection lost), described.
    Failed(String),
}

/// What a publish error means for a publish held to a last sequence.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// The expectation is stale (error code 10071).
    WrongLast,
    /// Another publish to the subject is in process: nothing stored, try again (10164).
    SubjectBusy,
    /// Any other error.
    Other,
}

fn refusal(e: &PublishError) -> Refusal {
    if e.kind() == PublishErrorKind::WrongLastSequence {
        return Refusal::WrongLast;
    }
    let code = std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    if code == Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT) {
        Refusal::SubjectBusy
    } else {
        Refusal::Other
    }
}

/// Publishes `payload` to `subject`, when `expected` is given only if that is the subject's
/// last stream sequence (0: none yet), and waits for the ack; returns the stored sequence.
pub(super) async fn publish_expecting(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
    expected: Option<u64>,
) -> Result<u64, Refused> {
    let mut message = PublishMessage::build().payload(payload.into());
    if let Some(expected) = expected {
        message = message.expected_last_subject_sequence(expected);
    }
    let deadline = tokio::time::Instant::now() + SUBJECT_BUSY_WAIT;
    let mut pause = BUSY_PAUSE_MIN;
    loop {
        // A clone shares the payload's bytes.
        let ack = js
            .send_publish(subject.to_owned(), message.clone())
            .await
            .map_err(|e| Refused::Failed(e.to_string()))?;
        let acked = tokio::time::timeout(ACK_TIMEOUT, ack.into_future())
            .await
            .map_err(|_| Refused::Failed(format!("no ack within {ACK_TIMEOUT:?}")))?;
        let e = match acked {
            Ok(ack) => return Ok(ack.sequence),
            Err(e) => e,
        };
        match refusal(&e) {
            Refusal::WrongLast => return Err(Refused::WrongLast),
            Refusal::SubjectBusy if tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BUSY_PAUSE_MAX);
            }
            Refusal::SubjectBusy => {
                return Err(Refused::Failed(format!(
                    "{e}: another publish to {subject} stayed in process for {SUBJECT_BUSY_WAIT:?}"
                )))
            }
            Refusal::Other => return Err(Refused::Failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
