#!/usr/bin/env bash
# Builds Hookscope (release, UI included) and runs it on its SQLite default at
# http://127.0.0.1:3000, installing whatever the build needs first. Extra arguments go to
# `hookscope serve`, e.g. scripts/run.sh --config sources.toml
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
setup_build
step "building Hookscope (cargo leptos build --release)"
cargo leptos build --release
step "starting Hookscope"
exec target/release/hookscope serve "$@"
