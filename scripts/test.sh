#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and integration tests (the real server on port
# 0 with a fresh SQLite file), then the release build and the end-to-end tests in Chromium.
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

step "unit and integration tests"
cargo test --workspace

step "release build (server and hydrated UI)"
cargo leptos build --release

step "end-to-end tests (Chromium)"
node --test end2end/tests/
