//! Hookscope's user interface, rendered on the server and hydrated in the browser, and the
//! types both sides share.
//!
//! - [`model`]: events, deliveries, filters and pages, as the JSON API and the UI see them.
//! - [`api`]: the server functions the pages call, and the [`api::Backend`] the server
//!   provides to answer them.
//! - [`live`]: the browser's websocket to the live stream (reconnect, resume cursor).
//! - [`pages`]: one module per route (login, event list, event detail).
//! - [`components`]: the pieces pages share (signature badge, headers table, empty state).

// The list's nested views are deep types for the compiler (release wasm).
#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod live;
pub mod model;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="data:,"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The routes of the dashboard.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="hookscope" href="/pkg/hookscope.css"/>
        <Title text="Hookscope"/>
        <Router>
            <TopBar/>
            <main>
                <Routes fallback=|| {
                    components::answer_not_found();
                    view! { <p class="notice">"There is no page here."</p> }
                }>
                    // Async as well: rendered whole once loaded. (Streamed out of order, the list hung now
                    // and then under concurrent renders, a Suspense race in Leptos 0.8.)
                    <Route path=path!("/") view=pages::events::EventsPage ssr=SsrMode::Async/>
                    // Async: the page is sent once the event is loaded, so that a missing one
                    // can still answer 404.
                    <Route
                        path=path!("/events/:key")
                        view=pages::event_detail::EventDetailPage
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/login") view=pages::login::LoginPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// The bar above every page; "Log out" everywhere but on the login page.
#[component]
fn TopBar() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    let logged_in_page = move || location.pathname.with(|path| path != "/login");
    view! {
        <header class="topbar">
            <a class="brand" href="/">"Hookscope"</a>
            <Show when=logged_in_page>
                <form method="post" action="/auth/logout" class="logout">
                    <button type="submit" class="link">"Log out"</button>
                </form>
            </Show>
        </header>
    }
}

/// The browser's entry point: takes over the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
