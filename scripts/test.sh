#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every test.
#
# It installs what the tests need and is missing, and starts it on loopback:
# - tansu, a Kafka-protocol broker, from the crate registry (about 10 minutes to build the first
#   time; the binary in ~/.cargo/bin is reused after that), on a free 127.0.0.1 port;
# - the C toolchain pieces librdkafka builds with (make, perl, libssl-dev) from Debian, if absent;
# - the Python clients confluent-kafka and kafka-python from PyPI, for the interop tests;
# - for the dashboard's browser test: Chromium from Debian (/usr/bin/chromium) and, with npm,
#   the pinned playwright-core of tests/browser (node 20 or later must be installed).
# PostgreSQL (127.0.0.1:5432, trust auth, database `test`) runs on the machine for the event-store
# tests; it is started with `service postgresql start` if it is down. Each test uses its own
# schema and drops it. NEXUM_TEST_POSTGRES overrides the libpq connection string.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
command -v cargo >/dev/null || { echo "cargo is required: https://rustup.rs" >&2; exit 1; }

need_apt=()
command -v make >/dev/null || need_apt+=(make)
command -v perl >/dev/null || need_apt+=(perl)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

TANSU="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if [ ! -x "$TANSU" ]; then
  echo "==> cargo install tansu (first time only, about 10 minutes)"
  cargo install tansu --locked --features dynostore,libsql
  TANSU="$HOME/.cargo/bin/tansu"
fi

if ! python3 -c "import confluent_kafka, kafka" 2>/dev/null; then
  echo "==> pip install confluent-kafka kafka-python (interop tests)"
  python3 -m pip install -q confluent-kafka kafka-python
fi

export NEXUM_TEST_POSTGRES="${NEXUM_TEST_POSTGRES:-host=127.0.0.1 port=5432 user=postgres dbname=test}"
postgres_up() { (echo >/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! postgres_up; then
  echo "==> PostgreSQL is down; service postgresql start"
  service postgresql start || true
  for _ in $(seq 1 100); do postgres_up && break; sleep 0.1; done
  postgres_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

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
export TANSU

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
