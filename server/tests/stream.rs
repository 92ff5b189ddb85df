//! The live stream, `GET /api/stream`: every acknowledged delivery that matches the viewer's
//! filter, the moment it is acknowledged; resume with `since` without a gap or a duplicate; a
//! slow viewer told it lagged while the others go on; and `hookscope tail` in a terminal.

mod common;

use std::{collections::BTreeSet, time::Duration};

use app::model::{DeliveryRole, EventFilter, StreamMessage, StreamRequest};
use common::{
    TOKEN, TestApp, envelope, envelope_at, spawn_app, spawn_app_with_stream_queue,
    viewer::{Viewer, try_connect},
};
use serde_json::Value;

/// POSTs an envelope to `/hooks/{source}` and returns the `seq` of its 200 answer.
async fn post(app: &TestApp, source: &str, body: &Value) -> i64 {
    let response = app
        .post_hook(
            source,
            body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["seq"].as_i64().unwrap()
}

#[tokio::test]
async fn a_delivery_arrives_live_and_a_retry_says_it_is_one() {
    let app = spawn_app().await;
    let (mut viewer, backlog, _) = Viewer::connect(&app, "").await;
    assert!(backlog.is_empty(), "without since the stream starts live");

    let seq = post(&app, "keldair", &envelope("evt_live_1", "applicant.hired")).await;
    let first = viewer.delivery().await;
    assert_eq!(first.seq, seq);
    assert_eq!(first.cursor, seq.to_string());
    assert_eq!(first.role, DeliveryRole::New);
    assert_eq!(first.event_type.as_deref(), Some("applicant.hired"));
    assert_eq!(first.event_id.as_deref(), Some("evt_live_1"));
    assert_eq!(first.source, "keldair");

    // KeldairHR retries the same event, with a body that differs.
    let mut changed = envelope("evt_live_1", "applicant.hired");
    changed["data"]["applicant"]["firstName"] = "Jonas".into();
    post(&app, "keldair", &changed).await;
    let retry = viewer.delivery().await;
    assert_eq!(retry.role, DeliveryRole::Retry);
    assert!(retry.body_differs);
    let listed = app.events(&[]).await;
    assert_eq!(listed.len(), 1, "one event, two deliveries");
    assert_eq!(retry.event_key, listed[0]["key"].as_i64());
}

#[tokio::test]
async fn each_filter_narrows_the_stream() {
    let app = spawn_app().await;
    let (mut by_type, _, _) =
        Viewer::connect(&app, "type=applicant.hired&type=offer.declined").await;
    let (mut by_source, _, _) = Viewer::connect(&app, "source=acme").await;
    let (mut by_occurrence, _, _) =
        Viewer::connect(&app, "occurredFrom=2026-01-01T00:00:00Z").await;
    let (mut by_verdict, _, _) = Viewer::connect(&app, "signature=valid").await;

    post(&app, "keldair", &envelope("evt_f1", "applicant.hired")).await;
    post(&app, "keldair", &envelope("evt_f2", "offer.accepted")).await;
    post(&app, "acme", &envelope("evt_f3", "offer.declined")).await;
    let recent = envelope_at("evt_f4", "job.published", "2026-06-01T00:00:00Z");
    post(&app, "keldair", &recent).await;

    let ids = |d: app::model::LiveDelivery| d.event_id.unwrap();
    assert_eq!(ids(by_type.delivery().await), "evt_f1");
    assert_eq!(ids(by_type.delivery().await), "evt_f3");
    by_type.assert_quiet().await;
    assert_eq!(ids(by_source.delivery().await), "evt_f3");
    by_source.assert_quiet().await;
    assert_eq!(ids(by_occurrence.delivery().await), "evt_f4");
    by_occurrence.assert_quiet().await;
    by_verdict.assert_quiet().await; // no source has a secret: every verdict is unchecked
}

#[tokio::test]
async fn a_bad_filter_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    for query in ["occurredFrom=yesterday", "since=abc", "tpye=x"] {
        let refused = try_connect(&app, query, &auth).await.err();
        assert_eq!(refused, Some(400), "{query}");
    }
}

#[tokio::test]
async fn the_stream_needs_a_login_and_refuses_other_sites() {
    let app = spawn_app().await;
    assert_eq!(try_connect(&app, "", &[]).await.err(), Some(401));
    let wrong = [("authorization", "Bearer not-the-token")];
    assert_eq!(try_connect(&app, "", &wrong).await.err(), Some(401));

    // A browser logged in to the dashboard, on a page of another site.
    let session = app.session_cookie().await;
    let foreign = [
        ("cookie", session.as_str()),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(try_connect(&app, "", &foreign).await.err(), Some(403));

    // The dashboard's own page, with the same cookie.
    let own_origin = format!("http://{}", app.address);
    let own = [
        ("cookie", session.as_str()),
        ("origin", own_origin.as_str()),
    ];
    let mut viewer = try_connect(&app, "", &own).await.expect("the stream opens");
    assert!(matches!(viewer.next().await, StreamMessage::Ready { .. }));
}

#[tokio::test]
async fn a_viewer_resumes_from_its_cursor_and_gets_what_came_meanwhile_exactly_once() {
    let app = spawn_app().await;
    let (mut viewer, _, _) = Viewer::connect(&app, "").await;
    post(&app, "keldair", &envelope("evt_r1", "applicant.hired")).await;
    let seen = viewer.delivery().await;
    viewer.close().await;

    // Posted while nobody watched: two new events and a retry of the first.
    let mut posted = Vec::new();
    for (id, kind) in [("evt_r2", "offer.accepted"), ("evt_r3", "applicant.hired")] {
        posted.push(post(&app, "keldair", &envelope(id, kind)).await);
    }
    posted.push(post(&app, "keldair", &envelope("evt_r1", "applicant.hired")).await);

    let (mut viewer, backlog, cursor) =
        Viewer::connect(&app, &format!("since={}", seen.cursor)).await;
    let seqs: Vec<i64> = backlog.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, posted, "everything after the cursor, in order, once");
    let roles: Vec<DeliveryRole> = backlog.iter().map(|d| d.role).collect();
    assert_eq!(
        roles,
        [DeliveryRole::New, DeliveryRole::New, DeliveryRole::Retry]
    );
    assert_eq!(cursor, posted[2].to_string());

    let next = post(&app, "keldair", &envelope("evt_r4", "job.published")).await;
    assert_eq!(
        viewer.delivery().await.seq,
        next,
        "then live, no duplicate at the seam"
    );

    // The same resume, narrowed to one type.
    let query = format!("since={}&type=applicant.hired", seen.cursor);
    let (_, backlog, _) = Viewer::connect(&app, &query).await;
    let ids: Vec<_> = backlog
        .iter()
        .map(|d| d.event_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["evt_r3", "evt_r1"]);
}

#[tokio::test]
async fn resuming_in_the_middle_of_a_burst_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    let (mut viewer, _, start) = Viewer::connect(&app, "").await;
    let senders: Vec<_> = (0..16)
        .map(|s| {
            let client = app.client.clone();
            let url = app.url("/hooks/burst");
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..150 {
                    let body = envelope(&format!("evt_b{s}_{n}"), "applicant.hired");
                    let answer: Value = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    seqs.push(answer["seq"].as_i64().unwrap());
                }
                seqs
            })
        })
        .collect();

    // Watch a few hundred, drop the connection, resume from the last cursor, and again.
    let mut seen = Vec::new();
    let mut cursor = start;
    for _ in 0..3 {
        for _ in 0..300 {
            let d = viewer.delivery().await;
            cursor = d.cursor.clone();
            seen.push(d.seq);
        }
        viewer.close().await;
        let (resumed, backlog, ready) = Viewer::connect(&app, &format!("since={cursor}")).await;
        seen.extend(backlog.iter().map(|d| d.seq));
        cursor = ready;
        viewer = resumed;
    }
    let mut acknowledged = BTreeSet::new();
    for sender in senders {
        acknowledged.extend(sender.await.unwrap());
    }
    while seen.len() < acknowledged.len() {
        seen.push(viewer.delivery().await.seq);
    }
    let _ = cursor;
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in commit order, none twice"
    );
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    assert_eq!(seen, acknowledged, "every acknowledged delivery, once");
    viewer.assert_quiet().await;
}

#[tokio::test]
async fn a_slow_viewer_is_told_it_lagged_while_the_others_get_everything() {
    let app = spawn_app_with_stream_queue(64).await;
    let (mut reader, _, _) = Viewer::connect(&app, "").await;
    let mut sleeper = Viewer::connect_small_buffer(&app, "").await;
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < 2000 {
            seqs.push(reader.delivery().await.seq);
        }
        seqs
    });
    // The sleeper reads nothing while 2,000 deliveries go by: far more than its queue holds,
    // and, with long event ids (4 KB messages), more than the sockets' buffers.
    // Four senders, so that this takes seconds: a socket that takes nothing for 10 s is
    // dropped without a word (it could not be told anything anyway).
    let long = "x".repeat(4000);
    let senders = (0..4).map(|s| {
        let (client, url, long) = (app.client.clone(), app.url("/hooks/keldair"), long.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..500 {
                let body = envelope(&format!("evt_s{s}_{n}_{long}"), "applicant.hired");
                let response = client
                    .post(&url)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let answer: Value = response.json().await.unwrap();
                seqs.push(answer["seq"].as_i64().unwrap());
            }
            seqs
        })
    });
    let mut posted = Vec::new();
    for sender in senders.collect::<Vec<_>>() {
        posted.extend(sender.await.unwrap());
    }
    posted.sort_unstable();
    let got = reading.await.unwrap();
    assert_eq!(
        got, posted,
        "the reading viewer got every delivery, in order"
    );

    let messages = sleeper.drain(Duration::from_secs(15)).await;
    let Some(StreamMessage::Lagged { cursor }) = messages.last() else {
        panic!("the sleeper was not told it lagged: {:?}", messages.last());
    };
    let cursor: i64 = cursor.parse().unwrap();
    let delivered = messages.len() - 1;
    assert!(delivered < posted.len(), "it lagged");
    assert_eq!(
        cursor,
        posted[delivered - 1],
        "the cursor is the last one it got"
    );

    // Resuming from that cursor gets the rest.
    let (_, backlog, _) = Viewer::connect(&app, &format!("since={cursor}")).await;
    let rest: Vec<i64> = backlog.iter().map(|d| d.seq).collect();
    assert_eq!(rest, posted[delivered..]);
}

#[tokio::test]
async fn a_filter_sent_on_the_open_socket_applies_from_then_on() {
    let app = spawn_app().await;
    let (mut viewer, _, _) = Viewer::connect(&app, "type=applicant.hired").await;
    post(&app, "keldair", &envelope("evt_c1", "offer.accepted")).await;
    post(&app, "keldair", &envelope("evt_c2", "applicant.hired")).await;
    assert_eq!(viewer.delivery().await.event_id.as_deref(), Some("evt_c2"));

    let filter = EventFilter {
        types: vec!["offer.accepted".into()],
        ..EventFilter::default()
    };
    viewer.send(&StreamRequest::SetFilter { filter }).await;
    assert!(matches!(
        viewer.next().await,
        StreamMessage::FilterSet { .. }
    ));
    post(&app, "keldair", &envelope("evt_c3", "applicant.hired")).await;
    post(&app, "keldair", &envelope("evt_c4", "offer.accepted")).await;
    assert_eq!(viewer.delivery().await.event_id.as_deref(), Some("evt_c4"));

    // A filter the server cannot read is answered with an error, and the old one stays.
    let bad = EventFilter {
        occurred_from: Some("soon".into()),
        ..EventFilter::default()
    };
    viewer.send(&StreamRequest::SetFilter { filter: bad }).await;
    let StreamMessage::Error { message, .. } = viewer.next().await else {
        panic!("expected an error");
    };
    assert!(message.contains("occurredFrom"), "{message}");
    post(&app, "keldair", &envelope("evt_c5", "offer.accepted")).await;
    assert_eq!(viewer.delivery().await.event_id.as_deref(), Some("evt_c5"));
}
