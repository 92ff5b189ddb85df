//! A smoke test of the dashboard pages as the server renders them (before any hydration): the
//! empty state, the event list, an event's page and the login form.
//!
//! The list streams: the `<Suspense>` content arrives later in the same response body (inside a
//! `<template>`), so these tests only check that the body contains the text.

mod common;

use common::{keldair_sample, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

async fn page(app: &common::TestApp, path: &str) -> String {
    page_with_status(app, path, StatusCode::OK).await
}

async fn page_with_status(app: &common::TestApp, path: &str, status: StatusCode) -> String {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), status, "GET {path}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "GET {path}: {content_type}"
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn the_event_list_without_events_shows_where_to_send_webhooks() {
    let app = spawn_app().await;
    app.log_in().await;
    let body = page(&app, "/").await;
    assert!(body.contains("No events yet"), "{body}");
    assert!(
        body.contains(&format!("http://{}/hooks/keldair", app.address)),
        "{body}"
    );
    assert!(body.contains("curl"), "{body}");
}

#[tokio::test]
async fn the_event_list_shows_a_received_event() {
    let app = spawn_app().await;
    app.log_in().await;
    // Not applicant_hired: the empty state's sample command holds that one's type and id.
    let sample = keldair_sample("offer_accepted");
    let expected: Value = serde_json::from_slice(&sample).unwrap();
    let response = app
        .post_hook("keldair", sample, &[("content-type", "application/json")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let body = page(&app, "/").await;
    assert!(body.contains("offer.accepted"), "{body}");
    assert!(body.contains(expected["id"].as_str().unwrap()), "{body}");
    assert!(!body.contains("No events yet"), "{body}");
}

#[tokio::test]
async fn an_event_page_shows_the_payload_and_the_delivery_headers() {
    let app = spawn_app().await;
    app.log_in().await;
    let response = app
        .post_hook(
            "keldair",
            keldair_sample("applicant_created"),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let key = app.all_events().await[0]["key"].as_i64().unwrap();

    let body = page(&app, &format!("/events/{key}")).await;
    assert!(body.contains("firstName"), "{body}");
    assert!(body.contains("Amara"), "{body}");
    assert!(body.contains("Show headers"), "{body}");
}

#[tokio::test]
async fn the_login_page_has_the_token_form() {
    let app = spawn_app().await;
    // No session needed to see it.
    let body = page(&app, "/login").await;
    assert!(body.contains(r#"action="/auth/login""#), "{body}");
    assert!(body.contains(r#"name="token""#), "{body}");
    assert!(body.contains("Log in"), "{body}");
}

#[tokio::test]
async fn a_missing_event_or_page_answers_404_with_a_message() {
    let app = spawn_app().await;
    app.log_in().await;
    let body = page_with_status(&app, "/events/424242", StatusCode::NOT_FOUND).await;
    assert!(body.contains("There is no event with this key."), "{body}");
    let body = page_with_status(&app, "/events/not-a-key", StatusCode::NOT_FOUND).await;
    assert!(body.contains("There is no event with this key."), "{body}");
    let body = page_with_status(&app, "/no/such/page", StatusCode::NOT_FOUND).await;
    assert!(body.contains("There is no page here."), "{body}");
}
