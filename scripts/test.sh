#!/usr/bin/env bash
# Runs every test: formatting and lints, the release build, unit and integration tests (the
# real server on port 0 with a fresh SQLite file; crash, backup and second-instance tests run the
# release binary), then the end-to-end tests in Chromium.
# Installs whatever is missing first.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
setup_build
setup_browser

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p app --no-default-features --features hydrate --target wasm32-unknown-unknown -- -D warnings

step "release build (server and hydrated UI)"
cargo leptos build --release

step "unit and integration tests (the tests that run the binary run the release build)"
HOOKSCOPE_BIN="$ROOT/target/release/hookscope" cargo test --workspace

step "end-to-end tests (Chromium)"
node --test end2end/tests/
