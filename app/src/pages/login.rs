//! `/login`: the token form. It posts to `/auth/login`, which sets the session cookie, so it
//! works before (and without) hydration.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let failed = move || use_query_map().read().get("failed").is_some();
    view! {
        <section class="login">
            <h1>"Log in to Hookscope"</h1>
            <p>"Paste the token Hookscope printed when it started (or the one you gave it with "
                <code>"--token"</code>" / "<code>"HOOKSCOPE_TOKEN"</code>")."</p>
            <Show when=failed>
                <p class="error" role="alert">"That token is not right. Try again."</p>
            </Show>
            <form method="post" action="/auth/login">
                <label for="token">"Token"</label>
                <input id="token" name="token" type="password" autocomplete="current-password" required autofocus/>
                <button type="submit">"Log in"</button>
            </form>
        </section>
    }
}
