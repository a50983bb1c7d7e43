"""Schemathesis hooks for the property-based run of the HTTP API (crates/cli/tests/openapi_fuzz.rs).

Loaded with `SCHEMATHESIS_HOOKS=tests/openapi/hooks.py`; the check runs when named in `--checks`.

- `error_in_json_shape`: every error answer (4xx and 5xx) is the API's one JSON error shape,
  `{"error": {"status": <the status>, "code": "<code>", "message": "<text>"}}`, sent as
  `application/json` (crates/cli/src/api/error.rs).
- `before_call`: a bus switch to Kafka (`POST /kafka/config` naming the kafka bus) becomes a
  switch to the embedded bus the server runs on. A switch to Kafka would connect to whatever
  `bootstrap_servers` the generator made up (this run talks to loopback only), and with no broker
  it is the documented 502 after a 10 s connect timeout: no answer for this run to judge.
"""

import json

import schemathesis

# What `POST /kafka/config` reads as the kafka bus (crates/cli/src/api/config.rs, case-insensitive).
KAFKA_BUS_NAMES = {"kafka", "kafkaeventbus"}


@schemathesis.check
def error_in_json_shape(ctx, response, case):
    """An error answer is `{"error": {"status", "code", "message"}}` in JSON, with its own status."""
    status = response.status_code
    if status < 400:
        return None
    where = f"{case.method.upper()} {case.formatted_path} answered {status}"
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.lower().startswith("application/json"):
        raise AssertionError(f"{where} with Content-Type `{content_type}`, not application/json")
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"{where} with a body that is not JSON ({error}): {response.content[:200]!r}")
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        raise AssertionError(f'{where} with a body that is not {{"error": {{...}}}}: {response.content[:200]!r}')
    error = body["error"]
    if error.get("status") != status:
        raise AssertionError(f"{where} but error.status is {error.get('status')!r}")
    if not isinstance(error.get("code"), str) or not error["code"]:
        raise AssertionError(f"{where} without a string error.code: {error!r}")
    if not isinstance(error.get("message"), str):
        raise AssertionError(f"{where} without a string error.message: {error!r}")
    return None


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """A switch to Kafka becomes a switch to the embedded bus (see the module's docs)."""
    if case.method.upper() != "POST" or case.path != "/kafka/config" or not isinstance(case.body, dict):
        return
    bus_type = case.body.get("bus_type")
    if isinstance(bus_type, str) and bus_type.lower() in KAFKA_BUS_NAMES:
        case.body = {**case.body, "bus_type": "embedded"}
