//! One module per route.

pub mod event_detail;
pub mod events;
pub mod login;
