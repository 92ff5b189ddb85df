# Installs what building and testing Hookscope needs and is not there yet. Sourced by
# scripts/run.sh and scripts/test.sh; every step is skipped when already done.
#   setup_build    wasm target, cargo-leptos, wasm-bindgen-cli (the Cargo.lock version),
#                  the end2end npm packages (binaryen's wasm-opt, playwright-core)
#   setup_browser  Debian's Chromium, for the end-to-end tests

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LEPTOS_VERSION=0.3.10

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

setup_build() {
  export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q " $CARGO_LEPTOS_VERSION"; then
    step "installing cargo-leptos $CARGO_LEPTOS_VERSION (15 to 25 minutes on 2 cores)"
    # no_downloads: take wasm-bindgen and wasm-opt from PATH; GitHub cannot be reached here.
    cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
  fi
  local wasm_bindgen
  wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[" ]/, "", $0); sub("version=", "", $0); print; exit }' "$ROOT/Cargo.lock")
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $wasm_bindgen\$"; then
    step "installing wasm-bindgen-cli $wasm_bindgen (must match Cargo.lock)"
    cargo install wasm-bindgen-cli --version "$wasm_bindgen"
  fi
  if [ ! -x "$ROOT/end2end/node_modules/.bin/wasm-opt" ] || [ ! -d "$ROOT/end2end/node_modules/playwright-core" ]; then
    step "installing the end2end npm packages (binaryen for wasm-opt, playwright-core)"
    (cd "$ROOT/end2end" && npm ci --no-audit --no-fund)
  fi
}

setup_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    step "installing Debian's Chromium for the end-to-end tests"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
}
