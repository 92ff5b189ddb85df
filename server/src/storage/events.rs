//! Reading events back: the filtered, keyset-paginated list, one event with its deliveries,
//! and a delivery's raw bytes.

use app::model::{
    BodyKind, Delivery, EventDetail, EventFilter, EventPage, EventSummary, Header,
    SignatureVerdict, TypeCount, TypeCounts,
};
use sqlx::{QueryBuilder, Row, Sqlite, sqlite::SqliteRow};

use super::Store;
use crate::{
    delivery::Committed,
    timestamp::{format_rfc3339, parse_rfc3339},
};

/// A filter whose times and cursor have been parsed.
#[derive(Debug, Default)]
pub struct EventQuery {
    types: Vec<String>,
    source: Option<String>,
    received: (Option<i64>, Option<i64>),
    occurred: (Option<i64>, Option<i64>),
    signature: Option<SignatureVerdict>,
    before_key: Option<i64>,
    limit: u32,
}

/// Why a list or lookup could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller's filter is wrong; the message says how.
    #[error("{0}")]
    BadFilter(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl EventQuery {
    /// Parses the filter's times and cursor, naming the parameter that is wrong.
    pub fn parse(filter: &EventFilter) -> Result<Self, QueryError> {
        let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, QueryError> {
            value
                .as_deref()
                .map(|v| {
                    parse_rfc3339(v).ok_or_else(|| {
                        QueryError::BadFilter(format!(
                            "{name} must be an RFC 3339 time such as 2026-01-31T09:00:00Z, not {v:?}"
                        ))
                    })
                })
                .transpose()
        };
        let before_key = filter
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    QueryError::BadFilter(format!("cursor {c:?} is not one this server gave"))
                })
            })
            .transpose()?;
        Ok(Self {
            types: filter.types.clone(),
            source: filter.source.clone(),
            received: (
                // A preset is now minus its span; an explicit `from` wins.
                time("from", &filter.from)?.or_else(|| {
                    let span = filter
                        .within
                        .as_deref()
                        .and_then(EventFilter::within_seconds)?;
                    Some(crate::timestamp::now_micros() - span * 1_000_000)
                }),
                time("to", &filter.to)?,
            ),
            occurred: (
                time("occurredFrom", &filter.occurred_from)?,
                time("occurredTo", &filter.occurred_to)?,
            ),
            signature: filter.signature,
            before_key,
            limit: filter.page_size().min(EventFilter::MAX_LIMIT),
        })
    }
}

impl EventQuery {
    /// Appends this filter's conditions (all but the cursor; the types only `with_types`) to a
    /// `... WHERE 1 = 1`.
    fn push_conditions<'q>(&'q self, sql: &mut QueryBuilder<'q, Sqlite>, with_types: bool) {
        if with_types && !self.types.is_empty() {
            sql.push(" AND type IN (");
            let mut list = sql.separated(", ");
            for t in &self.types {
                list.push_bind(t);
            }
            sql.push(")");
        }
        let conditions = [
            (" AND received_at >= ", self.received.0),
            (" AND received_at < ", self.received.1),
            (" AND occurred_at >= ", self.occurred.0),
            (" AND occurred_at < ", self.occurred.1),
        ];
        for (condition, value) in conditions {
            if let Some(value) = value {
                sql.push(condition).push_bind(value);
            }
        }
        if let Some(source) = &self.source {
            sql.push(" AND source = ").push_bind(source);
        }
        if let Some(verdict) = self.signature {
            sql.push(" AND signature = ").push_bind(verdict.as_str());
        }
    }

    /// True when `delivery` passes this filter, as the list's SQL would judge its event (the
    /// cursor and limit aside). The live stream filters with it; the signature is the
    /// delivery's own verdict.
    pub fn matches(&self, delivery: &Committed) -> bool {
        let e = &delivery.envelope;
        let within = |value: Option<i64>, (from, to): (Option<i64>, Option<i64>)| {
            from.is_none_or(|from| value.is_some_and(|v| v >= from))
                && to.is_none_or(|to| value.is_some_and(|v| v < to))
        };
        (self.types.is_empty()
            || e.event_type
                .as_ref()
                .is_some_and(|t| self.types.contains(t)))
            && self
                .source
                .as_ref()
                .is_none_or(|s| s == delivery.source.as_str())
            && self.signature.is_none_or(|v| v == delivery.signature)
            && within(Some(delivery.received_at), self.received)
            && within(e.occurred_at, self.occurred)
    }
}

const SUMMARY_COLUMNS: &str = "key, source, event_id, type, version, date_occurred, received_at, \
     last_received_at, delivery_count, signature, valid_deliveries, verdicts_differ, body_kind, \
     parse_error, body_differs";

/// An event's deliveries, oldest first, each flagged when its body differs from the first's.
const EVENT_DELIVERIES: &str = "\
SELECT d.seq, d.id, d.method, d.path, d.query, d.headers, d.remote_addr, d.received_at, d.size,
       d.content_type, d.signature, d.signature_reason, d.rejected, d.too_large, d.response_status,
       d.body_sha256 <> e.body_sha256 AS body_differs
FROM event_deliveries ed
JOIN deliveries d ON d.seq = ed.seq
JOIN events e ON e.key = ed.event_key
WHERE ed.event_key = $1
ORDER BY ed.seq";

/// A delivery's bytes exactly as received, with the content type it came with.
pub struct RawBody {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Store {
    /// One page of events, newest first.
    pub async fn list_events(&self, query: &EventQuery) -> Result<EventPage, QueryError> {
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {SUMMARY_COLUMNS} FROM events WHERE 1 = 1"
        ));
        query.push_conditions(&mut sql, true);
        if let Some(before) = query.before_key {
            sql.push(" AND key < ").push_bind(before);
        }
        sql.push(" ORDER BY key DESC LIMIT ")
            .push_bind(i64::from(query.limit) + 1);
        // The list and the stream's cursor in one snapshot: a viewer that follows the stream
        // from the cursor gets exactly what the list does not show yet.
        let mut snapshot = self.pool.begin().await?;
        let indexed_seq: i64 = sqlx::query_scalar("SELECT indexed_seq FROM indexing")
            .fetch_one(&mut *snapshot)
            .await?;
        let rows = sql.build().fetch_all(&mut *snapshot).await?;
        snapshot.commit().await?;
        let mut items = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > query.limit as usize {
            items.truncate(query.limit as usize);
            items.last().map(|last| last.key.to_string())
        } else {
            None
        };
        Ok(EventPage {
            items,
            next_cursor,
            pending: 0,
            stream_cursor: indexed_seq.to_string(),
        })
    }

    /// How many events of each type match the filter's other conditions (so that the list can
    /// offer every type with its count), and how many match it whole.
    pub async fn type_counts(&self, query: &EventQuery) -> Result<TypeCounts, QueryError> {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT type, COUNT(*) FROM events WHERE 1 = 1");
        query.push_conditions(&mut sql, false);
        sql.push(" GROUP BY type ORDER BY type");
        let rows: Vec<(Option<String>, i64)> = sql.build_query_as().fetch_all(&self.pool).await?;
        let matching = rows
            .iter()
            .filter(|(t, _)| {
                query.types.is_empty() || t.as_ref().is_some_and(|t| query.types.contains(t))
            })
            .map(|(_, n)| *n as u64)
            .sum();
        let types = rows
            .into_iter()
            .filter_map(|(t, count)| {
                Some(TypeCount {
                    event_type: t?,
                    count,
                })
            })
            .collect();
        Ok(TypeCounts { matching, types })
    }

    /// One event, its first delivery's payload and every delivery; `None` if there is none.
    pub async fn event_detail(&self, key: i64) -> Result<Option<EventDetail>, QueryError> {
        // Read first: whatever is listed after it comes again through the stream.
        let indexed_seq = self.indexed_seq().await?;
        let sql = format!("SELECT {SUMMARY_COLUMNS}, first_seq FROM events WHERE key = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let summary = summary_from_row(&row)?;
        let first_seq: i64 = row.try_get("first_seq")?;
        let rows = sqlx::query(EVENT_DELIVERIES)
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
        let deliveries = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let first_body: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM deliveries WHERE seq = $1")
                .bind(first_seq)
                .fetch_optional(&self.pool)
                .await?;
        let body = first_body.unwrap_or_default();
        let payload = serde_json::from_slice(&body).ok();
        let raw_text = match payload {
            Some(_) => None,
            None => String::from_utf8(body).ok().filter(|t| !t.is_empty()),
        };
        Ok(Some(EventDetail {
            summary,
            payload,
            raw_text,
            deliveries,
            stream_cursor: indexed_seq.to_string(),
        }))
    }

    /// The bytes of one delivery exactly as received; `None` if there is no such delivery.
    pub async fn raw_body(&self, delivery_id: &str) -> Result<Option<RawBody>, QueryError> {
        let row = sqlx::query("SELECT content_type, body FROM deliveries WHERE id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| RawBody {
            content_type: row.get(0),
            body: row.get(1),
        }))
    }
}

pub(super) fn verdict(row: &SqliteRow, column: &str) -> Result<SignatureVerdict, sqlx::Error> {
    let name: &str = row.try_get(column)?;
    SignatureVerdict::parse(name)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown verdict {name:?}").into()))
}

pub(super) fn body_kind(row: &SqliteRow) -> Result<BodyKind, sqlx::Error> {
    let kind: &str = row.try_get("body_kind")?;
    BodyKind::parse(kind)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown body kind {kind:?}").into()))
}

fn summary_from_row(row: &SqliteRow) -> Result<EventSummary, sqlx::Error> {
    Ok(EventSummary {
        key: row.try_get("key")?,
        source: row.try_get("source")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("type")?,
        version: row.try_get("version")?,
        date_occurred: row.try_get("date_occurred")?,
        received_at: format_rfc3339(row.try_get("received_at")?),
        last_received_at: format_rfc3339(row.try_get("last_received_at")?),
        delivery_count: row.try_get("delivery_count")?,
        signature: verdict(row, "signature")?,
        valid_deliveries: row.try_get("valid_deliveries")?,
        verdicts_differ: row.try_get("verdicts_differ")?,
        body_kind: body_kind(row)?,
        parse_error: row.try_get("parse_error")?,
        body_differs: row.try_get("body_differs")?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery, sqlx::Error> {
    let headers: &str = row.try_get("headers")?;
    let headers: Vec<Header> =
        serde_json::from_str(headers).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let status: i32 = row.try_get("response_status")?;
    Ok(Delivery {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        query: row.try_get("query")?,
        headers,
        remote_addr: row.try_get("remote_addr")?,
        received_at: format_rfc3339(row.try_get("received_at")?),
        size: row.try_get("size")?,
        content_type: row.try_get("content_type")?,
        signature: verdict(row, "signature")?,
        signature_reason: row.try_get("signature_reason")?,
        rejected: row.try_get("rejected")?,
        body_differs: row.try_get("body_differs")?,
        too_large: row.try_get("too_large")?,
        response_status: u16::try_from(status).unwrap_or_default(),
    })
}
