//! The `/hooks/{source}` handler: capture the request exactly as it arrived, verify its
//! signature, hand it to the batching writer, and answer only once it is on disk.

use std::{borrow::Cow, net::SocketAddr, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    AppState,
    delivery::{EnvelopeFields, NewDelivery, SourceName},
    envelope,
    signature::{Verdict, Verification},
    sources::SourceSettings,
    timestamp::now_micros,
};

/// The header every answer carries, naming the delivery Hookscope kept.
const DELIVERY_ID_HEADER: &str = "hookscope-delivery-id";

#[derive(Deserialize)]
pub struct SourceParam {
    source: String,
}

/// What reading the body gave: all of it, or only its size because it was over the limit.
enum ReadBody {
    Complete(Bytes),
    TooLarge { size: u64 },
}

/// Receives one webhook on any method.
#[tracing::instrument(level = "debug", skip_all, fields(source = %source))]
pub async fn receive(
    State(state): State<AppState>,
    Path(SourceParam { source }): Path<SourceParam>,
    request: Request,
) -> Response {
    let slug = match SourceName::parse(&source) {
        Ok(slug) => slug,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message, None),
    };
    let received_at = now_micros();
    let (parts, body) = request.into_parts();
    // Held until the answer: the bytes this request may keep in memory, so that what waits
    // for the writer is bounded in bytes, however many senders there are.
    let declared = declared_length(&parts.headers);
    let _memory = state.memory.reserve(declared).await;
    let body = match read_body(declared, body, state.max_body).await {
        Ok(body) => body,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message, None),
    };
    let settings = state.sources.settings(&slug);
    let delivery = capture(&parts, slug, received_at, body, &settings, state.max_body);
    // The request's headers and URI share hyper's read buffer. Let go of them before waiting on
    // the writer, so that the connection's next read reuses that buffer: held, it made hyper
    // allocate a new one for every request (malloc and free took 5% of the machine).
    drop(parts);
    let id = delivery.id.clone();
    let outcome = if delivery.too_large {
        Outcome::TooLarge
    } else if delivery.rejected {
        Outcome::Rejected(delivery.signature_reason.clone())
    } else {
        Outcome::Kept
    };
    let seq = match state.writer.store(delivery).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::warn!(error = %e, "delivery not stored");
            let message = format!("the delivery could not be stored ({e}); please retry");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, &message, None);
        }
    };
    answer(outcome, &id, seq, &settings, state.max_body).await
}

/// `/hooks` without a source name: say what the URL should look like.
pub async fn no_source() -> Response {
    let message =
        "send webhooks to /hooks/{source}, where {source} names the sender (e.g. /hooks/keldair)";
    error_response(StatusCode::NOT_FOUND, message, None)
}

/// The `Content-Length` the sender declared, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body up to `limit` bytes. A `declared` or actual size over the limit stops the read.
async fn read_body(declared: Option<u64>, body: Body, limit: usize) -> Result<ReadBody, String> {
    if let Some(size) = declared.filter(|size| *size > limit as u64) {
        return Ok(ReadBody::TooLarge { size });
    }
    let mut body = body;
    let expected = declared.map_or(0, |size| size as usize);
    let mut read = BytesMut::with_capacity(expected);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the body could not be read: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                let size = (read.len() + data.len()) as u64;
                return Ok(ReadBody::TooLarge { size });
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(ReadBody::Complete(read.freeze()))
}

/// The bytes that the requests being received and stored may hold at once. Each request
/// reserves its body's size (as declared, or the limit when it is not) before reading it and
/// keeps the reservation until it is answered, so memory stays bounded in bytes whatever the
/// senders do: beyond the budget, a request waits before its body is read.
pub struct MemoryBudget {
    bytes: Semaphore,
    total: u32,
    max_body: usize,
}

impl MemoryBudget {
    /// The budget for every request together: 64 MiB, or 8 bodies of `max_body`, whichever is
    /// larger.
    pub fn new(max_body: usize) -> Self {
        let total = (64 << 20)
            .max(max_body.saturating_mul(8))
            .min(u32::MAX as usize) as u32;
        Self {
            bytes: Semaphore::new(total as usize),
            total,
            max_body,
        }
    }

    /// Waits until a body of `declared` bytes (or of the limit, when undeclared) fits, plus
    /// room for its headers and record.
    async fn reserve(&self, declared: Option<u64>) -> Option<SemaphorePermit<'_>> {
        const HEADROOM: usize = 4096;
        let body = declared.map_or(self.max_body, |size| (size as usize).min(self.max_body));
        let bytes = (body + HEADROOM).min(self.total as usize) as u32;
        self.bytes.acquire_many(bytes).await.ok()
    }
}

/// Builds the record of one delivery and decides the status it gets.
fn capture(
    parts: &Parts,
    source: SourceName,
    received_at: i64,
    body: ReadBody,
    settings: &SourceSettings,
    limit: usize,
) -> NewDelivery {
    let (body, size, parsed, verification) = match body {
        ReadBody::Complete(body) => {
            let parsed = envelope::parse(&body);
            let verification =
                settings
                    .verifier
                    .verify(&parts.headers, &body, received_at / 1_000_000);
            let size = body.len() as u64;
            (body, size, parsed, verification)
        }
        ReadBody::TooLarge { size } => {
            let unread = Verification {
                verdict: Verdict::Unchecked,
                reason: Some(
                    "not checked: the body was over the size limit and not read".to_owned(),
                ),
            };
            (
                Bytes::new(),
                size,
                EnvelopeFields::too_large(size, limit),
                unread,
            )
        }
    };
    let too_large = parsed.kind == app::model::BodyKind::TooLarge;
    let verdict = verification.verdict;
    let rejected = settings.enforce && !too_large && verdict != Verdict::Valid;
    let response_status = match (too_large, rejected, &settings.response) {
        (true, _, _) => StatusCode::PAYLOAD_TOO_LARGE,
        (_, true, _) => StatusCode::UNAUTHORIZED,
        (_, _, Some(custom)) => custom.status,
        _ => StatusCode::OK,
    };
    NewDelivery {
        id: uuid::Uuid::now_v7().to_string(),
        source,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers_json: headers_json(&parts.headers),
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string()),
        received_at,
        size: size as i64,
        content_type: header_text(&parts.headers, header::CONTENT_TYPE),
        body_sha256: Sha256::digest(&body).into(),
        body,
        envelope: parsed,
        signature: verdict,
        signature_reason: verification.reason,
        rejected,
        too_large,
        response_status: response_status.as_u16(),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The headers as a JSON array of `{name, value}` (the shape of [`app::model::Header`]), in the
/// order the map holds them (arrival order, with repeats of one name next to each other). A value
/// that is not UTF-8 is kept with U+FFFD in place of the bad bytes.
fn headers_json(headers: &HeaderMap) -> String {
    serde_json::to_string(&HeaderList(headers)).unwrap_or_else(|_| "[]".to_owned())
}

/// Serializes a header map as [`app::model::Header`]s without copying names and values first.
struct HeaderList<'a>(&'a HeaderMap);

impl Serialize for HeaderList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct HeaderRef<'a> {
            name: &'a str,
            value: Cow<'a, str>,
        }
        serializer.collect_seq(self.0.iter().map(|(name, value)| HeaderRef {
            name: name.as_str(),
            value: String::from_utf8_lossy(value.as_bytes()),
        }))
    }
}

/// What became of a stored delivery, which decides the answer. (Decided from the delivery, not
/// from the status: a source may be configured to answer 401 or 413 to deliveries it kept.)
enum Outcome {
    /// Over the size limit: 413.
    TooLarge,
    /// Refused by an enforced signature check, with the reason: 401.
    Rejected(Option<String>),
    /// Kept and accepted: the source's configured answer, or 200.
    Kept,
}

/// The answer once the delivery is stored.
async fn answer(
    outcome: Outcome,
    id: &str,
    seq: i64,
    settings: &SourceSettings,
    limit: usize,
) -> Response {
    match outcome {
        Outcome::TooLarge => {
            let message =
                format!("the body is over the {limit} byte limit; its headers and size were kept");
            error_response(StatusCode::PAYLOAD_TOO_LARGE, &message, Some(id))
        }
        Outcome::Rejected(reason) => {
            let message = format!(
                "signature not valid: {}",
                reason.as_deref().unwrap_or("missing")
            );
            error_response(StatusCode::UNAUTHORIZED, &message, Some(id))
        }
        Outcome::Kept => match &settings.response {
            Some(custom) => {
                tokio::time::sleep(Duration::from_millis(custom.delay_ms)).await;
                with_delivery_id((custom.status, custom.body.clone()).into_response(), id)
            }
            None => {
                let kept = Kept {
                    delivery_id: id,
                    seq,
                };
                with_delivery_id(Json(kept).into_response(), id)
            }
        },
    }
}

/// The default answer to a delivery kept: `{"deliveryId": "...", "seq": n}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kept<'a> {
    delivery_id: &'a str,
    /// The delivery's place in commit order.
    seq: i64,
}

fn error_response(status: StatusCode, message: &str, id: Option<&str>) -> Response {
    let body = match id {
        Some(id) => json!({ "error": message, "deliveryId": id }),
        None => json!({ "error": message }),
    };
    let response = (status, Json(body)).into_response();
    match id {
        Some(id) => with_delivery_id(response, id),
        None => response,
    }
}

fn with_delivery_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(DELIVERY_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use app::model::Header;
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn headers_keep_their_order_and_repeats_and_bad_bytes_become_replacement_characters() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        headers.insert("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let parsed: Vec<Header> = serde_json::from_str(&headers_json(&headers)).unwrap();
        let pairs: Vec<(&str, &str)> = parsed
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "application/json"),
                ("x-tag", "a"),
                ("x-tag", "b"),
                ("x-bytes", "caf\u{fffd}"),
            ]
        );
    }
}
