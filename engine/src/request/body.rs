//! Reading a request body within `http.max_request_body`, the same way for
//! every handler and over both HTTP versions.
//!
//! Over HTTP/2 a body refused half way is not simply dropped: dropping it
//! makes the stream reset (`RST_STREAM`) reach the client together with
//! the 413, and clients still uploading (curl among them) report a framing
//! error instead of the answer. The rest is read and thrown away in the
//! background, bounded in bytes and time, so the 413 arrives first.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Version, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (declared or sent).
    TooLarge,
    /// The client stopped sending, or sent something that is not a body.
    Unreadable(String),
}

/// How much of a refused HTTP/2 body is read and thrown away, as a multiple
/// of the limit, and for how long: past either the stream is reset anyway.
const DRAIN_FACTOR: usize = 8;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The whole body of a request, at most `limit` bytes.
pub async fn read(parts: &Parts, mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|len| len.parse::<u64>().map_or(true, |n| n > limit as u64));
    if !declared_too_large {
        match Limited::new(&mut body, limit).collect().await {
            Ok(collected) => return Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {}
            Err(e) => return Err(BodyError::Unreadable(e.to_string())),
        }
    }
    if parts.version == Version::HTTP_2 {
        tokio::spawn(drain(body, limit.saturating_mul(DRAIN_FACTOR)));
    }
    Err(BodyError::TooLarge)
}

async fn drain(mut body: Body, max: usize) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > max {
                    break;
                }
            }
        }
    })
    .await;
}

/// A body left unread because the request was answered before it: over
/// HTTP/2 it is read and thrown away (see above); over HTTP/1.1 the caller
/// says `Connection: close`, since the rest of it is still on the wire.
pub fn discard(version: Version, body: Body, limit: usize) {
    if version == Version::HTTP_2 {
        tokio::spawn(drain(body, limit.saturating_mul(DRAIN_FACTOR)));
    }
}

/// Whether `Connection: close` may be sent: HTTP/2 forbids the header
/// (hyper strips it and warns), and closes streams, not connections.
pub fn may_close(version: Version) -> bool {
    version < Version::HTTP_2
}
