# What the tests and the fault suite need, installed if missing; sourced by scripts/test.sh and
# scripts/faults.sh from the repository's root.
# - the C toolchain pieces librdkafka builds with (make, perl, libssl-dev, pkg-config), from Debian;
# - tansu, a Kafka-protocol broker, from the crate registry (about 15 minutes to build the first
#   time; the binary in ~/.cargo/bin is reused after that); TANSU names it;
# - from PyPI: confluent-kafka and kafka-python (interop tests, and the fault suite's reads
#   with a standard client) and schemathesis 4 (the property-based run of the HTTP API);
# - PostgreSQL (127.0.0.1:5432, trust auth, database `test`) runs on the machine for the
#   event-store tests; it is started with `service postgresql start` if it is down. Each test
#   uses its own schema and drops it. NEXUM_TEST_POSTGRES overrides the libpq connection string.

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
  echo "==> cargo install tansu (first time only, about 15 minutes)"
  cargo install tansu --locked --features dynostore,libsql
  TANSU="$HOME/.cargo/bin/tansu"
fi

if ! python3 -c "import confluent_kafka, kafka" 2>/dev/null; then
  echo "==> pip install confluent-kafka kafka-python (interop tests, fault suite)"
  python3 -m pip install -q confluent-kafka kafka-python
fi
if ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q "version 4\."; then
  echo "==> pip install schemathesis (property-based run of the HTTP API)"
  python3 -m pip install -q "schemathesis>=4.32,<5"
fi

export NEXUM_TEST_POSTGRES="${NEXUM_TEST_POSTGRES:-host=127.0.0.1 port=5432 user=postgres dbname=test}"
postgres_up() { (echo >/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! postgres_up; then
  echo "==> PostgreSQL is down; service postgresql start"
  service postgresql start || true
  for _ in $(seq 1 100); do postgres_up && break; sleep 0.1; done
  postgres_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi
export TANSU
