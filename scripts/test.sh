#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every test.
# Everything the tests need (SQLite) is built in; nothing else is installed or started yet.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
command -v cargo >/dev/null || { echo "cargo is required: https://rustup.rs" >&2; exit 1; }

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
