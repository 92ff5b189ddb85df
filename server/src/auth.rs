//! Who may see the dashboard: a request carries the token as `Authorization: Bearer <token>`,
//! or the session cookie the login page sets. The cookie is stateless: an expiry and an
//! HMAC-SHA256 of it keyed by the token, so it survives restarts and dies when the token
//! changes. Ingestion (`/hooks`), `/healthz`, the login routes and the static files are open.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    Form,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{AppState, config::Token, error::ApiError};

/// The session cookie's name.
pub const COOKIE: &str = "hookscope_session";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks tokens and issues session cookies.
pub struct Auth {
    token: Token,
}

impl Auth {
    pub fn new(token: Token) -> Self {
        Self { token }
    }

    /// True when `candidate` is the token (compared in constant time).
    pub fn is_token(&self, candidate: &str) -> bool {
        candidate
            .as_bytes()
            .ct_eq(self.token.expose().as_bytes())
            .into()
    }

    /// True when the request carries the token or a live session cookie.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.is_token(t.trim())) {
            return true;
        }
        session_cookie(headers).is_some_and(|value| self.is_live_session(value, now_secs()))
    }

    /// A `Set-Cookie` value for a session that starts now.
    pub fn new_session_cookie(&self) -> String {
        let expires = now_secs() + SESSION_LIFETIME.as_secs();
        let value = format!(
            "{expires}.{}",
            hex::encode(self.session_mac(expires).finalize().into_bytes())
        );
        format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        )
    }

    fn is_live_session(&self, value: &str, now: u64) -> bool {
        let Some((expires, mac)) = value.split_once('.') else {
            return false;
        };
        let (Ok(expires), Ok(mac)) = (expires.parse::<u64>(), hex::decode(mac)) else {
            return false;
        };
        expires > now && self.session_mac(expires).verify_slice(&mac).is_ok()
    }

    fn session_mac(&self, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.token.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(format!("hookscope-session:{expires}").as_bytes());
        mac
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// True for the paths anyone may fetch.
fn is_open_path(path: &str) -> bool {
    const OPEN_PREFIXES: [&str; 4] = ["/hooks/", "/auth/", "/pkg/", "/healthz"];
    path == "/login" || path == "/favicon.ico" || OPEN_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Middleware: lets open paths and authenticated requests through; answers 401 under `/api`
/// and sends a browser to the login page elsewhere.
pub async fn require_login(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_open_path(path) || state.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    if path.starts_with("/api/") || path == "/api" {
        return ApiError::Unauthorized.into_response();
    }
    Redirect::to("/login").into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `GET /auth/login?token=...`: the ready-to-click URL printed at start-up.
pub async fn login_link(State(state): State<AppState>, Query(form): Query<LoginForm>) -> Response {
    log_in(&state, &form.token)
}

/// `POST /auth/login` from the login page's form.
pub async fn login_form(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    log_in(&state, &form.token)
}

fn log_in(state: &AppState, token: &str) -> Response {
    if !state.auth.is_token(token.trim()) {
        return Redirect::to("/login?failed=1").into_response();
    }
    let cookie = HeaderValue::from_str(&state.auth.new_session_cookie()).expect("cookie is ASCII");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /auth/logout`: forgets the session cookie.
pub async fn logout() -> Response {
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let cookie = HeaderValue::from_str(&expired).expect("cookie is ASCII");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new("correct-horse".parse().unwrap())
    }

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn a_fresh_session_cookie_is_accepted() {
        let auth = auth();
        let set_cookie = auth.new_session_cookie();
        let pair = set_cookie.split(';').next().unwrap();
        assert!(auth.allows(&with_cookie(&format!("theme=dark; {pair}"))));
    }

    #[test]
    fn forged_expired_and_foreign_sessions_are_refused() {
        let auth = auth();
        assert!(!auth.allows(&with_cookie(&format!("{COOKIE}=99999999999.00ff"))));
        let expires = now_secs() - 1;
        let mac = hex::encode(auth.session_mac(expires).finalize().into_bytes());
        assert!(!auth.is_live_session(&format!("{expires}.{mac}"), now_secs()));
        let other = Auth::new("another-token".parse().unwrap());
        let pair = other.new_session_cookie();
        assert!(!auth.allows(&with_cookie(pair.split(';').next().unwrap())));
    }

    #[test]
    fn bearer_token_is_checked() {
        let auth = auth();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer correct-horse"),
        );
        assert!(auth.allows(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer correct-horsf"),
        );
        assert!(!auth.allows(&headers));
    }
}
