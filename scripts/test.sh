#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every test, the short run
# of the fault suite (scripts/faults.sh) included.
#
# scripts/setup.sh installs what the tests need and is missing (tansu, the Python clients,
# schemathesis) and checks PostgreSQL; this script then starts tansu on a free 127.0.0.1 port for
# the tests that share a broker, and, for the dashboard's browser test, installs Chromium from
# Debian (/usr/bin/chromium) and, with npm, the pinned playwright-core of tests/browser (node 20
# or later must be installed).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
BROKER_LOG=$(mktemp -t tansu.XXXXXX.log)
echo "==> tansu on 127.0.0.1:$PORT (log: $BROKER_LOG)"
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$BROKER_LOG" 2>&1 &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null || true; wait $BROKER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 $BROKER_PID 2>/dev/null || { cat "$BROKER_LOG"; echo "tansu did not start" >&2; exit 1; }
  sleep 0.1
done
export EVENTBUS_KAFKA_BROKERS="127.0.0.1:$PORT"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked

command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "node 20+ and npm are required for the dashboard browser test" >&2; exit 1; }
if [ ! -x /usr/bin/chromium ]; then
  echo "==> apt-get install chromium"
  apt-get update -qq || echo "apt-get update failed; installing from the package lists at hand" >&2
  apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> npm ci (tests/browser: playwright-core)"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
echo "==> dashboard browser test (headless Chromium)"
EVENTBUS_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/eventbus" node tests/browser/dashboard.test.mjs
