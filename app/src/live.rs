//! The browser's end of the live stream (`/api/stream`): one websocket per list, reconnected
//! with backoff and jitter after any loss, resuming from the last cursor so that what arrived
//! meanwhile is shown exactly once. On the server this does nothing: the page is live once it
//! is hydrated.

use leptos::prelude::*;

use crate::model::{EventFilter, LiveDelivery};

/// The state of the connection, as the indicator shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Opening the first connection (or the page is not hydrated yet).
    Connecting,
    /// Open: deliveries appear as they are acknowledged.
    Live,
    /// Lost; trying again, and will resume from the last cursor.
    Reconnecting,
    /// The browser says it is offline; trying again once it is back.
    Offline,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting => "reconnecting",
            Self::Offline => "offline",
        }
    }
}

/// The stream's query string for `filter`, resuming after `cursor`.
pub fn stream_query(filter: &EventFilter, cursor: &str) -> String {
    let live = EventFilter {
        limit: None,
        cursor: None,
        ..filter.clone()
    };
    let mut pairs: Vec<String> = live
        .to_query_pairs()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", crate::pages::events::urlencode(&v)))
        .collect();
    pairs.push(format!("since={}", crate::pages::events::urlencode(cursor)));
    pairs.join("&")
}

/// Follows the stream with `filter` from `cursor`, calling `on_delivery` for each delivery, in
/// order, until the reactive owner is cleaned up; returns the connection's state.
pub fn follow(
    filter: EventFilter,
    cursor: String,
    on_delivery: impl Fn(LiveDelivery) + 'static,
) -> RwSignal<Connection> {
    let status = RwSignal::new(Connection::Connecting);
    #[cfg(feature = "hydrate")]
    browser::follow(filter, cursor, on_delivery, status);
    #[cfg(not(feature = "hydrate"))]
    let _ = (filter, cursor, on_delivery);
    status
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::{cell::RefCell, rc::Rc};

    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::{JsCast, closure::Closure};
    use web_sys::{MessageEvent, WebSocket};

    use super::{Connection, stream_query};
    use crate::model::{EventFilter, LiveDelivery, StreamMessage};

    /// The longest wait between two attempts, in milliseconds.
    const MAX_BACKOFF_MS: f64 = 15_000.0;
    /// The server sends something at least every 30 s; silence for this long means the
    /// connection is stale (a laptop that slept, a network that changed), in milliseconds.
    const STALE_AFTER_MS: f64 = 75_000.0;
    /// How often the page checks, in milliseconds.
    const CHECK_EVERY_MS: i32 = 5_000;

    struct Follower {
        filter: EventFilter,
        cursor: RefCell<String>,
        on_delivery: Box<dyn Fn(LiveDelivery)>,
        status: RwSignal<Connection>,
        socket: RefCell<Option<WebSocket>>,
        backoff_ms: RefCell<f64>,
        stopped: RefCell<bool>,
        /// When the last message arrived (`Date.now()`).
        heard_at: RefCell<f64>,
    }

    pub fn follow(
        filter: EventFilter,
        cursor: String,
        on_delivery: impl Fn(LiveDelivery) + 'static,
        status: RwSignal<Connection>,
    ) {
        let follower = Rc::new(Follower {
            filter,
            cursor: RefCell::new(cursor),
            on_delivery: Box::new(on_delivery),
            status,
            socket: RefCell::new(None),
            backoff_ms: RefCell::new(500.0),
            stopped: RefCell::new(false),
            heard_at: RefCell::new(js_sys::Date::now()),
        });
        connect(&follower);
        let watchdog = watch_for_staleness(&follower);
        let on_cleanup_follower = SendWrapper::new((follower, watchdog));
        on_cleanup(move || {
            let (follower, watchdog) = on_cleanup_follower.take();
            *follower.stopped.borrow_mut() = true;
            if let (Some(window), Some(watchdog)) = (web_sys::window(), watchdog) {
                window.clear_interval_with_handle(watchdog);
            }
            if let Some(socket) = follower.socket.borrow_mut().take() {
                let _ = socket.close();
            }
        });
    }

    fn connect(follower: &Rc<Follower>) {
        if *follower.stopped.borrow() {
            return;
        }
        let Some(window) = web_sys::window() else {
            return;
        };
        let location = window.location();
        let scheme = match location.protocol().as_deref() {
            Ok("https:") => "wss",
            _ => "ws",
        };
        let host = location.host().unwrap_or_default();
        let query = stream_query(&follower.filter, &follower.cursor.borrow());
        let Ok(socket) = WebSocket::new(&format!("{scheme}://{host}/api/stream?{query}")) else {
            retry_later(follower);
            return;
        };
        let on_message = {
            let follower = Rc::clone(follower);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(text) = event.data().as_string() else {
                    return;
                };
                let Ok(message) = serde_json::from_str::<StreamMessage>(&text) else {
                    return;
                };
                *follower.cursor.borrow_mut() = message.cursor().to_owned();
                *follower.heard_at.borrow_mut() = js_sys::Date::now();
                match message {
                    StreamMessage::Delivery(d) => (follower.on_delivery)(d),
                    StreamMessage::Ready { .. } => {
                        *follower.backoff_ms.borrow_mut() = 500.0;
                        follower.status.set(Connection::Live);
                    }
                    _ => {} // lagged: the server closes, and the reconnect resumes
                }
            })
        };
        let on_close = {
            let follower = Rc::clone(follower);
            Closure::<dyn FnMut()>::new(move || retry_later(&follower))
        };
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        // The socket holds its handlers for as long as it lives.
        on_message.forget();
        on_close.forget();
        if let Some(old) = follower.socket.borrow_mut().replace(socket) {
            old.set_onclose(None);
            let _ = old.close();
        }
    }

    /// Every few seconds: a live connection silent for too long is closed, so that the usual
    /// reconnect resumes from the cursor. Returns the interval's handle.
    fn watch_for_staleness(follower: &Rc<Follower>) -> Option<i32> {
        let follower = Rc::clone(follower);
        let check = Closure::<dyn FnMut()>::new(move || {
            let silent = js_sys::Date::now() - *follower.heard_at.borrow();
            if silent > STALE_AFTER_MS && follower.status.get_untracked() == Connection::Live {
                *follower.heard_at.borrow_mut() = js_sys::Date::now();
                follower.status.set(Connection::Reconnecting);
                connect(&follower); // closes the stale socket, resumes from the cursor
            }
        });
        let handle = web_sys::window()?
            .set_interval_with_callback_and_timeout_and_arguments_0(
                check.as_ref().unchecked_ref(),
                CHECK_EVERY_MS,
            )
            .ok();
        check.forget();
        handle
    }

    /// After a loss: waits with backoff and jitter, then connects again from the cursor.
    fn retry_later(follower: &Rc<Follower>) {
        if *follower.stopped.borrow() {
            return;
        }
        let online = web_sys::window().is_none_or(|w| w.navigator().on_line());
        follower.status.set(if online {
            Connection::Reconnecting
        } else {
            Connection::Offline
        });
        let wait = {
            let mut backoff = follower.backoff_ms.borrow_mut();
            let wait = *backoff * (0.75 + 0.5 * js_sys::Math::random());
            *backoff = (*backoff * 2.0).min(MAX_BACKOFF_MS);
            wait
        };
        let follower = Rc::clone(follower);
        let again = Closure::once_into_js(move || connect(&follower));
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
                again.unchecked_ref(),
                wait as i32,
            );
        }
    }
}
