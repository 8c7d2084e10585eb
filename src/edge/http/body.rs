//! Reading and draining request bodies: counted on the stream (chunked bodies without
//! `Content-Length` are bounded too), within a time limit, and read to the end when a small
//! request is refused so that its keep-alive connection survives.

use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;

use super::error::ApiError;

/// Time a client has to send a whole body once the head has arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After refusing an oversized body, read and discard at most this much of the rest, so that a
/// client still writing gets the 413 instead of a connection reset.
pub const DRAIN_BYTES_MAX: usize = 1024 * 1024;
/// Time spent discarding the rest of an oversized body, at most.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads a whole body of at most `limit` bytes, counting on the stream (so chunked bodies
/// without `Content-Length` are bounded too), within [`BODY_READ_TIMEOUT`].
pub(super) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if let Some(declared) = declared_length(req) {
        if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
            if declared <= u64::try_from(limit + DRAIN_BYTES_MAX).unwrap_or(u64::MAX) {
                drain(&mut payload).await;
            }
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::field("body", e))?;
            if body.len() + chunk.len() > limit {
                drain(&mut payload).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// Answers a refused request (auth, quota, overload) after reading its body when that is small,
/// so that the connection stays usable: actix closes a keep-alive connection whose request body
/// was left unread, and a client refused under load would then pay a reconnect for every retry,
/// which costs the server more than the refusal itself.
pub(super) async fn refuse(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    error: ApiError,
) -> ApiError {
    if declared_length(req).is_some_and(|n| n <= u64::try_from(limit).unwrap_or(u64::MAX)) {
        drain(payload).await;
    }
    error
}

/// The request's `Content-Length`, when it has a readable one.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads and discards the rest of a refused body, within [`DRAIN_BYTES_MAX`] and
/// [`DRAIN_TIMEOUT`].
async fn drain(payload: &mut web::Payload) {
    let discard = async {
        let mut discarded = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            discarded += chunk.len();
            if discarded > DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}
