//! The JSON API and the login that guards it: who gets in, the event list's filters and
//! pagination, and the answers to things that are not there.

mod common;

use std::collections::HashSet;

use common::{
    TOKEN, TestApp, assert_error, envelope, envelope_at, keldair_samples, spawn_app, spawn_app_with,
};
use reqwest::{StatusCode, header};
use serde_json::Value;

/// Posts one event and returns the API routes that show it.
async fn api_routes(app: &TestApp) -> Vec<String> {
    let id = app
        .post_json("keldair", &envelope("evt-auth", "applicant.hired"))
        .await;
    let key = app.all_events().await[0]["key"].as_i64().unwrap();
    vec![
        "/api/events".to_owned(),
        "/api/events?type=applicant.hired&limit=5".to_owned(),
        format!("/api/events/{key}"),
        format!("/api/deliveries/{id}/raw"),
        "/api/types?within=1h".to_owned(),
    ]
}

fn event_ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect()
}

fn sorted(mut ids: Vec<&str>) -> Vec<&str> {
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn every_api_route_answers_401_without_the_token_and_200_with_it() {
    let app = spawn_app().await;
    let anonymous = reqwest::Client::new();
    for route in api_routes(&app).await {
        let response = anonymous.get(app.url(&route)).send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED).await;

        let response = anonymous
            .get(app.url(&route))
            .bearer_auth("wrong-token-123")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED).await;

        let response = anonymous
            .get(app.url(&route))
            .header(header::AUTHORIZATION, TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{route}: the token alone, without Bearer"
        );

        let response = app.api_get(&route).await;
        assert_eq!(response.status(), StatusCode::OK, "{route}");
    }
    // Paths under /api that do not exist are not revealed to a stranger either.
    let response = anonymous
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_login_link_sets_a_strict_http_only_cookie_that_opens_the_api() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = app
        .client
        .get(app.url("/auth/login"))
        .query(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("hookscope_session="), "{cookie}");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Strict"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");

    // The client now sends only the cookie: no Authorization header.
    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_login_form_with_the_right_token_logs_in() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/auth/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_token_posted_to_login_redirects_to_failed_and_sets_no_cookie() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/auth/login"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login?failed=1");
    assert!(response.headers().get(header::SET_COOKIE).is_none());

    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logging_out_closes_the_session() {
    let app = spawn_app().await;
    app.log_in().await;
    let response = app
        .client
        .post(app.url("/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login");
    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_redirects_to_login_without_a_session() {
    let app = spawn_app().await;
    for path in ["/", "/events/1"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()[header::LOCATION], "/login", "{path}");
    }
}

#[tokio::test]
async fn the_type_filter_keeps_any_of_the_given_types() {
    let app = spawn_app().await;
    for (id, event_type) in [
        ("e1", "applicant.hired"),
        ("e2", "offer.accepted"),
        ("e3", "job.published"),
        ("e4", "applicant.hired"),
    ] {
        app.post_json("keldair", &envelope(id, event_type)).await;
    }
    let hired = app.events(&[("type", "applicant.hired")]).await;
    assert_eq!(event_ids(&hired), ["e4", "e1"]);
    let two_types = app
        .events(&[("type", "applicant.hired"), ("type", "offer.accepted")])
        .await;
    assert_eq!(event_ids(&two_types), ["e4", "e2", "e1"]);
    assert!(
        app.events(&[("type", "nothing.like.this")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_source_filter_keeps_one_source() {
    let app = spawn_app().await;
    app.post_json("keldair", &envelope("k1", "applicant.hired"))
        .await;
    app.post_json("staging", &envelope("s1", "applicant.hired"))
        .await;
    app.post_json("keldair", &envelope("k2", "applicant.hired"))
        .await;
    assert_eq!(
        event_ids(&app.events(&[("source", "keldair")]).await),
        ["k2", "k1"]
    );
    assert_eq!(
        event_ids(&app.events(&[("source", "staging")]).await),
        ["s1"]
    );
    assert!(app.events(&[("source", "elsewhere")]).await.is_empty());
}

#[tokio::test]
async fn the_received_time_filter_takes_from_inclusive_and_to_exclusive() {
    let app = spawn_app().await;
    for id in ["first", "second", "third"] {
        app.post_json("keldair", &envelope(id, "applicant.hired"))
            .await;
    }
    let events = app.all_events().await;
    let received = |id: &str| {
        let event = events.iter().find(|e| e["eventId"] == id).unwrap();
        event["receivedAt"].as_str().unwrap().to_owned()
    };
    let second = received("second");

    let from = app.events(&[("from", &second)]).await;
    assert_eq!(event_ids(&from), ["third", "second"]);
    let to = app.events(&[("to", &second)]).await;
    assert_eq!(event_ids(&to), ["first"]);
    let third = received("third");
    let between = app.events(&[("from", &second), ("to", &third)]).await;
    assert_eq!(event_ids(&between), ["second"]);
    // Any offset works, not only Z.
    let far_future = app.events(&[("from", "2999-01-01T02:00:00+02:00")]).await;
    assert!(far_future.is_empty());
}

#[tokio::test]
async fn the_occurred_time_filter_reads_date_occurred() {
    let app = spawn_app().await;
    let samples = keldair_samples();
    for (_, body) in &samples {
        let response = app
            .post_hook(
                "keldair",
                body.clone(),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (from, to) = ("2022-02-22T00:00:00Z", "2022-02-23T19:00:00Z");
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let mut expected: Vec<String> = samples
        .iter()
        .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap())
        .filter(|event| {
            let occurred = parse(event["dateOccurred"].as_str().unwrap());
            parse(from) <= occurred && occurred < parse(to)
        })
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort_unstable();
    assert!(
        expected.len() >= 2 && expected.len() < samples.len(),
        "the samples span the range: {expected:?}"
    );

    let both = app
        .events(&[("occurredFrom", from), ("occurredTo", to)])
        .await;
    assert_eq!(sorted(event_ids(&both)), expected);

    let from_only = app
        .events(&[("occurredFrom", "2022-03-01T00:00:00Z")])
        .await;
    assert_eq!(event_ids(&from_only).len(), 1);
    assert_eq!(from_only[0]["dateOccurred"], "2022-03-02T11:20:59+00:00");
    let to_only = app.events(&[("occurredTo", "2022-02-21T09:14:05Z")]).await;
    assert_eq!(event_ids(&to_only).len(), 1);
    assert_eq!(to_only[0]["dateOccurred"], "2022-02-01T08:00:00+00:00");

    // An offset in the filter is honoured: 20:00+01:00 is 19:00Z.
    let offset = app
        .events(&[
            ("occurredFrom", from),
            ("occurredTo", "2022-02-23T20:00:00+01:00"),
        ])
        .await;
    assert_eq!(sorted(event_ids(&offset)), expected);

    // An event without dateOccurred only shows when no occurred filter is set.
    app.post_hook("keldair", "not json", &[]).await;
    let all = app.all_events().await;
    assert_eq!(all.len(), samples.len() + 1);
    let open_range = app
        .events(&[("occurredFrom", "2000-01-01T00:00:00Z")])
        .await;
    assert_eq!(open_range.len(), samples.len());
}

#[tokio::test]
async fn the_occurred_time_filter_compares_instants_whatever_the_offset() {
    let app = spawn_app().await;
    // The same instant-order, written with different offsets.
    let events = [
        ("new-year-paris", "2030-01-01T00:30:00+01:00"), // 2029-12-31T23:30Z
        ("new-year-utc", "2030-01-01T00:00:00Z"),
        ("new-year-new-york", "2029-12-31T20:00:00-05:00"), // 2030-01-01T01:00Z
    ];
    for (id, occurred) in events {
        app.post_json("keldair", &envelope_at(id, "applicant.hired", occurred))
            .await;
    }
    let in_2030 = app
        .events(&[("occurredFrom", "2030-01-01T00:00:00Z")])
        .await;
    assert_eq!(event_ids(&in_2030), ["new-year-new-york", "new-year-utc"]);
    let in_2029 = app.events(&[("occurredTo", "2030-01-01T00:00:00Z")]).await;
    assert_eq!(event_ids(&in_2029), ["new-year-paris"]);
    // dateOccurred is shown as the sender wrote it.
    assert_eq!(in_2029[0]["dateOccurred"], "2030-01-01T00:30:00+01:00");
}

#[tokio::test]
async fn the_signature_filter_keeps_one_verdict() {
    let config = "[[source]]\nname = \"gh\"\nscheme = \"github\"\nsecrets = [\"s3cret\"]\n";
    let app = spawn_app_with(config, None).await;
    app.post_json("gh", &envelope("unsigned-on-gh", "applicant.hired"))
        .await;
    let body = envelope("bad-on-gh", "applicant.hired").to_string();
    let response = app
        .post_hook("gh", body, &[("x-hub-signature-256", "sha256=00ff")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.post_json("plain", &envelope("plain", "applicant.hired"))
        .await;

    assert_eq!(
        event_ids(&app.events(&[("signature", "missing")]).await),
        ["unsigned-on-gh"]
    );
    assert_eq!(
        event_ids(&app.events(&[("signature", "invalid")]).await),
        ["bad-on-gh"]
    );
    assert_eq!(
        event_ids(&app.events(&[("signature", "unchecked")]).await),
        ["plain"]
    );
    assert!(app.events(&[("signature", "valid")]).await.is_empty());
    let combined = app
        .events(&[("signature", "missing"), ("source", "plain")])
        .await;
    assert!(combined.is_empty(), "filters combine");
}

#[tokio::test]
async fn the_limit_caps_the_page() {
    let app = spawn_app().await;
    for i in 0..4 {
        app.post_json("keldair", &envelope(&format!("evt-{i}"), "applicant.hired"))
            .await;
    }
    let page = app.events_page(&[("limit", "2")]).await;
    assert_eq!(
        event_ids(page["items"].as_array().unwrap()),
        ["evt-3", "evt-2"]
    );
    assert!(page["nextCursor"].is_string());
    assert_eq!(page["pending"], 0, "everything acknowledged is listed");
    let page = app.events_page(&[("limit", "4")]).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    assert_eq!(page["nextCursor"], Value::Null);
    assert_eq!(app.events(&[("limit", "500")]).await.len(), 4);
}

#[tokio::test]
async fn bad_filter_values_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[("from", "yesterday")], "from"),
        (&[("to", "2022-02-30T00:00:00Z")], "to"),
        (&[("occurredFrom", "2022-02-23")], "occurredFrom"),
        (&[("occurredTo", "soon")], "occurredTo"),
        (&[("limit", "0")], "limit"),
        (&[("limit", "501")], "limit"),
        (&[("limit", "ten")], "limit"),
        (&[("signature", "ok")], "signature"),
        (&[("tpye", "applicant.hired")], "tpye"),
        (&[("cursor", "not-a-cursor")], "cursor"),
    ];
    for (query, parameter) in cases {
        let response = app.api_get_query("/api/events", query).await;
        let message = assert_error(response, StatusCode::BAD_REQUEST).await;
        let named = message.starts_with(&format!("{parameter} "))
            || message.contains(&format!("{parameter:?}"));
        assert!(named, "{query:?}: {message}");
    }
}

#[tokio::test]
async fn pagination_walks_every_event_once_newest_first() {
    let app = spawn_app().await;
    let posted: Vec<String> = (1..=7).map(|i| format!("page-evt-{i}")).collect();
    for id in &posted {
        app.post_json("keldair", &envelope(id, "applicant.hired"))
            .await;
    }

    let mut seen: Vec<String> = Vec::new();
    let mut page_sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "3".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = app.events_page(&query).await;
        let items = page["items"].as_array().unwrap();
        page_sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|e| e["eventId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(page_sizes.len() < 10, "the cursor must end");
    }

    assert_eq!(page_sizes, [3, 3, 1]);
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "no duplicates, no gaps, newest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
}

#[tokio::test]
async fn a_cursor_keeps_the_filter() {
    let app = spawn_app().await;
    for i in 0..6 {
        let event_type = if i % 2 == 0 {
            "applicant.hired"
        } else {
            "offer.accepted"
        };
        app.post_json("keldair", &envelope(&format!("evt-{i}"), event_type))
            .await;
    }
    let first = app
        .events_page(&[("type", "applicant.hired"), ("limit", "2")])
        .await;
    assert_eq!(
        event_ids(first["items"].as_array().unwrap()),
        ["evt-4", "evt-2"]
    );
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .events_page(&[
            ("type", "applicant.hired"),
            ("limit", "2"),
            ("cursor", cursor),
        ])
        .await;
    assert_eq!(event_ids(second["items"].as_array().unwrap()), ["evt-0"]);
    assert_eq!(second["nextCursor"], Value::Null);
}

#[tokio::test]
async fn an_unknown_event_is_404() {
    let app = spawn_app().await;
    for path in ["/api/events/999999", "/api/events/not-a-key"] {
        let message = assert_error(app.api_get(path).await, StatusCode::NOT_FOUND).await;
        assert!(message.contains("no event"), "{message}");
    }
}

#[tokio::test]
async fn an_unknown_delivery_is_404() {
    let app = spawn_app().await;
    let message = assert_error(
        app.api_get("/api/deliveries/nope/raw").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains("no delivery"), "{message}");
}

#[tokio::test]
async fn an_unknown_api_route_is_a_json_404_behind_the_token() {
    let app = spawn_app().await;
    let anonymous = reqwest::Client::new();
    let response = anonymous.get(app.url("/api/nope")).send().await.unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    let message = assert_error(app.api_get("/api/nope").await, StatusCode::NOT_FOUND).await;
    assert!(message.contains("no such API route"), "{message}");
}

#[tokio::test]
async fn type_counts_follow_the_rest_of_the_filter_and_say_how_many_match() {
    let app = spawn_app().await;
    for (id, kind, source) in [
        ("evt_c1", "applicant.hired", "keldair"),
        ("evt_c2", "applicant.hired", "keldair"),
        ("evt_c3", "offer.accepted", "keldair"),
        ("evt_c4", "offer.accepted", "acme"),
    ] {
        app.post_json(source, &envelope(id, kind)).await;
    }
    let counts = |pairs: &'static [(&'static str, &'static str)]| {
        let app = &app;
        async move {
            let response = app.api_get_query("/api/types", pairs).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let all = counts(&[]).await;
    assert_eq!(all["matching"], 4);
    assert_eq!(
        all["types"],
        serde_json::json!([
            {"type": "applicant.hired", "count": 2},
            {"type": "offer.accepted", "count": 2},
        ])
    );
    // A type narrows the match, not the counts it offers; the source narrows both.
    let hired = counts(&[("type", "applicant.hired"), ("source", "keldair")]).await;
    assert_eq!(hired["matching"], 2);
    assert_eq!(
        hired["types"][1],
        serde_json::json!({"type": "offer.accepted", "count": 1})
    );
}

#[tokio::test]
async fn a_received_within_preset_and_empty_form_fields_filter_as_a_user_expects() {
    let app = spawn_app().await;
    app.post_json("keldair", &envelope("evt_w1", "applicant.hired"))
        .await;
    // A form submitted with its empty fields, and the last hour.
    let pairs = [
        ("source", ""),
        ("signature", ""),
        ("within", "1h"),
        ("type", ""),
    ];
    assert_eq!(app.events(&pairs).await.len(), 1);
    let old = [("to", "2020-01-01T00:00:00Z"), ("within", "7d")];
    assert_eq!(app.events(&old).await.len(), 0);
    let response = app.api_get_query("/api/events", &[("within", "2w")]).await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("within"), "{message}");
}
